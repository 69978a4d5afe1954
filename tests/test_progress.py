"""Progress bars: tqdm on a terminal, a few plain lines in a log file (issue 23, point 6)."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

BIN = Path(sys.executable).parent

LOOP = """
import time
from vidmusic_core.progress import progress_bar
with progress_bar(total=400, desc="train", unit="step", interval={interval}) as bar:
    for i in range(400):
        time.sleep(0.005)
        bar.update(1)
        bar.set_postfix(loss=f"{{1 / (i + 1):.4f}}")
"""


def test_log_file_gets_a_few_plain_lines(tmp_path):
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", LOOP.format(interval=0.5)], stderr=f, check=True, timeout=120)
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text  # no redrawn bar
    assert 2 <= len(lines) <= 10, lines  # ~2+ s of work at one line per 0.5 s, plus the summary
    assert lines[-1].startswith("train: 400/400 step (100%) in ") and "loss=0.0025" in lines[-1]
    assert "left" in lines[0]  # intermediate lines give an estimate


def test_default_interval_keeps_a_short_job_to_one_line(tmp_path):
    """The real CLI with stderr to a file: one summary line for the whole toy-data bar."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:
        subprocess.run([str(BIN / "vidmusic"), "toy-data", str(tmp_path / "toy"), "--n", "3", "--seconds", "2",
                        "--workers", "1"], stderr=f, stdout=subprocess.DEVNULL, check=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    text = log.read_text()
    assert "\r" not in text
    toy = [x for x in text.splitlines() if "toy clips" in x]
    assert len(toy) == 1 and toy[0].startswith("toy clips: 3/3 clip (100%) in "), text


def test_terminal_still_gets_tqdm():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-c", LOOP.format(interval=0.5)], stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert "\r" in out and "400/400" in out and "step/s" in out  # tqdm's redrawn bar

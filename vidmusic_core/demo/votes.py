"""The A/B listening test's votes: one CSV row per vote (:class:`VoteLog`) and the per-pair summary with a sign
test (:func:`summarise_votes`), as ``docs/demo.md`` explains."""
from __future__ import annotations

import csv
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

FIELDS = ("time", "session", "video", "video_sha1", "seed", "seconds", "left", "right", "choice", "winner", "loser",
          "left_dir", "right_dir")
CHOICES = ("left", "right", "tie")


def file_sha1(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class VoteLog:
    """Appends votes to ``path`` (a header first when the file is new); safe across the server's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, *, session: str, video: str | Path, seed: int, seconds: float, left: str, right: str,
              choice: str, left_dir: str = "", right_dir: str = "") -> dict[str, Any]:
        """One vote: ``choice`` is ``left``, ``right`` or ``tie`` (the labels were hidden while the listener chose)."""
        if choice not in CHOICES:
            raise ConfigError(f"vote {choice!r}: one of {', '.join(CHOICES)}")
        winner, loser = {"left": (left, right), "right": (right, left), "tie": ("", "")}[choice]
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "session": session, "video": Path(video).name,
               "video_sha1": file_sha1(video), "seed": seed, "seconds": round(float(seconds), 3), "left": left,
               "right": right, "choice": choice, "winner": winner, "loser": loser, "left_dir": left_dir,
               "right_dir": right_dir}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.is_file() or self.path.stat().st_size == 0
            with open(self.path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    w.writeheader()
                w.writerow(row)
        return row


@dataclass(frozen=True)
class PairSummary:
    """The votes between models ``a`` and ``b`` (``a`` < ``b`` by name): wins of each, ties, ``a``'s win rate
    over the decided votes, and the two-sided sign-test p-value of "no preference" (ties left out)."""

    a: str
    b: str
    wins_a: int
    wins_b: int
    ties: int
    left_chosen: int  # of the decided votes, how many went to the left player (position bias)

    @property
    def decided(self) -> int:
        return self.wins_a + self.wins_b

    @property
    def win_rate_a(self) -> float | None:
        return self.wins_a / self.decided if self.decided else None

    @property
    def p_value(self) -> float | None:
        if not self.decided:
            return None
        from scipy.stats import binomtest

        return float(binomtest(self.wins_a, self.decided, 0.5).pvalue)


def summarise_votes(path: str | Path) -> list[PairSummary]:
    """One :class:`PairSummary` per pair of models that met in the vote CSV ``path``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such vote file (vidmusic demo writes it with --votes, default demo_votes.csv)")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [k for k in ("left", "right", "choice") if rows and k not in rows[0]]
    if missing:
        raise ConfigError(f"{p}: not a vote file of vidmusic demo (no column {', '.join(missing)})")
    tally: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows, 2):
        if r["choice"] not in CHOICES:
            raise ConfigError(f"{p}:{i}: choice {r['choice']!r}, expected one of {', '.join(CHOICES)}")
        a, b = sorted((r["left"], r["right"]))
        t = tally.setdefault((a, b), [0, 0, 0, 0])
        if r["choice"] == "tie":
            t[2] += 1
            continue
        winner = r["left"] if r["choice"] == "left" else r["right"]
        t[0 if winner == a else 1] += 1
        t[3] += r["choice"] == "left"
    return [PairSummary(a, b, *t) for (a, b), t in sorted(tally.items())]


def format_summary(pairs: list[PairSummary]) -> str:
    """A plain-text table of :func:`summarise_votes`."""
    if not pairs:
        return "no votes yet"
    lines = [f"{'model A':28s} {'model B':28s} {'A wins':>6s} {'B wins':>6s} {'ties':>5s} {'A rate':>7s} {'p':>7s}  left chosen"]
    for s in pairs:
        rate = "-" if s.win_rate_a is None else f"{s.win_rate_a:.2f}"
        pv = "-" if s.p_value is None else f"{s.p_value:.3f}"
        lines.append(f"{s.a[:28]:28s} {s.b[:28]:28s} {s.wins_a:6d} {s.wins_b:6d} {s.ties:5d} {rate:>7s} {pv:>7s}  "
                     f"{s.left_chosen}/{s.decided}")
    return "\n".join(lines)

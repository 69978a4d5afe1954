"""Shared by tests that drive the real command line: ``from cli_helpers import run_vidmusic``."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def vidmusic_exe() -> str:
    """The ``vidmusic`` console script of this interpreter's environment (else the one on PATH)."""
    exe = Path(sys.executable).with_name("vidmusic")
    return str(exe) if exe.exists() else shutil.which("vidmusic") or "vidmusic"


def run_vidmusic(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``vidmusic ARGS…`` in a subprocess, output captured as text."""
    return subprocess.run([vidmusic_exe(), *args], capture_output=True, text=True, timeout=timeout)

"""Where and when a benchmark ran: stored next to its numbers, which only hold for that machine.

Results go to ``benchmarks/results/`` (git-ignored): they are outputs of one machine at one
commit under one load, not facts about the code.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (other jobs on the machine slow every side)."""
    return [round(x, 2) for x in os.getloadavg()]


def run_metadata() -> dict[str, Any]:
    """Commit, date, CPU model, core count and load of this run, for the result file."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_cores": usable_cores(),
        "cpu_count_machine": os.cpu_count(),
        "load_average_start": load_average(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def finish_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the load average at the end of the run added."""
    return {**meta, "load_average_end": load_average()}

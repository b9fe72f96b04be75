"""Wall time of `make run` after installation, in a fresh clone of the repository.

The clone shares this checkout's .venv (a symlink) and make is told to treat the install
stamp as up to date, so only the job itself is timed: synthetic data, `dvc repro`, report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchmarks.memory import run_measured
from benchmarks.records import Figure, Summary

STAMP = ".venv/.installed"


def make_run_benchmark(repo: Path, work: Path) -> Figure:
    clone = work / "make-run"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    (clone / ".venv").symlink_to(repo / ".venv")
    run = run_measured(["make", "-o", STAMP, "run"], cwd=clone)
    return Figure(
        "`make run` wall time after installation",
        "s",
        Summary.of([run.wall_s]),
        "fresh clone of HEAD, .venv shared",
        notes="no reference: the README's budget for this machine is about 5 minutes",
        details={"peak_rss_bytes": run.peak_rss_bytes},
    )

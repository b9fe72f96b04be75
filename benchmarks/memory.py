"""Peak memory and throughput of `danq data prepare` and of a short training run.

Each measurement runs in its own child process, started through benchmarks.peak_rss so that
the peak it reports is that child's own (Linux carries peak RSS across fork and exec). The
reference is what the original DanQ code did: hold the whole of x in memory, as uint8 (the
file's type) and as the float32 array a Keras model is fed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import write_random_split
from benchmarks.records import Figure, Summary
from danq.artifacts import SHARD_MANIFEST_FILE
from danq.data.shards import read_manifest

REPO = Path(__file__).resolve().parent.parent
MB = 2**20
DEEPSEA_TRAIN_SAMPLES = 4_400_000
RSS_GROWTH_LIMIT = 1.2  # peak at the largest size over peak at the smallest
RSS_ABSOLUTE_LIMIT_MB = 2048


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    peak_rss_bytes: int


def run_measured(cmd: list[str], cwd: Path | None = None) -> ChildRun:
    """Run cmd to completion under benchmarks.peak_rss: its wall time and its own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rss.json"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "benchmarks.peak_rss", str(result), *cmd],
            cwd=cwd,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        wall = time.perf_counter() - started
        measured = json.loads(result.read_text())
    if measured["exit_code"]:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {measured['exit_code']}")
    return ChildRun(wall, measured["peak_rss_bytes"])


def danq_command() -> str:
    return str(Path(sys.executable).with_name("danq"))


def data_dir(work: Path, n: int) -> Path:
    return work / f"data-{n}"


def shard_dir(work: Path, n: int) -> Path:
    return work / f"shards-{n}"


def ensure_source(work: Path, n: int, seq_len: int, n_targets: int) -> float:
    """train.mat of n random samples under work/data-n; seconds spent writing it (0: reused)."""
    started = time.perf_counter()
    path = data_dir(work, n) / "train.mat"
    write_random_split(path, "train", n, seq_len, n_targets, seed=n)
    return time.perf_counter() - started


def prepare(work: Path, n: int) -> ChildRun:
    """`danq data prepare` of train.mat into work/shards-n, with the project's params.yaml."""
    cmd = [danq_command(), "data", "prepare", "--data", str(data_dir(work, n))]
    cmd += ["--out", str(shard_dir(work, n)), "--splits", "train", "--quiet"]
    return run_measured(cmd)


def ensure_shards(work: Path, n: int, seq_len: int, n_targets: int) -> str:
    """Prepared train shards of n samples, reused when they exist."""
    train = shard_dir(work, n) / "train"
    if not (
        (train / SHARD_MANIFEST_FILE).exists() and read_manifest(str(train)).n_source_samples == n
    ):
        ensure_source(work, n, seq_len, n_targets)
        prepare(work, n)
    return str(train)


def train_briefly(shards: str, preset: str, batch_size: int, steps: int) -> ChildRun:
    cmd = [sys.executable, "-m", "benchmarks.train_child", "--shards", shards]
    cmd += ["--preset", preset, "--batch-size", str(batch_size), "--steps", str(steps)]
    return run_measured(cmd)


def in_memory_bytes(n: int, seq_len: int) -> dict[str, int]:
    return {"uint8": n * seq_len * 4, "float32": n * seq_len * 4 * 4}


def _mb(value: float) -> Summary:
    return Summary.of([value / MB])


def rss_figures(what: str, runs: dict[int, ChildRun], seq_len: int) -> list[Figure]:
    """Peak RSS at each size vs the in-memory x, and the growth from smallest to largest."""
    figures = []
    for n, run in runs.items():
        reference = in_memory_bytes(n, seq_len)
        figures.append(
            Figure(
                f"{what} peak RSS, {n:,} samples",
                "MB",
                _mb(run.peak_rss_bytes),
                f"{what} (streamed)",
                _mb(reference["uint8"]),
                "original code: x in memory as uint8",
                higher_is_better=False,
                notes=f"x as float32 would be {reference['float32'] / MB:,.0f} MB",
                details={"wall_s": run.wall_s, "in_memory_bytes": reference},
            )
        )
    growth = rss_growth_figure(what, runs)
    return figures if growth is None else [*figures, growth]


def rss_growth_figure(
    what: str, runs: dict[int, ChildRun], items: str = "samples"
) -> Figure | None:
    """The peak RSS at the largest size against the smallest (None for a single size)."""
    small, large = min(runs), max(runs)
    if small == large:
        return None
    peak = runs[large].peak_rss_bytes / MB
    return Figure(
        f"{what} peak RSS growth, {small:,} -> {large:,} {items}",
        "MB",
        _mb(runs[large].peak_rss_bytes),
        f"peak at {large:,} {items}",
        _mb(runs[small].peak_rss_bytes),
        f"peak at {small:,} {items}",
        higher_is_better=False,
        target=1 / RSS_GROWTH_LIMIT,
        notes=(
            f"target: at most {RSS_GROWTH_LIMIT}x the smaller peak (ratio >= "
            f"{1 / RSS_GROWTH_LIMIT:.2f}) and < {RSS_ABSOLUTE_LIMIT_MB} MB: "
            f"{'met' if peak < RSS_ABSOLUTE_LIMIT_MB else 'missed'} ({peak:,.0f} MB)"
        ),
    )


def prepare_benchmark(
    work: Path, sizes: list[int], seq_len: int, n_targets: int
) -> tuple[list[Figure], dict[int, float]]:
    """Prepare figures; also returns the seconds spent writing each source file (setup)."""
    writes = {n: ensure_source(work, n, seq_len, n_targets) for n in sizes}
    runs = {n: prepare(work, n) for n in sizes}
    figures = rss_figures("prepare", runs, seq_len)
    largest = max(sizes)
    rate = largest / runs[largest].wall_s
    figures.append(
        Figure(
            f"`danq data prepare` throughput, {largest:,} samples",
            "samples/s",
            Summary.of([rate]),
            "process wall time, start-up included",
            notes=(
                f"extrapolated to DeepSEA's {DEEPSEA_TRAIN_SAMPLES:,} training samples: "
                f"{DEEPSEA_TRAIN_SAMPLES / rate / 60:,.0f} min"
            ),
            details={
                "samples_per_s_by_size": {n: n / r.wall_s for n, r in runs.items()},
                "extrapolated_s_4_4M": DEEPSEA_TRAIN_SAMPLES / rate,
            },
        )
    )
    return figures, writes


def training_memory_benchmark(
    work: Path, sizes: list[int], seq_len: int, preset: str, batch_size: int, steps: int
) -> list[Figure]:
    runs = {
        n: train_briefly(str(shard_dir(work, n) / "train"), preset, batch_size, steps)
        for n in sizes
    }
    return rss_figures(f"training ({preset}, {steps} steps)", runs, seq_len)

"""`danq data from-bed` at two genome sizes: peak memory (flat as the genome grows) and
throughput in bins per second, extrapolated to the human genome.

Each genome is chr1..chr9 of random sequence with `targets` peak files of one 300-bp peak per
PEAK_SPACING bp each, written once under the work folder (reused when present). The build runs
as `danq data from-bed` in its own child process with the project's params.yaml (DeepSEA's
200-bp bins, 1000-bp windows, GC-matched negatives), measured by benchmarks.peak_rss. The
reference for memory is what holding the genome as a uint8 one-hot array takes (4 bytes per
base), as an in-memory builder does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.memory import MB, RSS_GROWTH_LIMIT, ChildRun, danq_command, run_measured
from benchmarks.records import Figure, Summary
from danq.artifacts import DATA_METADATA_FILE

REPO = Path(__file__).resolve().parent.parent
CONTIGS = [f"chr{i}" for i in range(1, 10)]
PEAK_SPACING = 20_000  # bp between peaks of one target: ~150,000 peaks per target on hg38
PEAK_BP = 300
HUMAN_GENOME_BP = 3_100_000_000  # GRCh38 primary assembly, about
BLOCK_BP = 60 * 16_666  # whole 60-base lines: faidx needs equal line lengths


def genome_dir(work: Path, megabases: int, targets: int) -> Path:
    return work / f"from-bed-{megabases}mb-{targets}t"


def ensure_genome(work: Path, megabases: int, targets: int) -> Path:
    """genome.fa (chr1..chr9, megabases in all) and peaks.tsv with its BED files; reused."""
    folder = genome_dir(work, megabases, targets)
    sheet = folder / "peaks.tsv"
    if sheet.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(megabases)
    length = megabases * 1_000_000 // len(CONTIGS)
    alphabet = np.frombuffer(b"ACGT", dtype=np.uint8)
    with open(folder / "genome.fa", "wb") as fasta:
        for contig in CONTIGS:
            fasta.write(f">{contig}\n".encode())
            for start in range(0, length, BLOCK_BP):
                bases = alphabet[rng.integers(0, 4, min(BLOCK_BP, length - start))]
                lines = np.pad(bases, (0, -len(bases) % 60), constant_values=0).reshape(-1, 60)
                text = b"\n".join(row.tobytes().rstrip(b"\0") for row in lines)
                fasta.write(text + b"\n")
    rows = []
    for t in range(targets):
        name = f"target_{t}"
        with open(folder / f"{name}.bed", "w") as bed:
            for contig in CONTIGS:
                starts = np.sort(rng.integers(0, length - PEAK_BP, length // PEAK_SPACING))
                bed.writelines(f"{contig}\t{s}\t{s + PEAK_BP}\n" for s in starts)
        rows.append(f"{name}\t{name}.bed\n")
    sheet.write_text("".join(rows))
    return folder


def build(folder: Path, out: Path) -> tuple[ChildRun, dict]:
    cmd = [danq_command(), "data", "from-bed", "--fasta", str(folder / "genome.fa")]
    cmd += ["--peaks", str(folder / "peaks.tsv"), "--out", str(out), "--quiet"]
    run = run_measured(cmd, cwd=REPO)
    return run, json.loads((out / DATA_METADATA_FILE).read_text())


def from_bed_benchmark(work: Path, megabases: list[int], targets: int) -> list[Figure]:
    runs: dict[int, tuple[ChildRun, dict]] = {}
    for size in megabases:
        folder = ensure_genome(work, size, targets)
        runs[size] = build(folder, genome_dir(work, size, targets) / "data")
    figures = []
    for size, (run, metadata) in runs.items():
        figures.append(
            Figure(
                f"`danq data from-bed` peak RSS, {size} Mb genome, {targets} targets",
                "MB",
                Summary.of([run.peak_rss_bytes / MB]),
                "streamed by contig and chunk",
                Summary.of([4 * size * 1_000_000 / MB]),
                "genome in memory as uint8 one-hot (4 bytes/base)",
                higher_is_better=False,
                notes=(
                    f"the genome's text alone: {size * 1_000_000 / MB:,.0f} MB; the human "
                    f"genome as one-hot: {4 * HUMAN_GENOME_BP / MB:,.0f} MB"
                ),
                details={"wall_s": run.wall_s, "counts": metadata["counts"]},
            )
        )
    small, large = min(runs), max(runs)
    if small != large:
        figures.append(
            Figure(
                f"`danq data from-bed` peak RSS growth, {small} -> {large} Mb",
                "MB",
                Summary.of([runs[large][0].peak_rss_bytes / MB]),
                f"peak at {large} Mb",
                Summary.of([runs[small][0].peak_rss_bytes / MB]),
                f"peak at {small} Mb",
                higher_is_better=False,
                target=1 / RSS_GROWTH_LIMIT,
                notes=f"target: at most {RSS_GROWTH_LIMIT}x the smaller peak",
            )
        )
    run, metadata = runs[large]
    counts = metadata["counts"]
    scanned = sum(c["bins_scanned"] for c in counts.values())
    windows = sum(c["forward"] for c in counts.values())
    rate = scanned / run.wall_s
    human_bins = HUMAN_GENOME_BP / metadata["bin_size"]
    figures.append(
        Figure(
            f"`danq data from-bed` throughput, {large} Mb genome, {targets} targets",
            "bins/s",
            Summary.of([rate]),
            "process wall time, start-up included",
            notes=(
                f"{windows:,} windows written (x2 with reverse complements); extrapolated to "
                f"the human genome ({human_bins / 1e6:.1f} M bins): {human_bins / rate / 60:,.0f} "
                "min at the same peak density"
            ),
            details={
                "bins_per_s_by_size": {
                    s: sum(c["bins_scanned"] for c in m["counts"].values()) / r.wall_s
                    for s, (r, m) in runs.items()
                },
                "windows_written": windows,
                "extrapolated_human_s": human_bins / rate,
            },
        )
    )
    return figures

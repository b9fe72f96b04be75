"""The `danq data from-bed` benchmark: its genomes, child runs and figures."""

from __future__ import annotations

from pathlib import Path

import pysam

from benchmarks.from_bed import CONTIGS, ensure_genome, from_bed_benchmark


def test_from_bed_benchmark_records(tmp_path: Path) -> None:
    figures = from_bed_benchmark(tmp_path, [1, 2], targets=2)
    names = [f.name for f in figures]
    assert names == [
        "`danq data from-bed` peak RSS, 1 Mb genome, 2 targets",
        "`danq data from-bed` peak RSS, 2 Mb genome, 2 targets",
        "`danq data from-bed` peak RSS growth, 1 -> 2 Mb",
        "`danq data from-bed` throughput, 2 Mb genome, 2 targets",
    ]
    assert figures[2].target is not None and figures[3].ours.median > 0
    assert figures[3].details["windows_written"] > 0
    with pysam.FastaFile(str(ensure_genome(tmp_path, 2, 2) / "genome.fa")) as fasta:
        assert list(fasta.references) == CONTIGS
        assert sum(fasta.lengths) == 2_000_000 - 2_000_000 % len(CONTIGS)

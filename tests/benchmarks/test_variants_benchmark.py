"""The variant-effect benchmark at tiny sizes: well-formed figures, the per-variant loop
agreeing with `danq variant-effect`'s scores, and VCFs whose REF is the genome's. No timing
is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pysam
import pytest

from benchmarks.variants import (
    memory_figures,
    throughput_figure,
    write_genome,
    write_snvs,
)


def test_snv_vcf_matches_its_genome(tmp_path: Path) -> None:
    genome = write_genome(tmp_path / "g.fa", 5_000, seed=1)
    vcf = write_snvs(tmp_path / "s.vcf", genome, 300, seed=2)
    with pysam.FastaFile(str(genome)) as fasta, pysam.VariantFile(str(vcf)) as records:
        rows = list(records)
        assert len(rows) == 300 and len({r.pos for r in rows}) == 300
        assert [r.pos for r in rows] == sorted(r.pos for r in rows)
        for r in rows:
            assert fasta.fetch(r.chrom, r.start, r.stop) == r.ref != r.alts[0]


def test_throughput_figure_agrees_with_the_loop(tmp_path: Path) -> None:
    figure = throughput_figure(tmp_path, "small", 120, 7, n_ours=40, n_loop=6, repeats=2)
    assert figure.unit == "variants/s" and len(figure.ours.values) == 2
    assert figure.ratio is not None and figure.ratio > 0
    assert figure.details["n_loop"] == 6
    assert figure.details["max_abs_difference"] < 1e-5  # the TSV's 6 significant digits
    json.dumps(figure.to_json())


@pytest.mark.slow  # two `danq variant-effect` child processes
def test_memory_figures(tmp_path: Path) -> None:
    figures = memory_figures(tmp_path, [200, 400], 5)
    assert [f.unit for f in figures] == ["MB"] * 3
    assert figures[2].target is not None and figures[2].ratio is not None
    assert all(f.ours.median > 50 for f in figures)

"""An SNV's diff from `danq variant-effect` equals the ISM value at that position and base.

The two share the window convention for a single base (danq.predict's centring of a 1-bp
region puts it at window index L // 2, where danq.prediction.variants puts the variant) and
the scoring core; here they are checked against each other through their public functions.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from danq.prediction.effects import score_variants
from danq.prediction.genome import open_genome
from danq.prediction.ism import genome_sequences, saturation_mutagenesis

from .test_predict import NAMES, L, random_dna

CONTIGS = {"chr1": random_dna(400, 21), "chr2": random_dna(150, 22)}


def test_snv_diff_equals_ism_at_its_position_and_base(model, tmp_path: Path) -> None:
    genome = tmp_path / "genome.fa"
    genome.write_text("".join(f">{name}\n{seq}\n" for name, seq in CONTIGS.items()))
    rng = np.random.default_rng(5)
    # Random SNVs, plus ones whose window runs past either contig end (N padding).
    sites = [("chr1", int(p)) for p in rng.integers(1, 401, 12)]
    sites += [("chr1", 3), ("chr2", 149), ("chr2", 75)]
    snvs = []
    for contig, pos in sorted(set(sites)):
        ref = CONTIGS[contig][pos - 1]
        alt = "ACGT".replace(ref, "")[int(rng.integers(0, 3))]
        snvs.append((contig, pos, ref, alt))
    vcf = tmp_path / "snvs.vcf"
    header = "##fileformat=VCFv4.2\n" + "".join(
        f"##contig=<ID={name},length={len(seq)}>\n" for name, seq in CONTIGS.items()
    )
    lines = [f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in snvs]
    vcf.write_text(header + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(lines))
    out = tmp_path / "effects.tsv"
    with open_genome(genome) as opened:
        score_variants(model, vcf, opened, NAMES, out, batch_size=8, progress=None)
    with out.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == len(snvs)

    regions = [f"{c}:{p}-{p}" for c, p, _, _ in snvs]
    for row, sequence, (_, _, _, alt) in zip(
        rows, genome_sequences(str(genome), regions, L), snvs, strict=True
    ):
        result = saturation_mutagenesis(model, sequence, [0, 1, 2], NAMES, batch_size=64)
        assert sequence.window_start == int(row["pos"]) - 1 - L // 2
        assert result.ism.shape == (1, 4, 3)  # a 1-bp region: one mutated position
        ism = result.ism[0, "AGCT".index(alt)]
        diff = np.array([float(row[f"{name}:diff"]) for name in NAMES])
        np.testing.assert_allclose(diff, ism, rtol=1e-4, atol=2e-6)
        ref = np.array([float(row[f"{name}:ref"]) for name in NAMES])
        np.testing.assert_allclose(ref, result.ref, rtol=1e-5, atol=2e-6)

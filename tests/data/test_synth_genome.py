"""`danq data synth-genome`: planted instances really in the FASTA, VCF REF = FASTA, motif-core
SNVs at the core turning the consensus into the rarest base, background SNVs away from every
instance, N gaps, indexes, byte-identical reruns."""

from __future__ import annotations

import json
from pathlib import Path

import bioframe
import numpy as np
import pysam
import pytest

from danq.artifacts import (
    SYNTH_GENOME_FASTA_FILE,
    SYNTH_GENOME_METADATA_FILE,
    SYNTH_GENOME_MOTIFS_FILE,
    SYNTH_GENOME_VARIANTS_FILE,
)
from danq.cli.main import main
from danq.config import SynthConfig, SynthGenomeConfig
from danq.data.jaspar import motifs_by_id
from danq.data.synth import sharpen
from danq.data.synth_genome import contig_lengths, write_genome

SYNTH = SynthConfig(seq_len=200, chunk_size=30, motif_temperature=0.5, n_sequence_share=0.1)
GENOME = SynthGenomeConfig(
    contigs=3, contig_length=20_000, seed=4, motif_core_variants=60, background_variants=50
)
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def revcomp(text: str) -> str:
    return text.translate(COMPLEMENT)[::-1]


@pytest.fixture(scope="module")
def genome_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("genome") / "g"
    write_genome(out, GENOME, SYNTH)
    return out


@pytest.fixture(scope="module")
def matrices() -> dict[str, np.ndarray]:
    """Each motif's label -> its sampling matrix in A,C,G,T column order."""
    found = motifs_by_id(list(SYNTH.motifs), SYNTH.jaspar_release)
    agct_to_acgt = [0, 2, 1, 3]
    return {
        f"{i}_{name}": sharpen(pfm, SYNTH.motif_temperature)[:, agct_to_acgt]
        for i, name, pfm in found
    }


def read_bed(genome_dir: Path):
    return bioframe.read_table(genome_dir / SYNTH_GENOME_MOTIFS_FILE, schema="bed9")


def log_odds(text: str, matrix: np.ndarray) -> float:
    """Log-likelihood ratio of text under the matrix vs uniform bases (N: no information)."""
    rows = [i for i, b in enumerate(text) if b in "ACGT"]
    probs = matrix[rows, ["ACGT".index(text[i]) for i in rows]]
    return float(np.log(np.maximum(probs, 1e-4) / 0.25).sum())


def test_bed_instances_are_in_the_fasta(genome_dir: Path, matrices: dict) -> None:
    bed = read_bed(genome_dir)
    assert len(bed) > 100 and set(bed["name"]) == set(matrices)
    assert set(bed["strand"]) == {"+", "-"}
    fasta = pysam.FastaFile(str(genome_dir / SYNTH_GENOME_FASTA_FILE))
    planted, shifted = [], []
    for row in bed.itertuples():
        matrix = matrices[row.name]
        assert row.end - row.start == len(matrix)
        text = fasta.fetch(row.chrom, row.start, row.end)
        planted.append(log_odds(text if row.strand == "+" else revcomp(text), matrix))
        # The same stretch on the other strand, a control drawn from background and motif.
        shifted.append(log_odds(text if row.strand == "-" else revcomp(text), matrix))
        assert row.start <= row.thickStart < row.end and row.thickEnd == row.thickStart + 1
    # Sampled from the matrix itself: (almost) every instance scores above background odds,
    # and far above the same bases read on the other strand.
    planted_scores = np.array(planted)
    assert (planted_scores > 0).mean() > 0.98
    assert np.median(planted_scores) > np.median(shifted) + 10


def test_vcf_ref_matches_the_fasta_and_classes_are_what_they_say(
    genome_dir: Path, matrices: dict
) -> None:
    fasta = pysam.FastaFile(str(genome_dir / SYNTH_GENOME_FASTA_FILE))
    bed = read_bed(genome_dir)
    cores = {(r.chrom, r.thickStart): r for r in bed.itertuples()}
    margin = GENOME.background_margin
    classes = {"motif_core": 0, "background": 0}
    with pysam.VariantFile(str(genome_dir / SYNTH_GENOME_VARIANTS_FILE)) as vcf:
        for rec in vcf:
            ref, alt = rec.ref, rec.alts[0]
            assert fasta.fetch(rec.chrom, rec.start, rec.stop) == ref and alt != ref
            assert ref in "ACGT" and alt in "ACGT"
            category = rec.info["SYNTH_CLASS"]
            classes[category] += 1
            if category == "motif_core":
                row = cores[(rec.chrom, rec.start)]
                assert rec.info["MOTIF"] == row.name
                matrix = matrices[row.name]
                core = rec.start - row.start if row.strand == "+" else row.end - 1 - rec.start
                on_strand = (ref, alt) if row.strand == "+" else (revcomp(ref), revcomp(alt))
                probs = matrix[core]
                assert probs["ACGT".index(on_strand[0])] == probs.max()
                assert probs["ACGT".index(on_strand[1])] == probs.min()
            else:
                near = bed[
                    (bed["chrom"] == rec.chrom)
                    & (bed["start"] - margin <= rec.start)
                    & (bed["end"] + margin > rec.start)
                ]
                assert near.empty, f"background SNV {rec.chrom}:{rec.pos} is near {near}"
                assert "N" not in fasta.fetch(rec.chrom, max(rec.start - 1, 0), rec.stop + 1)
    assert classes == {"motif_core": 60, "background": 50}


def test_contigs_gaps_and_indexes(genome_dir: Path) -> None:
    lengths = contig_lengths(GENOME)
    assert lengths == {"chrS1": 20_000, "chrS2": 10_000, "chrS3": 6_666}
    fasta = pysam.FastaFile(str(genome_dir / SYNTH_GENOME_FASTA_FILE))
    assert dict(zip(fasta.references, fasta.lengths, strict=True)) == lengths
    text = "".join(fasta.fetch(name) for name in lengths)
    assert set(text) == set("ACGTN") and "NNNNN" in text
    gc = sum(text.count(b) for b in "GC") / sum(text.count(b) for b in "ACGT")
    assert abs(gc - SYNTH.gc_mean) < 0.03
    with pysam.VariantFile(str(genome_dir / SYNTH_GENOME_VARIANTS_FILE)) as vcf:
        assert dict(vcf.header.contigs.items()).keys() == lengths.keys()
        # The tabix index answers region queries.
        in_region = list(vcf.fetch("chrS2", 0, 5_000))
        assert all(r.chrom == "chrS2" and r.start < 5_000 for r in in_region)
    metadata = json.loads((genome_dir / SYNTH_GENOME_METADATA_FILE).read_text())
    assert metadata["contigs"] == lengths
    assert metadata["variants"] == {"motif_core": 60, "background": 50}


def test_same_settings_give_identical_files_and_the_cli_writes_them(
    genome_dir: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps({"synth": SYNTH.model_dump(), "synth_genome": GENOME.model_dump()})
    )
    again = tmp_path / "again"
    assert main(["--params", str(params), "data", "synth-genome", "--out", str(again)]) == 0
    names = sorted(p.name for p in genome_dir.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (again / name).read_bytes() == (genome_dir / name).read_bytes(), name
    other = tmp_path / "other"
    write_genome(other, GENOME.model_copy(update={"seed": 5}), SYNTH)
    assert (other / SYNTH_GENOME_FASTA_FILE).read_bytes() != (
        genome_dir / SYNTH_GENOME_FASTA_FILE
    ).read_bytes()

"""Train on your own data, offline, through the command line: a genome FASTA and peak files
(tests/data/own_genome.py) -> `danq data from-bed` -> `validate` -> `data prepare` -> `train`
(both variants) -> `evaluate` -> `promote`; then `variant-effect` with the new champion on
that FASTA, and on one whose contig lengths differ."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pysam
import pytest
import yaml

from danq.artifacts import DATA_METADATA_FILE, GENOME_METADATA_KEY, PER_TARGET_FILE
from danq.cli.main import main
from danq.config import VARIANTS
from danq.io.genome import genome_fingerprint, open_genome
from danq.model.loading import load_verified_model

from ..data.own_genome import CONTIGS, write_genome

WINDOW = 300
MODEL = "own-data"


def _write_vcf(path: Path, fasta: Path, positions: list[int]) -> Path:
    """SNVs on chr1 at 0-based positions, REF read from the FASTA, ALT another base."""
    with pysam.FastaFile(str(fasta)) as genome:
        refs = [genome.fetch("chr1", p, p + 1).upper() for p in positions]
    rows = [
        f"chr1\t{p + 1}\tv{i}\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\t.\t."
        for i, (p, ref) in enumerate(zip(positions, refs))
    ]
    path.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "\n".join(rows)
        + "\n"
    )
    return path


def _write_shortened(fasta: Path, out: Path, contig: str, cut: int) -> Path:
    """The same genome with `cut` bases removed from the end of `contig`."""
    with pysam.FastaFile(str(fasta)) as genome:
        records = {name: genome.fetch(name) for name in genome.references}
    records[contig] = records[contig][:-cut]
    out.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return out


@pytest.mark.slow  # trains two small models (at most 14 epochs each)
def test_fasta_and_peaks_to_a_champion_that_scores_variants_on_its_genome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    genome = write_genome(tmp_path / "genome", contig_length=150_000, seed=3)
    data, build = tmp_path / "data", tmp_path / "build"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "data_dir": str(data),
                    "work_dir": str(build),
                    "metrics_dir": str(tmp_path / "metrics"),
                },
                "mlflow": {
                    "tracking_uri": tracking_uri,
                    "registered_model": MODEL,
                },
                "from_bed": {"window": WINDOW},
                "model": {
                    "preset": "custom",
                    "conv_filters": 16,
                    "conv_width": 12,
                    "pool_size": 10,
                    "lstm_units": 8,
                    "dense_units": 16,
                },
                "train": {
                    "batch_size": 64,
                    "learning_rate": 0.005,
                    "max_epochs": 14,
                    "shuffle_buffer": 2000,
                },
                "evaluate": {"batch_size": 200},
                "promote": {"bootstrap_samples": 50, "bootstrap_min_class_blocks": 2},
            }
        )
    )
    danq = ["--params", str(params)]

    args = ["data", "from-bed", "--fasta", str(genome.fasta), "--peaks", str(genome.sheet)]
    assert main([*danq, *args, "--quiet"]) == 0
    assert main([*danq, "validate"]) == 0
    assert "data gate passed" in capsys.readouterr().out
    validation = ["--validation", str(build / "validation")]
    assert main([*danq, "data", "prepare", *validation, "--quiet"]) == 0

    for variant in VARIANTS:
        assert main([*danq, "train", "--variant", variant]) == 0
        assert (build / "models" / variant / "run.json").is_file()
    assert main([*danq, "evaluate"]) == 0
    for variant in VARIANTS:
        metrics = json.loads((build / "eval" / variant / "metrics.json").read_text())
        assert metrics["n_targets"] == 3  # motif_a, motif_b, noise

    assert main([*danq, "promote"]) == 0
    blessing = json.loads((build / "promote" / "blessing.json").read_text())
    assert blessing["decision"] == "promote", blessing
    versions = {c["variant"]: c["registered_version"] for c in blessing["candidates"]}
    assert set(versions) == set(VARIANTS) and all(versions.values()), blessing["candidates"]
    # The chosen model learned the planted motifs: test AUROC (held-out chr8, chr9).
    with open(build / "eval" / blessing["chosen"] / PER_TARGET_FILE, newline="") as fh:
        auroc = {row["name"]: float(row["auroc"]) for row in csv.DictReader(fh, delimiter="\t")}
    assert auroc["motif_a"] > 0.9 and auroc["motif_b"] > 0.9, auroc

    # The champion carries the fingerprint of the FASTA its data was cut from.
    champion = load_verified_model(f"models:/{MODEL}@champion", tracking_uri)
    assert champion.source == f"models:/{MODEL}/{versions[blessing['chosen']]}"
    with open_genome(genome.fasta) as fasta:
        fingerprint = genome_fingerprint(genome.fasta, fasta, None)
    assert champion.metadata[GENOME_METADATA_KEY] == fingerprint
    data_metadata = json.loads((data / DATA_METADATA_FILE).read_text())
    assert data_metadata[GENOME_METADATA_KEY] == fingerprint
    assert set(fingerprint["contigs"]) == set(CONTIGS)

    # variant-effect with the champion: its own genome is scored without a mismatch ...
    vcf = _write_vcf(tmp_path / "snvs.vcf", genome.fasta, [5_000, 20_000, 40_000])
    scores = tmp_path / "scores.tsv"
    scoring = ["variant-effect", "--vcf", str(vcf), "--batch-size", "8"]
    capsys.readouterr()
    assert main([*danq, *scoring, "--fasta", str(genome.fasta), "--out", str(scores)]) == 0
    printed = capsys.readouterr()
    assert "scored 3 of 3 alleles" in printed.out
    assert "mismatch" not in printed.err and "warning" not in printed.err
    assert len(scores.read_text().splitlines()) == 4  # header + 3 alleles
    # ... and a FASTA whose chr5 is 60 bp shorter is refused, nothing written.
    other = _write_shortened(genome.fasta, tmp_path / "other.fa", "chr5", 60)
    refused = tmp_path / "refused.tsv"
    assert main([*danq, *scoring, "--fasta", str(other), "--out", str(refused)]) == 1
    err = capsys.readouterr().err
    assert "genome build mismatch" in err and "chr5" in err
    assert not refused.exists()

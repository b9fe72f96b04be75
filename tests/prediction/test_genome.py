"""The genome FASTA for variant effects: padded fetches, contig-name reconciliation, and the
genome build a model records at training time and `danq variant-effect` checks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pysam
import pytest

from danq.artifacts import DATA_METADATA_FILE, GENOME_METADATA_KEY
from danq.config import Params
from danq.errors import ConfigError, DataError
from danq.io.genome import canonical_build, model_genome_record
from danq.prediction.genome import check_build, name_candidates, open_genome
from danq.training.outputs import recorded_genome


def random_genome(lengths: dict[str, int], seed: int) -> dict[str, str]:
    """Contigs of random bases with a run of N and a soft-masked (lower-case) stretch."""
    rng = np.random.default_rng(seed)
    contigs = {}
    for name, n in lengths.items():
        bases = list(rng.choice(list("ACGT"), n))
        bases[n // 3 : n // 3 + 7] = "N" * 7
        bases[n // 2 : n // 2 + 9] = [b.lower() for b in bases[n // 2 : n // 2 + 9]]
        contigs[name] = "".join(bases)
    return contigs


def write_fasta(path: Path, contigs: dict[str, str], width: int = 60) -> Path:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name} some description\n")
            fh.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
    return path


def padded_slice(seq: str, start: int, end: int) -> str:
    """Brute force: the sequence upper-cased, with N outside it."""
    return "".join(seq[i].upper() if 0 <= i < len(seq) else "N" for i in range(start, end))


@pytest.mark.parametrize("compression", ["plain", "bgzip"])
def test_fetch_equals_python_slicing_inside_and_past_the_ends(
    tmp_path: Path, compression: str
) -> None:
    contigs = random_genome({"chr1": 333, "chr2": 71}, seed=1)
    path = write_fasta(tmp_path / "g.fa", contigs, width=50)
    if compression == "bgzip":
        pysam.tabix_compress(str(path), str(tmp_path / "g.fa.gz"))
        path = tmp_path / "g.fa.gz"
    rng = np.random.default_rng(0)
    with open_genome(path) as genome:
        assert genome.contigs == {name: len(seq) for name, seq in contigs.items()}
        for _ in range(300):
            name = str(rng.choice(list(contigs)))
            start = int(rng.integers(-80, len(contigs[name]) + 40))
            end = start + int(rng.integers(0, 120))
            assert genome.fetch(name, start, end) == padded_slice(contigs[name], start, end)
    if compression == "bgzip":  # indexes built beside the file
        assert (tmp_path / "g.fa.gz.fai").is_file() and (tmp_path / "g.fa.gz.gzi").is_file()


def test_plain_gzip_fasta_is_refused_with_the_fix(tmp_path: Path) -> None:
    text = write_fasta(tmp_path / "g.fa", {"chr1": "ACGT" * 30}).read_bytes()
    (tmp_path / "g.fa.gz").write_bytes(gzip.compress(text))
    with pytest.raises(DataError, match="bgzip"), open_genome(tmp_path / "g.fa.gz"):
        pass


@pytest.mark.parametrize(
    ("vcf_name", "fasta_names", "expected"),
    [
        ("1", ["chr1", "chr2"], "chr1"),
        ("chr1", ["1", "2"], "1"),
        ("chr1", ["chr1", "1"], "chr1"),  # an exact name wins
        ("MT", ["chrM"], "chrM"),
        ("chrM", ["MT"], "MT"),
        ("M", ["chrMT"], "chrMT"),
        ("chrX", ["chr1"], None),
        ("X", ["chrX_alt"], None),
    ],
)
def test_contig_names_are_reconciled(
    tmp_path: Path, vcf_name: str, fasta_names: list[str], expected: str | None
) -> None:
    path = write_fasta(tmp_path / "g.fa", {name: "ACGTN" * 4 for name in fasta_names})
    with open_genome(path) as genome:
        assert genome.resolve(vcf_name) == expected
        assert genome.resolve(vcf_name) == expected  # memoised, recorded once
        renamed = {} if expected in (None, vcf_name) else {vcf_name: expected}
        assert genome.renames == renamed
    assert name_candidates(vcf_name)[0] == vcf_name


# --------------------------------------------------------------------------- genome builds


def test_build_aliases_fold_together() -> None:
    assert canonical_build("GRCh38") == canonical_build("hg38") == "hg38"
    assert canonical_build(" grch37 ") == "hg19"
    assert canonical_build("GRCm39") == "mm39"
    assert canonical_build("dm6") == "dm6"


def test_model_genome_record_combines_setting_and_data(tmp_path: Path) -> None:
    data = {"build": "GRCh38", "fasta_md5": "ab" * 16, "contigs": {"chr1": 100}}
    assert model_genome_record(None, None) is None
    assert model_genome_record("hg19", None) == {
        "build": "hg19",
        "contigs": None,
        "fasta_md5": None,
    }
    assert model_genome_record(None, data) == {**data}
    assert model_genome_record("hg38", data)["build"] == "hg38"  # same build, alias
    with pytest.raises(ConfigError, match="genome.build"):
        model_genome_record("hg19", data)
    # What training logs: the data folder's metadata.json genome and the genome.build setting.
    (tmp_path / DATA_METADATA_FILE).write_text(json.dumps({GENOME_METADATA_KEY: data}))
    params = Params.model_validate({"genome": {"build": "hg38"}})
    assert recorded_genome(params, str(tmp_path)) == {**data, "build": "hg38"}
    assert recorded_genome(Params(), None) is None
    with pytest.raises(ConfigError):
        recorded_genome(Params.model_validate({"genome": {"build": "mm10"}}), str(tmp_path))


@pytest.fixture
def small_genome(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "g.fa", {"chr1": "ACGT" * 50, "chr2": "GATTACA" * 10})


def test_check_build_without_a_record_warns(small_genome: Path) -> None:
    with open_genome(small_genome) as genome:
        check = check_build(None, genome)
    assert check.problems == [] and "records no genome build" in check.warnings[0]


def test_check_build_accepts_matching_contigs_and_names(small_genome: Path) -> None:
    record = {"build": "synthA", "contigs": {"1": 200, "chr2": 70, "chr9": 5}}
    with open_genome(small_genome) as genome:
        check = check_build(record, genome, declared_build="synthA")
    assert check.problems == [] and check.warnings == []


@pytest.mark.parametrize(
    ("record", "declared", "problem"),
    [
        ({"build": "hg19"}, "GRCh38", "trained on hg19"),
        ({"build": None, "contigs": {"chr1": 201}}, None, "chr1: 201 bp in the training genome"),
        ({"build": "x", "contigs": {"chrS1": 10, "chrS2": 20}}, None, "none of the 2 contigs"),
    ],
)
def test_check_build_reports_mismatches(
    small_genome: Path, record: dict, declared: str | None, problem: str
) -> None:
    with open_genome(small_genome) as genome:
        check = check_build(record, genome, declared_build=declared)
    assert any(problem in p for p in check.problems), check.problems


def test_check_build_warns_when_the_fasta_build_is_unknown(small_genome: Path) -> None:
    with open_genome(small_genome) as genome:
        check = check_build({"build": "hg38", "contigs": None}, genome)
    assert check.problems == [] and "not known" in check.warnings[0]


def test_training_logs_the_genome_in_the_model_metadata(
    model_file: Path, mlflow_store: str
) -> None:
    """tracking.log_keras_model (what training calls) puts the record where loading finds it."""
    import mlflow

    from danq import tracking
    from danq.model.loading import load_model, load_verified_model

    model = load_model(str(model_file))
    record = {"build": "hg38", "contigs": {"chr1": 248_956_422}, "fasta_md5": None}
    client = tracking.client(mlflow_store)
    experiment = client.create_experiment("genome")
    with tracking.using(mlflow_store), mlflow.start_run(experiment_id=experiment):
        uri = tracking.log_keras_model(
            model, np.zeros((2, 60, 4), np.float32), ["a", "b", "c"], record
        )
    loaded = load_verified_model(uri, mlflow_store)
    assert loaded.metadata[GENOME_METADATA_KEY] == record
    assert loaded.metadata["target_names"] == ["a", "b", "c"]


@pytest.mark.slow
def test_training_records_the_data_genome_and_refuses_a_contradicting_build(
    tiny_data: Path, tiny_shards: Path, tmp_path: Path, mlflow_store: str
) -> None:
    """train_variant logs the data's genome record with the model; a genome.build that the
    data contradicts fails before any training."""
    import mlflow

    from danq import tracking
    from danq.config import parse_params
    from danq.training.loop import train_variant

    data = tmp_path / "data"
    data.mkdir()
    metadata = json.loads((tiny_data / DATA_METADATA_FILE).read_text())
    genome = {"build": "synthA", "fasta_md5": "0" * 32, "contigs": {"chrS1": 5000}}
    (data / DATA_METADATA_FILE).write_text(json.dumps({**metadata, GENOME_METADATA_KEY: genome}))
    tiny = {
        "model": dict(
            preset="custom", conv_filters=4, conv_width=5, pool_size=8, lstm_units=3, dense_units=6
        ),
        "train": dict(batch_size=60, max_epochs=1, patience=1, shuffle_buffer=10, seed=1),
        "mlflow": {"tracking_uri": mlflow_store, "experiment": "genome"},
    }
    with pytest.raises(ConfigError, match="genome.build: 'hg38'"):
        train_variant(
            parse_params({**tiny, "genome": {"build": "hg38"}}),
            "baseline",
            str(tiny_shards),
            str(tmp_path / "refused"),
            str(data),
        )
    assert not (tmp_path / "refused" / "model.keras").exists()
    result = train_variant(
        parse_params(tiny), "baseline", str(tiny_shards), str(tmp_path / "out"), str(data)
    )
    with tracking.using(mlflow_store):
        stored = mlflow.models.get_model_info(result.model_uri).metadata[GENOME_METADATA_KEY]
    assert stored == genome

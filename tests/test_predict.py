"""`danq predict`: FASTA and DeepSEA-format input, windows, strand averaging, model URIs."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from danq.config import DropoutConfig, ModelConfig, Params, parse_params
from danq.io.deepsea import write_split
from danq.predict import (
    PredictError,
    add_arguments,
    load_model,
    predict_fasta,
    predict_hdf5,
    read_fasta,
    resolve_target_names,
    run,
    window_starts,
)

L = 60
NAMES = ["t0", "t1", "t2"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq

    cfg = ModelConfig(
        preset="custom", conv_filters=4, conv_width=5, pool_size=4, lstm_units=3, dense_units=6
    )
    model = build_danq(cfg, L, 3, dropout_policy(DropoutConfig(), "baseline"), seed=0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_file: Path):
    return load_model(str(model_file))


def random_dna(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def onehot(text: str) -> np.ndarray:
    """Reference one-hot (A,G,C,T; anything else all zero), independent of danq.seq."""
    x = np.zeros((len(text), 4), dtype=np.float32)
    for i, base in enumerate(text.upper()):
        if base in "AGCT":
            x[i, "AGCT".index(base)] = 1
    return x


def strand_mean(model, windows: list[str]) -> np.ndarray:
    x = np.stack([onehot(w) for w in windows])
    forward = model(x, training=False).numpy()
    reverse = model(x[:, ::-1, ::-1].copy(), training=False).numpy()
    return (forward + reverse) / 2


def read_tsv(path: Path) -> tuple[list[str], list[tuple[str, int, int]], np.ndarray]:
    header, *lines = [line.split("\t") for line in path.read_text().splitlines()]
    labels = [(f[0], int(f[1]), int(f[2])) for f in lines]
    return header, labels, np.array([[float(v) for v in f[3:]] for f in lines])


def write_fasta(path: Path, records: dict[str, str], width: int = 25) -> Path:
    text = "".join(
        f">{rid} some description\n"
        + "".join(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        for rid, seq in records.items()
    )
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def make_params(tmp_path: Path, **mlflow: str) -> Params:
    return parse_params({"paths": {"data_dir": str(tmp_path / "data")}, "mlflow": mlflow})


@pytest.mark.parametrize("name", ["in.fa", "in.fa.gz"])
def test_read_fasta_streams_multiline_lowercase_records(tmp_path: Path, name: str) -> None:
    records = {"chr1:100-200": "ACGTNacgtnRYKM" * 5, "second": "GATTACA"}
    path = write_fasta(tmp_path / name, records, width=9)
    assert list(read_fasta(path)) == list(records.items())


def test_read_fasta_tolerates_blank_lines_crlf_spaces_latin1_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "messy.fasta"
    path.write_bytes(b"\r\n>a d\xe9sc\r\nACG T\r\n\r\ngg\r\n>b\r\nN\r\n")
    assert list(read_fasta(path)) == [("a", "ACGTgg"), ("b", "N")]


@pytest.mark.parametrize(
    ("length", "windows", "stride", "starts"),
    [
        (60, "center", None, [0]),
        (21, "center", None, [-20]),  # 39 N: 20 left, 19 right
        (101, "center", None, [20]),
        (21, "tile", 30, [-20]),
        (150, "tile", 30, [0, 30, 60, 90]),
        (130, "tile", 50, [-15, 35, 85]),
        (130, "tile", 60, [-25, 35, 95]),
    ],
)
def test_window_starts(length: int, windows: str, stride: int | None, starts: list[int]) -> None:
    assert window_starts(length, L, windows, stride or L) == starts


def test_center_windows_pad_short_and_crop_long_records(model, tmp_path: Path) -> None:
    short = "ACGTNNNNACGTAAGGCCTTN"  # 21 bp
    exact = random_dna(L, 1).lower()
    long = random_dna(101, 2)
    records = {"short": short, "exact": exact, "long": long, "tiny": "G"}
    fasta = write_fasta(tmp_path / "in.fa", records)
    out = tmp_path / "out" / "pred.tsv"

    rows = predict_fasta(model, fasta, out, NAMES, batch_size=3)

    header, labels, scores = read_tsv(out)
    assert rows == 4
    assert header == ["id", "window_start", "window_end", *NAMES]
    assert labels == [("short", 1, 21), ("exact", 1, 60), ("long", 21, 80), ("tiny", 1, 1)]
    expected_windows = ["N" * 20 + short + "N" * 19, exact, long[20:80], "N" * 30 + "G" + "N" * 29]
    np.testing.assert_allclose(scores, strand_mean(model, expected_windows), rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.tsv"]


def test_strand_averaging_scores_both_strands_alike(model, tmp_path: Path) -> None:
    forward = random_dna(L, 3)
    reverse = forward[::-1].translate(str.maketrans("ACGT", "TGCA"))
    fasta = write_fasta(tmp_path / "pair.fa", {"fwd": forward, "rev": reverse})
    predict_fasta(model, fasta, tmp_path / "pair.tsv", NAMES)
    _, _, scores = read_tsv(tmp_path / "pair.tsv")
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
    single_strand = model(onehot(forward)[None], training=False).numpy()[0]
    assert not np.allclose(scores[0], single_strand, rtol=1e-5, atol=1e-6)


def test_tile_windows_cover_long_records(model, tmp_path: Path) -> None:
    long = random_dna(130, 4)
    short = "ACGTACGTACGTACGTACGTA"
    fasta = write_fasta(tmp_path / "tile.fa.gz", {"long": long, "short": short})
    out = tmp_path / "tile.tsv"

    rows = predict_fasta(model, fasta, out, NAMES, batch_size=2, windows="tile", stride=50)

    _, labels, scores = read_tsv(out)
    assert rows == 4
    assert labels == [
        ("long:1-45", 1, 45),
        ("long:36-95", 36, 95),
        ("long:86-130", 86, 130),
        ("short:1-21", 1, 21),
    ]
    expected_windows = [
        "N" * 15 + long[:45],
        long[35:95],
        long[85:] + "N" * 15,
        "N" * 20 + short + "N" * 19,
    ]
    np.testing.assert_allclose(scores, strand_mean(model, expected_windows), rtol=1e-5, atol=1e-6)


def test_hdf5_input_round_trip(model, tmp_path: Path) -> None:
    texts = [random_dna(L, seed) for seed in range(5)]
    texts[2] = "N" * 10 + texts[2][10:]
    write_split(
        tmp_path / "in.h5",
        "test",
        np.stack([onehot(t) for t in texts]).astype(np.uint8),
        None,
        container="hdf5",
    )
    out = tmp_path / "h5.tsv"

    assert predict_hdf5(model, tmp_path / "in.h5", out, NAMES, batch_size=2) == 5

    _, labels, scores = read_tsv(out)
    assert labels == [(f"seq_{i}", 1, L) for i in range(5)]
    np.testing.assert_allclose(scores, strand_mean(model, texts), rtol=1e-5, atol=1e-6)


def test_hdf5_of_another_length_is_refused(model, tmp_path: Path) -> None:
    write_split(tmp_path / "in.h5", "test", np.zeros((2, 50, 4), np.uint8), None, "hdf5")
    with pytest.raises(PredictError, match="sequences are 50 bp but the model takes 60 bp"):
        predict_hdf5(model, tmp_path / "in.h5", tmp_path / "x.tsv", NAMES)
    assert not (tmp_path / "x.tsv").exists()


BAD_FASTA = {
    "no header": (b"ACGT\n>r1\nACGT\n", ["line 1", "before the first '>' header"]),
    "nameless header": (b">r1\nACGT\n> \nACGT\n", ["line 3", "without a record name"]),
    "empty record": (b">r1\nACGT\n>r2 desc\n\n>r3\nAC\n", ["record 'r2'", "line 3", "empty"]),
    "empty last record": (b">r1\nACGT\n>tail\n", ["record 'tail'", "empty record"]),
    "duplicate id": (
        b">r1\nAC\n>r2\nGT\n>r1 again\nAA\n",
        ["record 'r1'", "line 5", "duplicate", "first seen on line 1"],
    ),
    "bad character": (b">r1\nACGT\nAC*T\n", ["record 'r1'", "line 3", "'*'", "position 7"]),
    "RNA": (b">rna\nACGU\n", ["record 'rna'", "'U'", "position 4", "IUPAC"]),
    "non-ASCII base": (">r1\nACGÄ\n".encode(), ["record 'r1'", "byte 0xc3", "position 4"]),
    "empty file": (b"", ["no FASTA records"]),
    "blank file": (b"\n \n", ["no FASTA records"]),
    "binary": (bytes(range(256)) * 8, ["not a text file"]),
    "truncated gzip": (gzip.compress(b">r1\nACGT\n" * 100)[:-12], ["unreadable", "gzip"]),
}


@pytest.mark.parametrize("case", BAD_FASTA)
def test_bad_fasta_names_record_and_leaves_nothing(model, tmp_path: Path, case: str) -> None:
    content, fragments = BAD_FASTA[case]
    fasta = tmp_path / ("in.fa.gz" if case == "truncated gzip" else "in.fa")
    fasta.write_bytes(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # batch_size=1: rows of good records reach the temporary file before the error.
    with pytest.raises(PredictError) as err:
        predict_fasta(model, fasta, out_dir / "pred.tsv", NAMES, batch_size=1)
    message = str(err.value)
    assert message.startswith(str(fasta)), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert list(out_dir.iterdir()) == []


def test_cli_reports_bad_fasta_on_stderr(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta = tmp_path / "bad.fa"
    fasta.write_text(">good\nACGT\n>broken\nACGTQ\n")
    args = cli_args("--model", str(model_file), "--input", str(fasta), "--out", "x.tsv")
    assert run(args, make_params(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "record 'broken'" in err and "'Q'" in err


def test_cli_option_errors(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"a": "ACGT"})
    h5 = write_split(tmp_path / "in.h5", "test", np.zeros((1, L, 4), np.uint8), None, "hdf5")
    common = ("--model", str(model_file), "--out", str(tmp_path / "o.tsv"))
    cases = {
        ("--input", str(fasta), "--stride", "10"): "--stride applies to --windows tile only",
        ("--input", str(fasta), "--windows", "tile", "--stride", "61"): "between 1 and",
        ("--input", str(fasta), "--batch-size", "-1"): "--batch-size must be at least 1",
        ("--input", str(h5), "--windows", "tile"): "FASTA input only",
        ("--input", str(tmp_path / "missing.fa")): "file not found",
    }
    for argv, fragment in cases.items():
        assert run(cli_args(*common, *argv), make_params(tmp_path)) == 1
        assert fragment in capsys.readouterr().err
    missing_model = cli_args("--model", "nowhere.keras", "--input", str(fasta), "--out", "o")
    assert run(missing_model, make_params(tmp_path)) == 1
    assert "model nowhere.keras: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o.tsv").exists()


def test_target_names_from_file_data_metadata_or_generic(tmp_path: Path) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("a\nb\n\nc\n")
    assert resolve_target_names(3, names_file=names_file) == (["a", "b", "c"], str(names_file))
    with pytest.raises(PredictError, match="3 target names, the model has 4 outputs"):
        resolve_target_names(4, names_file=names_file)

    data = tmp_path / "data"
    data.mkdir()
    targets = [{"index": 1, "name": "pair:x+y"}, {"index": 0, "name": "single:x"}]
    (data / "metadata.json").write_text(json.dumps({"targets": targets}))
    names, source = resolve_target_names(2, data_dir=data)
    assert names == ["single:x", "pair:x+y"] and "metadata.json" in source
    assert resolve_target_names(3, data_dir=data)[0] == ["target_0", "target_1", "target_2"]


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file-based MLflow tracking server and registry; global MLflow state restored after."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_predict_with_registered_champion(
    model, mlflow_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import mlflow.keras

    experiment = mlflow.create_experiment("predict", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as active:
        info = mlflow.keras.log_model(
            model,
            name="model",
            registered_model_name="tiny",
            metadata={"target_names": ["CTCF", "GATA1", "noise"]},
            pip_requirements=["keras"],  # skips slow requirement inference
        )
    mlflow.MlflowClient().set_registered_model_alias(
        "tiny", "champion", info.registered_model_version
    )
    mlflow.set_tracking_uri(None)  # `run` must find the store from params, not from a global
    fasta = write_fasta(tmp_path / "in.fa", {"r1": random_dna(80, 5), "r2": "ACGTN" * 4})
    params = make_params(tmp_path, tracking_uri=mlflow_store, registered_model="tiny")

    code = run(cli_args("--input", str(fasta), "--out", str(tmp_path / "reg.tsv")), params)

    assert code == 0, capsys.readouterr().err
    assert "models:/tiny@champion" in capsys.readouterr().out
    header, _, scores = read_tsv(tmp_path / "reg.tsv")
    assert header[3:] == ["CTCF", "GATA1", "noise"]
    predict_fasta(model, fasta, tmp_path / "local.tsv", NAMES)
    np.testing.assert_allclose(scores, read_tsv(tmp_path / "local.tsv")[2], rtol=1e-5)

    by_run = load_model(f"runs:/{active.info.run_id}/model", mlflow_store)
    assert by_run.input_shape == (None, L, 4)
    with pytest.raises(PredictError, match="models:/absent@champion"):
        load_model("models:/absent@champion", mlflow_store)

    # Without model metadata, names come from the registered version's tags, then the run's.
    with mlflow.start_run(experiment_id=experiment):
        mlflow.set_tag("target_names", json.dumps(["r0", "r1", "r2"]))
        bare = mlflow.keras.log_model(
            model, name="model", registered_model_name="tiny", pip_requirements=["keras"]
        )
    version = bare.registered_model_version
    assert resolve_target_names(
        3, model_uri=f"models:/tiny/{version}", tracking_uri=mlflow_store
    ) == (
        ["r0", "r1", "r2"],
        "the MLflow run's tags",
    )
    mlflow.MlflowClient().set_model_version_tag("tiny", version, "target_names", '["v0","v1","v2"]')
    names, source = resolve_target_names(
        3, model_uri=f"models:/tiny/{version}", tracking_uri=mlflow_store
    )
    assert names == ["v0", "v1", "v2"] and "version" in source

"""`danq predict`: FASTA and DeepSEA-format input, windows, strand averaging, model URIs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from danq import tracking
from danq.cli.main import main
from danq.data.encoding import codes_to_onehot, encode
from danq.errors import PredictError
from danq.io.deepsea import write_split
from danq.predict import fasta_batches, predict_fasta, predict_hdf5, window_codes, window_starts

L = 60  # the input length of the model_file fixture
NAMES = ["t0", "t1", "t2"]


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


def danq_predict(tmp_path: Path, *argv: str, **mlflow_settings: str) -> int:
    """`danq predict` with defaults for everything but data_dir and the given mlflow settings."""
    overrides = [f"paths.data_dir={tmp_path / 'data'}"]
    overrides += [f"mlflow.{key}={value}" for key, value in mlflow_settings.items()]
    options = [item for override in overrides for item in ("-S", override)]
    return main(["--params", str(tmp_path / "none.yaml"), *options, "predict", *argv])


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
    assert list(window_starts(length, L, windows, stride or L)) == starts


def test_fasta_batches_are_the_windows_of_every_record_batch_size_at_a_time(
    tmp_path: Path, write_fasta
) -> None:
    records = {"a": random_dna(75, 5), "b": random_dna(7, 6), "c": random_dna(64, 7)}
    fasta = write_fasta(tmp_path / "in.fa", records)
    expected = [
        (f"{rid}:{max(s, 0) + 1}-{min(s + L, len(seq))}", window_codes(encode(seq), s, L))
        for rid, seq in records.items()
        for s in window_starts(len(seq), L, "tile", 1)
    ]
    batches = list(fasta_batches(str(fasta), L, 7, "tile", 1))
    assert [len(labels) for labels, _ in batches] == [7, 7, 7, 1]  # 16 + 1 + 5 windows
    assert [label[0] for labels, _ in batches for label in labels] == [e[0] for e in expected]
    onehots = np.concatenate([x for _, x in batches])
    np.testing.assert_array_equal(onehots, codes_to_onehot(np.stack([e[1] for e in expected])))


def test_center_windows_pad_short_and_crop_long_records(model, tmp_path: Path, write_fasta) -> None:
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


def test_strand_averaging_scores_both_strands_alike(model, tmp_path: Path, write_fasta) -> None:
    forward = random_dna(L, 3)
    reverse = forward[::-1].translate(str.maketrans("ACGT", "TGCA"))
    fasta = write_fasta(tmp_path / "pair.fa", {"fwd": forward, "rev": reverse})
    predict_fasta(model, fasta, tmp_path / "pair.tsv", NAMES)
    _, _, scores = read_tsv(tmp_path / "pair.tsv")
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-6)
    single_strand = model(onehot(forward)[None], training=False).numpy()[0]
    assert not np.allclose(scores[0], single_strand, rtol=1e-5, atol=1e-6)


def test_tile_windows_cover_long_records(model, tmp_path: Path, write_fasta) -> None:
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


# io/test_fasta.py checks every kind of bad FASTA; these are the ones that fail after good
# records were scored, or before reading any, to show that no partial output is left.
BAD_FASTA = {
    "duplicate id": (
        b">r1\nAC\n>r2\nGT\n>r1 again\nAA\n",
        ["record 'r1'", "line 5", "duplicate", "first seen on line 1"],
    ),
    "bad character": (b">r1\nACGT\nAC*T\n", ["record 'r1'", "line 3", "'*'", "position 7"]),
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
    out = tmp_path / "x.tsv"
    code = danq_predict(
        tmp_path, "--model", str(model_file), "--input", str(fasta), "--out", str(out)
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "record 'broken'" in err and "'Q'" in err
    assert not out.exists()


def test_cli_refuses_the_issue_s_100_mb_record_and_writes_nothing(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`danq predict --windows tile --stride 1` on a ~100 KB .gz holding one 100 Mb record (the
    issue's file) stops at limits.max_record_length, with no output and no temporary file.
    (In-process: a `danq` child would spend ~10 s importing TensorFlow; io/test_hostile_text.py
    measures the reader's memory in a child.)"""
    fasta = tmp_path / "huge.fa.gz"
    with gzip.open(fasta, "wb") as fh:
        fh.write(b">chrBig\n")
        for _ in range(100):
            fh.write(b"A" * 2**20)
    out = tmp_path / "out" / "pred.tsv"
    argv = ["--model", str(model_file), "--input", str(fasta), "--out", str(out)]
    code = danq_predict(tmp_path, *argv, "--windows", "tile", "--stride", "1")
    assert code == 1
    assert capsys.readouterr().err.startswith(
        f"error: {fasta} record 'chrBig' line 2: longer than 10000000 bases "
        "(limits.max_record_length)"
    )
    assert list(out.parent.glob("*")) == []


HOSTILE_FASTA = {
    # content, -S override, the error after the file name; a good record comes first, so rows
    # reach the temporary file (batch size 1) before the error.
    "record past max_record_length": (
        b">good\nACGT\n>long\n" + b"ACGTACGTAC\n" * 200,
        "limits.max_record_length=1000",
        " record 'long' line 104: longer than 1000 bases (limits.max_record_length)",
    ),
    "header past max_line_length": (
        b">good\nACGT\n>" + b"x" * 5000 + b"\nACGT\n",
        "limits.max_line_length=1000",
        " line 3: longer than 1000 bytes (limits.max_line_length)",
    ),
    "gzip bomb": (
        gzip.compress(b">good\nACGT\n>bomb\n" + b"ACGT" * 15 + b"\n" * 100_000),
        "limits.max_decompressed_bytes=100000",
        ": inflates to more than 100000 bytes (limits.max_decompressed_bytes)",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_FASTA)
def test_cli_refuses_fasta_past_the_limits_and_leaves_nothing(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    content, override, message = HOSTILE_FASTA[case]
    fasta = tmp_path / "in.fa"
    fasta.write_bytes(content)
    out = tmp_path / "out" / "pred.tsv"
    argv = ["--model", str(model_file), "--input", str(fasta), "--out", str(out)]
    code = main(
        [
            "--params",
            str(tmp_path / "none.yaml"),
            "-S",
            override,
            "predict",
            *argv,
            "--batch-size",
            "1",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith(f"error: {fasta}{message}")
    assert list(out.parent.glob("*")) == []


def test_cli_option_errors(
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_fasta,
) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"a": "ACGT"})
    h5 = write_split(tmp_path / "in.h5", "test", np.zeros((1, L, 4), np.uint8), None, "hdf5")
    common = ("--model", str(model_file), "--out", str(tmp_path / "o.tsv"))
    cases = {
        ("--input", str(fasta), "--stride", "10"): "error: --stride applies to --windows tile only",
        ("--input", str(fasta), "--windows", "tile", "--stride", "61"): (
            "error: --stride 61: must be between 1 and the model's window length 60"
        ),
        ("--input", str(fasta), "--batch-size", "-1"): (
            "error: --batch-size must be at least 1, got -1"
        ),
        ("--input", str(h5), "--windows", "tile"): (
            "--windows tile and --stride apply to FASTA input only"
        ),
        ("--input", str(tmp_path / "missing.fa")): "file not found",
    }
    for argv, fragment in cases.items():
        assert danq_predict(tmp_path, *common, *argv) == 1
        assert fragment in capsys.readouterr().err
    missing_model = ("--model", "nowhere.keras", "--input", str(fasta), "--out", "o")
    assert danq_predict(tmp_path, *missing_model) == 1
    assert "error: model nowhere.keras: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o.tsv").exists()


def test_library_checks_name_arguments_not_options(model, tmp_path: Path, write_fasta) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"a": "ACGT"})
    out = tmp_path / "o.tsv"
    with pytest.raises(PredictError, match="^a stride applies to tile windows only$"):
        predict_fasta(model, fasta, out, NAMES, stride=10)
    with pytest.raises(PredictError, match="^stride 61: must be between 1 and"):
        predict_fasta(model, fasta, out, NAMES, windows="tile", stride=61)
    with pytest.raises(PredictError, match="^batch size must be at least 1, got 0$"):
        predict_fasta(model, fasta, out, NAMES, batch_size=0)
    with pytest.raises(PredictError, match="^windows 'all': expected one of center, tile$"):
        predict_fasta(model, fasta, out, NAMES, windows="all")  # type: ignore[arg-type]
    with pytest.raises(PredictError, match="^2 target names for a model with 3 outputs$"):
        predict_fasta(model, fasta, out, NAMES[:2])
    assert not out.exists()


def test_predict_with_registered_champion(
    model,
    mlflow_store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_fasta,
    log_and_register,
) -> None:
    import mlflow

    client = tracking.client(mlflow_store)
    experiment = client.create_experiment("predict", artifact_location=(tmp_path / "art").as_uri())
    version = log_and_register(mlflow_store, model, experiment, "tiny", ["CTCF", "GATA1", "noise"])
    client.set_registered_model_alias("tiny", "champion", version.version)
    fasta = write_fasta(tmp_path / "in.fa", {"r1": random_dna(80, 5), "r2": "ACGTN" * 4})
    # The command finds the store from its settings alone, and leaves MLflow's globals alone.
    global_uri = mlflow.get_tracking_uri()
    uri_variables = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    environment = [os.environ.get(name) for name in uri_variables]

    code = danq_predict(
        tmp_path,
        "--input",
        str(fasta),
        "--out",
        str(tmp_path / "reg.tsv"),
        tracking_uri=mlflow_store,
        registered_model="tiny",
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"models:/tiny@champion = models:/tiny/{version.version}, sha256 " in out
    assert " verified" in out
    assert "target names from the MLflow model's metadata" in out
    header, _, scores = read_tsv(tmp_path / "reg.tsv")
    assert header[3:] == ["CTCF", "GATA1", "noise"]
    predict_fasta(model, fasta, tmp_path / "local.tsv", NAMES)
    np.testing.assert_allclose(scores, read_tsv(tmp_path / "local.tsv")[2], rtol=1e-5)
    assert mlflow.get_tracking_uri() == global_uri
    assert [os.environ.get(name) for name in uri_variables] == environment

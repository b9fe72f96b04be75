"""The data gate: a good synthetic data set passes, each of a corpus of defects is rejected.

The good data set is built here (not by danq.synth): random DNA with GC 0.41 and genomic CpG
depletion, forward sequences then their reverse complements, labels with an exact prevalence
of 0.2 per target duplicated for the reverse-complement half. Every corrupted data set
differs from it by one defect.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from danq.artifacts import DATA_DOCS_DIR, VALIDATION_REPORT_FILE
from danq.cli.main import build_parser
from danq.config import SPLITS, Params, ValidateConfig
from danq.data.encoding import codes_to_onehot, reverse_complement_onehot
from danq.io.deepsea import open_split, write_split
from danq.validation.gate import validate_dataset
from danq.validation.report import ValidationReport
from danq.validation.suite import gate_suite

SEQ_LEN = 200
N_TARGETS = 6
N_FORWARD = {"train": 200, "valid": 100, "test": 100}
PREVALENCE = 0.2
# Small chunks so every split streams in several; a looser GC-distribution warning for
# splits of 100-200 distinct sequences.
CFG = ValidateConfig(chunk_size=64, gc_ks_max=0.25)

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def random_codes(rng: np.random.Generator, n: int, length: int, gc: float = 0.41) -> np.ndarray:
    """Base codes (A,G,C,T = 0..3) with the given GC content and CpG depleted as in genomes."""
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    codes = rng.choice(4, size=(n, length), p=p).astype(np.uint8)
    # Methylated C in CpG deaminates to T: turn three in four CG into TG.
    cg = (codes[:, :-1] == 2) & (codes[:, 1:] == 1)
    codes[:, :-1][cg & (rng.random(cg.shape) < 0.75)] = 3
    return codes


def exact_labels(rng: np.random.Generator, n: int, prevalence: float = PREVALENCE) -> np.ndarray:
    """(n, T) 0/1 labels with exactly round(prevalence * n) positives per target."""
    y = np.zeros((n, N_TARGETS), dtype=np.uint8)
    for target in range(N_TARGETS):
        y[rng.choice(n, size=round(prevalence * n), replace=False), target] = 1
    return y


def with_reverse_complements(x_forward: np.ndarray, y_forward: np.ndarray) -> tuple:
    """The DeepSEA layout: forward half, then reverse complements in the same order."""
    x = np.concatenate([x_forward, reverse_complement_onehot(x_forward)])
    return np.ascontiguousarray(x), np.concatenate([y_forward, y_forward])


def good_arrays(seed: int = 3, scale: float = 1.0, seq_len: int = SEQ_LEN) -> Arrays:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in N_FORWARD.items():
        n = round(scale * n)
        x_forward = codes_to_onehot(random_codes(rng, n, seq_len))
        arrays[split] = with_reverse_complements(x_forward, exact_labels(rng, n))
    return arrays


def write_arrays(folder: Path, arrays: Arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in arrays.items():
        write_split(folder / f"{split}.mat", split, x, y)
    return folder


def forward(x: np.ndarray) -> np.ndarray:
    return x[: len(x) // 2]


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Defect:
    """One corruption of the good data set, the check that must catch it, and words its
    message must contain."""

    name: str
    make: Callable[[Arrays, Path], None]
    check: str
    words: tuple[str, ...]


def _edit(split: str, edit: Callable[[np.ndarray, np.ndarray], tuple]) -> Callable:
    """A defect made by editing one split's arrays; the others are written unchanged."""

    def make(arrays: Arrays, folder: Path) -> None:
        x, y = arrays[split]
        write_arrays(folder, {**arrays, split: edit(x.copy(), y.copy())})

    return make


def _all_splits(edit: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def make(arrays: Arrays, folder: Path) -> None:
        write_arrays(
            folder, {s: (np.ascontiguousarray(edit(x)), y) for s, (x, y) in arrays.items()}
        )

    return make


def _replace_file(split: str, write: Callable[[Path, np.ndarray, np.ndarray], None]) -> Callable:
    """A defect made by writing one split's file by hand (layouts SplitWriter cannot make)."""

    def make(arrays: Arrays, folder: Path) -> None:
        write_arrays(folder, arrays)
        x, y = arrays[split]
        write(folder / f"{split}.mat", x, y)

    return make


def _savemat(path: Path, arrays: dict[str, np.ndarray]) -> None:
    scipy.io.savemat(path, arrays, format="5")


def _train_sample_first(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5["trainxdata"] = x.transpose(0, 2, 1)  # (N, 4, L): valid/test's order, not (L, 4, N)
        h5["traindata"] = y


def _train_float_with_nan(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    x_stored = x.transpose(1, 2, 0).astype(np.float32)  # (L, 4, N) as the bundle stores it
    x_stored[5, :, 7] = np.nan
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5["trainxdata"] = x_stored
        h5["traindata"] = y.T


def _truncated_train(arrays: Arrays, folder: Path) -> None:
    write_arrays(folder, arrays)
    path = folder / "train.mat"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])


def _missing_test_labels(arrays: Arrays, folder: Path) -> None:
    write_arrays(folder, arrays)
    write_split(folder / "test.mat", "test", arrays["test"][0], None)


def _missing_file(arrays: Arrays, folder: Path) -> None:
    write_arrays(folder, arrays)
    (folder / "test.mat").unlink()


def _not_a_mat_file(arrays: Arrays, folder: Path) -> None:
    write_arrays(folder, arrays)
    (folder / "valid.mat").write_text("sample,sequence,label\n0,ACGT,1\n")


def _test_copied_into_train(arrays: Arrays, folder: Path) -> None:
    x_train, y_train = arrays["train"]
    x_forward = forward(x_train).copy()
    x_forward[:20] = forward(arrays["test"][0])[:20]
    write_arrays(folder, {**arrays, "train": with_reverse_complements(x_forward, forward(y_train))})


def _set_label(x: np.ndarray, y: np.ndarray) -> tuple:
    y[3, 1] = y[3 + len(y) // 2, 1] = 2
    return x, y


def _no_train_positives(x: np.ndarray, y: np.ndarray) -> tuple:
    y[:, 2] = 0
    return x, y


def _extra_target(x: np.ndarray, y: np.ndarray) -> tuple:
    return x, np.concatenate([y, y[:, :1]], axis=1)


def _shuffled_reverse_half(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(x) // 2
    order = half + np.random.default_rng(0).permutation(half)
    x[half:], y[half:] = x[order], y[order]
    return x, y


def _not_complemented(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(x) // 2
    x[half:] = x[:half, ::-1, :]
    return x, y


def _interleaved(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(x) // 2
    order = np.stack([np.arange(half), half + np.arange(half)], axis=1).ravel()
    return np.ascontiguousarray(x[order]), y[order]


def _two_bases(x: np.ndarray, y: np.ndarray) -> tuple:
    x[[17, 40, 41], 43, :2] = 1
    return x, y


def _values_255(x: np.ndarray, y: np.ndarray) -> tuple:
    return x * 255, y  # booleans saved as 0/255 bytes


def _mostly_n(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(x) // 2
    x[:150] = 0
    x[half : half + 150] = 0
    return x, y


def _prevalence_drift(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(x) // 2
    y[:, 0] = 0
    y[: int(0.8 * half), 0] = 1
    y[half : half + int(0.8 * half), 0] = 1
    return x, y


def _gc_rich(x: np.ndarray, y: np.ndarray) -> tuple:
    rng = np.random.default_rng(5)
    x_forward = codes_to_onehot(random_codes(rng, len(x) // 2, SEQ_LEN, gc=0.6))
    return with_reverse_complements(x_forward, forward(y))


def _shorter_sequences(x: np.ndarray, y: np.ndarray) -> tuple:
    x_forward = np.ascontiguousarray(forward(x)[:, :150])
    return with_reverse_complements(x_forward, forward(y))


def _labels_not_repeated(x: np.ndarray, y: np.ndarray) -> tuple:
    half = len(y) // 2
    y[half:] = y[half:][np.random.default_rng(1).permutation(half)]
    return x, y


def _drop_last(x: np.ndarray, y: np.ndarray) -> tuple:
    return x[:-1], y[:-1]


def _mat5(split: str, x_edit=None, y_edit=None) -> Callable:
    """valid/test as a hand-written MATLAB v5 file with x (N, 4, L) and y (N, T) edited."""

    def write(path: Path, x: np.ndarray, y: np.ndarray) -> None:
        x_stored = x.transpose(0, 2, 1)
        _savemat(
            path,
            {
                f"{split}xdata": x_edit(x, x_stored) if x_edit else x_stored,
                f"{split}data": y_edit(y) if y_edit else y,
            },
        )

    return write


def _nan_labels(y: np.ndarray) -> np.ndarray:
    labels = y.astype(np.float64)
    labels[[4, 9], 2] = np.nan
    return labels


CORPUS = [
    Defect(
        "acgt_channel_order",
        _all_splits(lambda x: x[..., [0, 2, 1, 3]]),
        "channel_order",
        ("A,C,G,T order", "DeepSEA uses A,G,C,T", "train.mat"),
    ),
    Defect(
        "actg_channel_order",
        _all_splits(lambda x: x[..., [0, 2, 3, 1]]),
        "rc_halves",
        ("not reverse complements", "0-2 and 1-3"),
    ),
    Defect(
        "valid_x_transposed",
        _replace_file("valid", _mat5("valid", x_edit=lambda x, stored: x)),
        "layout",
        ("valid.mat validxdata", "axis 1 has size 200", "transposed"),
    ),
    Defect(
        "train_x_sample_first",
        _replace_file("train", _train_sample_first),
        "layout",
        ("train.mat", "trainxdata has 200 samples", "traindata has"),
    ),
    Defect(
        "valid_labels_transposed",
        _replace_file("valid", _mat5("valid", y_edit=lambda y: y.T)),
        "layout",
        ("validxdata has 200 samples but validdata has 6",),
    ),
    Defect(
        "valid_one_label_row_missing",
        _replace_file("valid", _mat5("valid", y_edit=lambda y: y[:-1])),
        "layout",
        ("validxdata has 200 samples but validdata has 199",),
    ),
    Defect(
        "labels_value_2",
        _edit("valid", _set_label),
        "labels_binary",
        ("valid.mat validdata", "2 labels are not 0 or 1", "values seen: 2", "sample 3, target 1"),
    ),
    Defect(
        "nan_in_float_labels",
        _replace_file("valid", _mat5("valid", y_edit=_nan_labels)),
        "layout",
        ("validdata", "float64", "NaN in 2 of 200 samples", "first: sample 4"),
    ),
    Defect(
        "nan_in_float_one_hot_hdf5",
        _replace_file("train", _train_float_with_nan),
        "layout",
        ("trainxdata", "float32", "NaN in 1 of 400 samples (first: sample 7)"),
    ),
    Defect(
        "int64_one_hot",
        _replace_file("valid", _mat5("valid", x_edit=lambda x, stored: stored.astype(np.int64))),
        "layout",
        ("validxdata", "int64", "uint8"),
    ),
    Defect(
        "missing_label_key", _missing_test_labels, "layout", ("test.mat", "missing key 'testdata'")
    ),
    Defect("missing_file", _missing_file, "layout", ("test.mat", "file not found")),
    Defect("not_a_mat_file", _not_a_mat_file, "layout", ("valid.mat", "not an HDF5")),
    Defect("truncated_train", _truncated_train, "layout", ("train.mat", "truncated")),
    Defect(
        "extra_target_in_test",
        _edit("test", _extra_target),
        "same_targets",
        ("test.mat has 7 targets but train.mat has 6",),
    ),
    Defect(
        "target_without_positives",
        _edit("train", _no_train_positives),
        "train_positives",
        ("target 2 has no positive in train.mat",),
    ),
    Defect(
        "test_copied_into_train",
        _test_copied_into_train,
        "leakage",
        ("test.mat", "20 of 100 forward sequences also appear in train.mat", "test sample 0"),
    ),
    Defect(
        "reverse_half_shuffled",
        _edit("train", _shuffled_reverse_half),
        "rc_halves",
        ("train.mat", "not reverse complements", "out of order"),
    ),
    Defect(
        "reverse_half_not_complemented",
        _edit("valid", _not_complemented),
        "rc_halves",
        ("valid.mat", "reversed but not complemented"),
    ),
    Defect(
        "pairs_interleaved", _edit("test", _interleaved), "rc_halves", ("test.mat", "interleaved")
    ),
    Defect(
        "odd_sample_count",
        _edit("valid", _drop_last),
        "rc_halves",
        ("valid.mat", "199 samples, an odd number"),
    ),
    Defect(
        "reverse_labels_differ",
        _edit("test", _labels_not_repeated),
        "rc_labels",
        ("test.mat testdata", "other labels than their forward sequence"),
    ),
    Defect(
        "two_bases_at_a_position",
        _edit("valid", _two_bases),
        "onehot_single_base",
        ("valid.mat validxdata", "3 of 200 samples", "two or more bases", "sample 17, position 43"),
    ),
    Defect(
        "one_hot_as_0_255",
        _edit("train", _values_255),
        "onehot_values",
        ("train.mat trainxdata", "400 of 400 samples", "other than 0 and 1", "255"),
    ),
    Defect(
        "mostly_unknown_bases",
        _edit("train", _mostly_n),
        "n_share",
        ("train.mat", "unknown bases (N)", "100% N"),
    ),
    Defect(
        "test_prevalence_drift",
        _edit("test", _prevalence_drift),
        "test_prevalence_drift",
        ("test.mat", "target 0", "80.0% in test.mat vs 20.0% in train.mat"),
    ),
    Defect(
        "valid_gc_shift",
        _edit("valid", _gc_rich),
        "gc_mean_drift",
        ("valid.mat", "mean GC content"),
    ),
    Defect(
        "valid_shorter_sequences",
        _edit("valid", _shorter_sequences),
        "same_seq_len",
        ("valid.mat holds 150-bp sequences but train.mat 200-bp",),
    ),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def arrays() -> Arrays:
    return good_arrays()


@pytest.fixture(scope="module")
def good(
    tmp_path_factory: pytest.TempPathFactory, arrays: Arrays
) -> tuple[Path, Path, ValidationReport]:
    """The good data set validated once: (data folder, output folder, report)."""
    root = tmp_path_factory.mktemp("good")
    data = write_arrays(root / "data", arrays)
    out = root / "validation"
    return data, out, validate_dataset(str(data), CFG, out)


def failed(report: ValidationReport) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for check in report.failures:
        result.setdefault(check.name, []).append(check.message)
    return result


# --------------------------------------------------------------------------- tests


def test_good_data_passes_every_check(good) -> None:
    _, _, report = good
    assert report.passed, failed(report)
    assert not report.warnings, [c.message for c in report.warnings]
    expected = {(spec.name, split) for spec in gate_suite(CFG) for split in spec.splits}
    assert {(c.name, c.split) for c in report.checks} == expected
    assert all(c.passed for c in report.checks)


def test_good_data_statistics(good) -> None:
    _, out, report = good
    observed = {(c.name, c.split): c.observed for c in report.checks}
    assert observed[("leakage", "test")] == 0
    assert observed[("train_positives", "train")] == 2 * round(PREVALENCE * 200)
    assert observed[("valid_prevalence_drift", "valid")] == pytest.approx(0.0)
    assert observed[("channel_order", "train")] < 0.5  # CpG depleted by three quarters
    splits = (out / "splits.csv").read_text().splitlines()
    assert splits[0].startswith("split,file,layout_error,samples")
    assert len(splits) == 4
    targets = (out / "targets.csv").read_text().splitlines()
    assert len(targets) == N_TARGETS + 1 and "valid_prevalence_diff" in targets[0]
    chunks = (out / "chunks.csv").read_text().splitlines()
    assert len(chunks) == 1 + sum(-(-2 * n // CFG.chunk_size) for n in N_FORWARD.values())


@pytest.mark.parametrize("defect", CORPUS, ids=[d.name for d in CORPUS])
def test_corpus_defect_is_rejected(defect: Defect, arrays: Arrays, tmp_path: Path) -> None:
    defect.make(arrays, tmp_path / "data")
    report = validate_dataset(str(tmp_path / "data"), CFG, tmp_path / "out")
    failures = failed(report)
    assert not report.passed
    assert defect.check in failures, failures
    message = " | ".join(failures[defect.check])
    for words in defect.words:
        assert words in message, message
    assert json.loads((tmp_path / "out" / VALIDATION_REPORT_FILE).read_text())["passed"] is False


def test_corpus_is_large_and_covers_distinct_checks() -> None:
    assert len(CORPUS) >= 15
    assert len({d.check for d in CORPUS}) >= 12


def test_report_json_structure(good) -> None:
    _, out, report = good
    saved = json.loads((out / VALIDATION_REPORT_FILE).read_text())
    assert saved["passed"] is True and saved["blocking_failures"] == 0
    assert saved["thresholds"]["prevalence_tolerance"] == CFG.prevalence_tolerance
    assert saved["splits"]["train"] == {
        "file": "train.mat",
        "container": "hdf5",
        "layout": "sample_last",
        "samples": 400,
        "seq_len": SEQ_LEN,
        "targets": N_TARGETS,
        "readable": True,
    }
    assert len(saved["checks"]) == len(report.checks)
    for check in saved["checks"]:
        assert set(check) == {
            "name",
            "split",
            "blocking",
            "passed",
            "observed",
            "threshold",
            "message",
            "suite",
            "column",
        }
        assert check["split"] in SPLITS and isinstance(check["passed"], bool)


def test_data_docs_show_the_suite(good) -> None:
    _, out, _ = good
    docs = out / DATA_DOCS_DIR
    index = (docs / "index.html").read_text()
    for table in ("splits", "targets", "chunks"):
        assert f"deepsea_{table}" in index
    pages = "".join(p.read_text() for p in docs.rglob("*.html"))
    for spec in gate_suite(CFG):
        assert f"{spec.name}: " in pages, spec.name
    suite_page = (docs / "expectations" / "deepsea_splits.html").read_text()
    assert "channel_order" in suite_page and "blocking" in suite_page
    assert list((docs / "validations" / "deepsea_targets").rglob("*.html"))


def test_warnings_do_not_fail_the_gate(arrays: Arrays, tmp_path: Path) -> None:
    """A rare target without positives in test (like DeepSEA's target 600) only warns."""
    rare = 5
    edited = {split: (x, y.copy()) for split, (x, y) in arrays.items()}
    for split, keep in (("train", 1), ("valid", 1), ("test", 0)):
        y = edited[split][1]
        half = len(y) // 2
        y[:, rare] = 0
        y[:keep, rare] = y[half : half + keep, rare] = 1
    write_arrays(tmp_path / "data", edited)
    report = validate_dataset(str(tmp_path / "data"), CFG, tmp_path / "out")
    assert report.passed, failed(report)
    assert [(c.name, c.split) for c in report.warnings] == [("test_positives", "test")]
    assert report.warnings[0].message.startswith(f"target {rare} has no positive in test.mat")


def test_a_broken_split_does_not_hide_other_problems(arrays: Arrays, tmp_path: Path) -> None:
    write_arrays(tmp_path / "data", {**arrays, "valid": _set_label(*map(np.copy, arrays["valid"]))})
    (tmp_path / "data" / "test.mat").write_bytes(b"garbage")
    report = validate_dataset(str(tmp_path / "data"), CFG, tmp_path / "out")
    assert set(failed(report)) >= {"layout", "labels_binary"}
    skipped = [c for c in report.checks if c.split == "test" and c.passed is None]
    assert skipped and all(c.message.startswith("not checked: test.mat") for c in skipped)


def run_cli(data: Path, out: Path, params: Params) -> int:
    """`danq validate --data data --out out` with these settings: the command's exit status."""
    args = build_parser().parse_args(["validate", "--data", str(data), "--out", str(out)])
    return args.handler(args, params)


def test_cli_exit_codes_and_messages(good, arrays: Arrays, tmp_path: Path, capsys) -> None:
    data, _, _ = good
    params = Params(validate=CFG)
    assert run_cli(data, tmp_path / "ok", params) == 0
    assert "data gate passed" in capsys.readouterr().out

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    _edit("valid", _two_bases)(arrays, broken)
    assert run_cli(broken, tmp_path / "bad", params) == 1
    captured = capsys.readouterr()
    assert re.search(
        r"FAILED onehot_single_base \(valid\): valid\.mat validxdata: 3 of 200 samples have "
        r"positions with two or more bases set \(first: sample 17, position 43 of 200\)",
        captured.err,
    )
    assert "data gate FAILED" in captured.out


def test_outputs_replace_a_previous_report_whole(good, tmp_path: Path) -> None:
    data, _, _ = good
    out = tmp_path / "validation"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    validate_dataset(str(data), CFG, out)
    assert not (out / "stale.txt").exists()
    assert (out / VALIDATION_REPORT_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["validation"]  # no staging left behind


def test_gs_paths_in_and_out(gcs_bucket: str, tmp_path: Path) -> None:
    import fsspec

    # Smaller than the good data set: MATLAB v5 files are read in 4 x L pieces per chunk,
    # each a round trip to the emulator.
    data = write_arrays(tmp_path / "data", good_arrays(scale=0.2, seq_len=40))
    fs = fsspec.filesystem("gs")
    for split in SPLITS:
        fs.put(str(data / f"{split}.mat"), f"{gcs_bucket}/data/{split}.mat")
    cfg = ValidateConfig(chunk_size=1000, gc_ks_max=0.5)
    report = validate_dataset(f"{gcs_bucket}/data", cfg, f"{gcs_bucket}/validation")
    assert report.passed, failed(report)
    saved = json.loads(fs.cat(f"{gcs_bucket}/validation/{VALIDATION_REPORT_FILE}"))
    assert saved["passed"] is True and saved["data_dir"] == f"{gcs_bucket}/data"
    assert fs.exists(f"{gcs_bucket}/validation/{DATA_DOCS_DIR}/index.html")


def test_synthetic_benchmark_passes_and_its_acgt_copy_fails(tiny_data: Path, tmp_path: Path):
    """The embedded data is CpG-depleted like a genome, so swapped G/C channels show up."""
    cfg = ValidateConfig(prevalence_tolerance=0.25, rc_pairs_checked=50)
    assert validate_dataset(str(tiny_data), cfg, tmp_path / "good").passed
    swapped = tmp_path / "acgt"
    for split in ("train", "valid", "test"):
        with open_split(tiny_data / f"{split}.mat") as reader:
            x, y = reader.read(0, reader.n)
        write_split(swapped / f"{split}.mat", split, x[:, :, [0, 2, 1, 3]], y)
    report = validate_dataset(str(swapped), cfg, tmp_path / "bad")
    assert not report.passed
    assert any("A,C,G,T order" in check.message for check in report.failures)

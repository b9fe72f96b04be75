"""The gate records the fingerprint of what it checked, and prepare refuses other data: the
data-swap test (a valid test.mat replaced between validate and prepare)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from danq.artifacts import SHARD_MANIFEST_FILE, VALIDATION_REPORT_FILE
from danq.config import SPLITS, PrepareConfig, ValidateConfig
from danq.data.fingerprint import DataFingerprint, fingerprint_folder
from danq.data.shards import prepare_dataset
from danq.errors import DataError
from danq.io.deepsea import open_split, write_split
from danq.validation.gate import validate_dataset
from danq.validation.report import ValidationReport, read_report_fingerprint

CFG = ValidateConfig(prevalence_tolerance=0.25, rc_pairs_checked=50)


@pytest.fixture(scope="module")
def validated(
    tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, ValidationReport]:
    """A copy of the tiny data set, validated once: (data folder, gate output, report)."""
    root = tmp_path_factory.mktemp("validated")
    data = Path(shutil.copytree(tiny_data, root / "data"))
    report = validate_dataset(str(data), CFG, root / "validation")
    assert report.passed
    return data, root / "validation", report


def test_the_gate_records_the_fingerprint_of_the_files_it_checked(validated) -> None:
    data, out, report = validated
    assert report.fingerprint == fingerprint_folder(str(data))
    assert set(report.fingerprint.files) == {f"{s}.mat" for s in SPLITS} | {"metadata.json"}
    saved = json.loads((out / VALIDATION_REPORT_FILE).read_text())
    assert saved["fingerprint"]["digest"] == report.fingerprint.digest
    assert DataFingerprint.from_dict(saved["fingerprint"]) == report.fingerprint
    assert read_report_fingerprint(str(out)) == report.fingerprint


def test_a_failed_or_old_report_gives_no_fingerprint(validated, tmp_path: Path) -> None:
    _, out, _ = validated
    saved = json.loads((out / VALIDATION_REPORT_FILE).read_text())
    for name, edit, words in (
        ("failed", {"passed": False}, "the data gate did not pass"),
        ("old", {"fingerprint": None}, "holds no data fingerprint"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / VALIDATION_REPORT_FILE).write_text(json.dumps({**saved, **edit}))
        with pytest.raises(DataError, match=words):
            read_report_fingerprint(str(tmp_path / name))


def test_prepare_accepts_the_validated_data(validated, tmp_path: Path) -> None:
    data, out, _ = validated
    cfg = PrepareConfig(shard_size=1000)
    manifests = prepare_dataset(
        str(data), str(tmp_path / "shards"), cfg, ("test",), False, read_report_fingerprint(out)
    )
    assert manifests["test"].n_samples == 80
    assert (tmp_path / "shards" / "test" / SHARD_MANIFEST_FILE).exists()


def test_data_swap_between_validate_and_prepare_is_refused(validated, tmp_path: Path) -> None:
    data, out, report = validated
    swapped = Path(shutil.copytree(data, tmp_path / "data"))
    # Another valid test.mat: valid.mat's sequences stored under test.mat's keys.
    with open_split(swapped / "valid.mat") as reader:
        x, y = reader.read(0, reader.n)
    write_split(swapped / "test.mat", "test", x, y)
    with open_split(swapped / "test.mat") as reader:
        assert reader.n == 80  # readable: only the fingerprint tells it apart

    target = tmp_path / "new" / "shards"
    with pytest.raises(DataError) as caught:
        prepare_dataset(
            str(swapped), str(target), PrepareConfig(), progress=False,
            expected_fingerprint=read_report_fingerprint(str(out)),
        )  # fmt: skip
    message = str(caught.value)
    assert "the data changed after validation" in message and "test.mat changed" in message
    assert report.fingerprint is not None
    assert report.fingerprint.files["test.mat"][0][:12] in message
    assert "train.mat" not in message and "valid.mat" not in message
    assert not (tmp_path / "new").exists()  # nothing written, not even the parent folder

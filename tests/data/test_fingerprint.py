"""The data fingerprint: stable, sensitive to one byte, names what changed, local = gs://."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from danq.data import fingerprint as fp
from danq.data.fingerprint import DataFingerprint, fingerprint_folder, verify
from danq.errors import ConfigError, DataError


@pytest.fixture
def data(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny data set, free to edit."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))


def test_fingerprint_is_stable_and_one_byte_changes_it(data: Path) -> None:
    first = fingerprint_folder(str(data))
    assert sorted(first.files) == ["metadata.json", "test.mat", "train.mat", "valid.mat"]
    assert fingerprint_folder(str(data)) == first
    assert first.digest.startswith("sha256:") and len(first.digest) == 7 + 64
    raw = (data / "valid.mat").read_bytes()
    assert first.files["valid.mat"] == (hashlib.sha256(raw).hexdigest(), len(raw))

    flip_last_byte(data / "valid.mat")
    second = fingerprint_folder(str(data))
    assert second.digest != first.digest
    changed = [name for name in first.files if first.files[name] != second.files[name]]
    assert changed == ["valid.mat"]
    assert second.files["valid.mat"][1] == first.files["valid.mat"][1]  # same size


def test_files_are_hashed_in_chunks(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fingerprint_folder(str(data), ["train.mat"])
    monkeypatch.setattr(fp, "CHUNK_BYTES", 1000)  # many chunks, a short last one
    assert fingerprint_folder(str(data), ["train.mat"]) == whole
    assert (data / "train.mat").stat().st_size % 1000


def test_verify_names_each_changed_appeared_or_vanished_file(data: Path) -> None:
    expected = fingerprint_folder(str(data))
    assert verify(str(data), expected) == expected

    before = expected.files["test.mat"]
    flip_last_byte(data / "test.mat")
    after = fingerprint_folder(str(data), ["test.mat"]).files["test.mat"]
    with pytest.raises(DataError) as caught:
        verify(str(data), expected)
    message = str(caught.value)
    assert "the data changed after validation" in message
    assert f"test.mat changed (validated: sha256 {before[0][:12]}, {before[1]:,} bytes" in message
    assert f"now: sha256 {after[0][:12]}, {after[1]:,} bytes)" in message
    assert "valid.mat" not in message and "train.mat" not in message

    (data / "metadata.json").unlink()
    with pytest.raises(DataError, match=r"metadata\.json vanished \(was sha256 "):
        verify(str(data), expected)

    without_metadata = fingerprint_folder(str(data))
    (data / "metadata.json").write_text("{}")
    with pytest.raises(DataError, match=r"metadata\.json appeared \(sha256 [0-9a-f]{12}, 2 bytes"):
        verify(str(data), without_metadata)


def test_json_round_trip_and_malformed_records(data: Path) -> None:
    original = fingerprint_folder(str(data))
    text = original.to_json()
    assert "\n" not in text and " " not in text
    assert DataFingerprint.from_json(text) == original
    assert json.loads(text)["digest"] == original.digest

    raw = json.loads(text)
    cases = {
        "not JSON": "{",
        "expected an object": json.dumps([1]),
        "files.test.mat.sha256 is not a SHA-256": json.dumps(
            {**raw, "files": {**raw["files"], "test.mat": {"sha256": "xyz", "bytes": 3}}}
        ),
        "files.train.mat.bytes is not a byte count": json.dumps(
            {**raw, "files": {**raw["files"], "train.mat": {"sha256": "0" * 64, "bytes": -1}}}
        ),
        "does not match its files": json.dumps({**raw, "digest": "sha256:" + "0" * 64}),
    }
    for words, bad in cases.items():
        with pytest.raises(ConfigError, match=words):
            DataFingerprint.from_json(bad, "expected_fingerprint")
    with pytest.raises(ConfigError, match="^expected_fingerprint: "):
        DataFingerprint.from_json("{", "expected_fingerprint")


def test_missing_named_file_is_a_data_error(data: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.mat: file not found"):
        fingerprint_folder(str(data), ["nope.mat"])


def test_gs_and_local_copies_have_the_same_fingerprint(data: Path, gcs_bucket: str) -> None:
    import fsspec

    fs = fsspec.filesystem("gs")
    for path in data.iterdir():
        fs.put(str(path), f"{gcs_bucket}/fp/{path.name}")
    remote = fingerprint_folder(f"{gcs_bucket}/fp")
    assert remote == fingerprint_folder(str(data))
    verify(f"{gcs_bucket}/fp", remote)
    fs.pipe(f"{gcs_bucket}/fp/test.mat", b"swapped")
    with pytest.raises(DataError, match=r"test\.mat changed .* now: sha256 [0-9a-f]{12}, 7 bytes"):
        verify(f"{gcs_bucket}/fp", remote)

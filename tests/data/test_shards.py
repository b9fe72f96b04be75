"""`danq data prepare` and the tf.data pipeline: exact round trips, streaming, atomic output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from danq.config import PrepareConfig
from danq.data.dataset import make_dataset, steps_per_epoch
from danq.data.encoding import onehot_to_codes, reverse_complement_codes
from danq.data.shards import prepare_dataset, prepare_split, read_manifest
from danq.errors import DataError
from danq.io.deepsea import open_split, write_split

REPO = Path(__file__).resolve().parents[2]


def collect(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def source(data: Path, split: str):
    with open_split(data / f"{split}.mat") as reader:
        return reader.read(0, reader.n)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_shards_stream_back_the_source_in_order(tiny_data, tiny_shards, split) -> None:
    x, y = source(tiny_data, split)
    got_x, got_y = collect(make_dataset(str(tiny_shards / split), batch_size=32))
    np.testing.assert_array_equal(got_x, x.astype(np.float32))
    np.testing.assert_array_equal(got_y, y.astype(np.float32))
    manifest = read_manifest(str(tiny_shards / split))
    assert manifest.n_samples == len(x) and sum(s["samples"] for s in manifest.shards) == len(x)
    assert manifest.record_bytes == 200 + 2  # 1 byte per base + 16 labels in 2 bytes


def test_forward_only_shards_regenerate_the_reverse_complement_half(tiny_data, tmp_path) -> None:
    cfg = PrepareConfig(halves="forward", compression="gzip", shard_size=50)
    manifest = prepare_split(
        str(tiny_data / "train.mat"), str(tmp_path / "train"), cfg, progress=False
    )
    assert manifest.n_samples == 120 and manifest.n_source_samples == 240
    x, y = source(tiny_data, "train")
    got_x, got_y = collect(make_dataset(str(tmp_path / "train"), batch_size=25))
    np.testing.assert_array_equal(got_x, x.astype(np.float32))
    np.testing.assert_array_equal(got_y, y.astype(np.float32))


def test_shuffled_epochs_are_permutations_and_reproducible(tiny_data, tiny_shards) -> None:
    import keras

    keras.utils.set_random_seed(5)  # a global seed, as training sets, must not interfere
    x, _ = source(tiny_data, "train")
    codes = onehot_to_codes(x)[0]
    shard_dir = str(tiny_shards / "train")
    first, _ = collect(
        make_dataset(shard_dir, 16, shuffle=True, shuffle_buffer=50, seed=9, codes_only=True)
    )
    again, _ = collect(
        make_dataset(shard_dir, 16, shuffle=True, shuffle_buffer=50, seed=9, codes_only=True)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, codes)
    assert sorted(map(bytes, first)) == sorted(map(bytes, codes))


def test_a_resumed_epoch_range_sees_the_same_batches(tiny_shards) -> None:
    shard_dir = str(tiny_shards / "train")
    full = [y.numpy() for _, y in make_dataset(shard_dir, 20, shuffle=True, epochs=(0, 3))]
    tail = [y.numpy() for _, y in make_dataset(shard_dir, 20, shuffle=True, epochs=(2, 3))]
    per_epoch = steps_per_epoch(shard_dir, 20)
    assert len(full) == 3 * per_epoch and len(tail) == per_epoch
    for a, b in zip(full[-per_epoch:], tail):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(full[:per_epoch], tail))


def test_reverse_complement_augmentation(tiny_data, tiny_shards) -> None:
    x, _ = source(tiny_data, "valid")
    codes = onehot_to_codes(x)[0]
    got, _ = collect(make_dataset(str(tiny_shards / "valid"), 16, rc_augment=True, codes_only=True))
    is_forward = (got == codes).all(axis=1)
    is_rc = (got == reverse_complement_codes(codes)).all(axis=1)
    assert (is_forward | is_rc).all()
    assert 0.2 < is_rc.mean() < 0.8


def test_prepare_output_replaces_an_older_folder(tiny_data, tmp_path) -> None:
    out = tmp_path / "shards"
    prepare_dataset(str(tiny_data), str(out), PrepareConfig(shard_size=1000), progress=False)
    prepare_dataset(str(tiny_data), str(out), PrepareConfig(shard_size=100), progress=False)
    assert len(read_manifest(str(out / "train")).shards) == 3
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "valid"]


def danq(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "danq.cli", "--params", str(REPO / "params.yaml"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def corrupt_copies(tiny_data: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """One defect per folder (train.mat corrupted), and the words its error must contain."""
    x, y = source(tiny_data, "train")
    cases: dict[str, tuple[Path, str]] = {}

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir(parents=True)
        for split in ("valid", "test"):
            (path / f"{split}.mat").write_bytes((tiny_data / f"{split}.mat").read_bytes())
        return path

    (folder("missing") / "placeholder").write_text("")
    cases["missing"] = (root / "missing", "train.mat: file not found")
    (folder("not_hdf5") / "train.mat").write_text("not a matrix")
    cases["not_hdf5"] = (root / "not_hdf5", "not an HDF5")
    with h5py.File(folder("missing_key") / "train.mat", "w") as f:
        f["trainxdata"] = x.transpose(1, 2, 0)
    cases["missing_key"] = (root / "missing_key", "missing key 'traindata'")
    with h5py.File(folder("rank") / "train.mat", "w") as f:
        f["trainxdata"], f["traindata"] = x.reshape(len(x), -1).T, y.T
    cases["rank"] = (root / "rank", "rank 2")
    with h5py.File(folder("axes") / "train.mat", "w") as f:
        f["trainxdata"], f["traindata"] = x.transpose(0, 2, 1), y.T  # (N, 4, L) in train
    cases["axes"] = (root / "axes", "traindata has 240")
    with h5py.File(folder("dtype") / "train.mat", "w") as f:
        f["trainxdata"], f["traindata"] = x.transpose(1, 2, 0).astype(np.float32), y.T
    cases["dtype"] = (root / "dtype", "float32")
    bad_y = y.copy()
    bad_y[200, 3] = 7
    write_split(folder("labels") / "train.mat", "train", x, bad_y)
    cases["labels"] = (root / "labels", "value 7 at sample 200")
    with h5py.File(folder("counts") / "train.mat", "w") as f:
        f["trainxdata"], f["traindata"] = x.transpose(1, 2, 0), y[:100].T
    cases["counts"] = (root / "counts", "has 240 samples but traindata has 100")
    data = write_split(root / "full.mat", "train", x, y).read_bytes()
    (folder("truncated") / "train.mat").write_bytes(data[: len(data) * 2 // 3])
    cases["truncated"] = (root / "truncated", "truncated")
    return cases


def test_bad_inputs_fail_clearly_and_leave_no_partial_shards(tiny_data, tmp_path) -> None:
    for name, (data_dir, words) in corrupt_copies(tiny_data, tmp_path / "bad").items():
        out = tmp_path / f"out_{name}"
        result = danq(
            "data",
            "prepare",
            "--data",
            str(data_dir),
            "--out",
            str(out),
            "--splits",
            "train",
            "--quiet",
            cwd=tmp_path,
        )
        assert result.returncode == 1, (name, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and words in last, (name, last)
        assert not out.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepare-")]


def test_forward_halves_need_an_even_count(tmp_path) -> None:
    x = np.zeros((3, 20, 4), dtype=np.uint8)
    write_split(tmp_path / "test.mat", "test", x, np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="even count"):
        prepare_split(
            str(tmp_path / "test.mat"),
            str(tmp_path / "out"),
            PrepareConfig(halves="forward"),
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_reading_a_folder_without_manifest_is_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="no manifest.json"):
        make_dataset(str(tmp_path), 10)


def test_preparing_one_split_keeps_the_others(tiny_data, tmp_path) -> None:
    out = tmp_path / "shards"
    prepare_dataset(str(tiny_data), str(out), PrepareConfig(), progress=False)
    before = read_manifest(str(out / "valid"))
    prepare_dataset(
        str(tiny_data), str(out), PrepareConfig(shard_size=100), ("train",), progress=False
    )
    assert read_manifest(str(out / "valid")) == before
    assert len(read_manifest(str(out / "train")).shards) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shards": [{"file": "../escape.tfrecord", "samples": 0}]}, r"shards\[0\]\.file"),
        ({"shards": [{"file": "/etc/passwd", "samples": 1}]}, "not a plain file name"),
        ({"seq_len": -5}, "seq_len must be a positive integer"),
        ({"n_targets": "16"}, "n_targets must be a positive integer"),
        ({"n_samples": 10**9}, "the shards hold"),
        ({"halves": "both; rm"}, "halves"),
        ({"extra": 1}, "unknown key"),
        ({"label_bytes": 9}, "label_bytes 9 does not fit"),
    ],
)
def test_a_hostile_manifest_is_a_data_error_naming_the_key(
    tiny_shards, tmp_path, change, message
) -> None:
    """A manifest is read before any shard: a path outside the folder, a negative or absurd
    dimension or an unknown key is refused with the file and key named (not a TypeError, not
    a read of another file)."""
    import json
    import shutil

    folder = tmp_path / "valid"
    shutil.copytree(tiny_shards / "valid", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    read_manifest(str(folder))  # the untouched copy reads
    if change.get("shards") and len(manifest["shards"]) > 1:
        manifest["shards"] = manifest["shards"][:1]
    (folder / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(DataError, match=message) as caught:
        read_manifest(str(folder))
    assert str(folder / "manifest.json") in str(caught.value)


def test_a_manifest_that_is_not_json_or_too_large_is_a_data_error(tiny_shards, tmp_path) -> None:
    import shutil

    from danq.config import LimitsConfig
    from danq.io import limits

    folder = tmp_path / "valid"
    shutil.copytree(tiny_shards / "valid", folder)
    (folder / "manifest.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="not JSON"):
        read_manifest(str(folder))
    max_bytes = LimitsConfig().max_manifest_bytes
    (folder / "manifest.json").write_bytes(b" " * (max_bytes + 1))
    with pytest.raises(DataError, match="larger than"):
        read_manifest(str(folder))
    manifest = (tiny_shards / "valid" / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(manifest)
    with (
        limits.applied(LimitsConfig(max_manifest_bytes=len(manifest) - 1)),
        pytest.raises(DataError, match="limits.max_manifest_bytes"),
    ):
        read_manifest(str(folder))

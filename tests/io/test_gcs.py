"""gs:// paths against a real gcp-storage-emulator: read .mat, write shards, stream them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from danq.config import PrepareConfig
from danq.data.dataset import make_dataset
from danq.data.shards import prepare_dataset, read_manifest
from danq.errors import DataError
from danq.io import storage
from danq.io.deepsea import open_split


def test_prepare_from_gs_to_gs_and_stream_back(
    gcs_bucket: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DANQ_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("train.mat", "valid.mat", "test.mat"):
        storage.upload(tiny_data / name, f"{gcs_bucket}/raw/{name}")
    manifests = prepare_dataset(
        f"{gcs_bucket}/raw",
        f"{gcs_bucket}/shards",
        PrepareConfig(shard_size=100),
        splits=("train", "test"),
        progress=False,
    )
    assert manifests["train"].n_samples == 240
    assert storage.listdir(f"{gcs_bucket}/shards/train") == [
        "manifest.json",
        "targets.json",
        "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
    ]
    assert read_manifest(f"{gcs_bucket}/shards/train").source == f"{gcs_bucket}/raw/train.mat"
    with open_split(tiny_data / "train.mat") as reader:
        x, y = reader.read(0, reader.n)
    got = list(make_dataset(f"{gcs_bucket}/shards/train", 64))
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), y.astype(np.float32))


def test_missing_remote_file_is_a_clear_error(gcs_bucket: str) -> None:
    with pytest.raises(DataError, match=f"^{gcs_bucket}/nowhere/valid.mat: file not found$"):
        open_split(f"{gcs_bucket}/nowhere/valid.mat")

"""gs:// paths against a real gcp-storage-emulator: read .mat, write shards, stream them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from danq.config import PrepareConfig
from danq.data.dataset import make_dataset
from danq.data.shards import prepare_dataset, read_manifest
from danq.io import storage
from danq.io.deepsea import DataError, open_split

from .gcs_emulator import gcs_emulator


@pytest.fixture(scope="module")
def bucket():
    with gcs_emulator("danq-data") as host:
        yield host


def test_prepare_from_gs_to_gs_and_stream_back(bucket, tiny_data: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("DANQ_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("train.mat", "valid.mat", "test.mat"):
        storage.upload(tiny_data / name, f"gs://danq-data/raw/{name}")
    manifests = prepare_dataset(
        "gs://danq-data/raw",
        "gs://danq-data/shards",
        PrepareConfig(shard_size=100),
        splits=("train", "test"),
        progress=False,
    )
    assert manifests["train"].n_samples == 240
    assert storage.listdir("gs://danq-data/shards/train") == [
        "manifest.json",
        "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
    ]
    assert read_manifest("gs://danq-data/shards/train").source == "gs://danq-data/raw/train.mat"
    with open_split(tiny_data / "train.mat") as reader:
        x, y = reader.read(0, reader.n)
    got = list(make_dataset("gs://danq-data/shards/train", 64))
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), y.astype(np.float32))


def test_missing_remote_file_is_a_clear_error(bucket):
    with pytest.raises(DataError, match="gs://danq-data/nowhere/valid.mat: file not found"):
        open_split("gs://danq-data/nowhere/valid.mat")

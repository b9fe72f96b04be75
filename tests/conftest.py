"""Shared fixtures: a tiny synthetic DeepSEA-format data set and its shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = dict(n_train=120, n_valid=40, n_test=40, seq_len=200, chunk_size=50)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/valid/test.mat (+ metadata.json) with 240/80/80 sequences of 200 bp."""
    from danq.config import SynthConfig
    from danq.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tiny_data"), SynthConfig(**TINY_SYNTH), seed=3)


@pytest.fixture(scope="session")
def tiny_shards(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from danq.config import PrepareConfig
    from danq.shards import prepare_dataset

    out = tmp_path_factory.mktemp("tiny_shards")
    prepare_dataset(
        str(tiny_data), str(out), PrepareConfig(shard_size=70, chunk_size=33), progress=False
    )
    return out

"""Shared fixtures: a tiny synthetic DeepSEA-format data set and its shards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = dict(n_train=120, n_valid=40, n_test=40, seq_len=200, chunk_size=50)


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="module", autouse=True)
def mlflow_uris_reset_per_module():
    """MLflow keeps its tracking and registry URIs in globals and in the environment, and the
    CLI sets them (set_registry_uri(None) even leaves MLFLOW_REGISTRY_URI behind): a test
    module must not send the next one to its store, or to a server it has stopped."""
    saved = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/valid/test.mat (+ metadata.json) with 240/80/80 sequences of 200 bp."""
    from danq.config import SynthConfig
    from danq.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tiny_data"), SynthConfig(**TINY_SYNTH), seed=3)


@pytest.fixture(scope="session")
def tiny_shards(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from danq.config import PrepareConfig
    from danq.data.shards import prepare_dataset

    out = tmp_path_factory.mktemp("tiny_shards")
    prepare_dataset(
        str(tiny_data), str(out), PrepareConfig(shard_size=70, chunk_size=33), progress=False
    )
    return out

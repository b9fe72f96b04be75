"""Fixtures of the Kubeflow tests: tiny settings, an MLflow store, data that fails the gate."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scipy.io

from danq import tracking

from .local_runs import (
    LONG_EPOCHS,
    MAX_EPOCHS,
    PIPELINE_MODEL,
    RESUME_KEY,
    ResumedRun,
    interrupted_then_resumed,
)

# The tiny synthetic set has 40 test sequences: its prevalences wander more than real data's.
TINY_OVERRIDES = [
    "validate.prevalence_tolerance=0.5",
    "prepare.shard_size=70",
    "model.conv_filters=8",
    "model.conv_width=10",
    "model.pool_size=5",
    "model.lstm_units=4",
    "model.dense_units=8",
    "train.shuffle_buffer=100",
    "train.seed=5",
    "evaluate.batch_size=80",
    "promote.bootstrap_samples=20",
    "promote.bootstrap_max_rows=100",
    # 40 independent validation rows (synthetic): blocks of 1, and targets with positives
    # in at least 2 rows.
    "promote.bootstrap_block_rows=1",
    "promote.bootstrap_min_class_blocks=2",
]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """The components' `overrides`: a model and a run small enough for the tiny data."""
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_train() -> dict[str, Any]:
    """The train component's typed settings: one epoch on the CPU."""
    return dict(max_epochs=1, batch_size=32, model_preset="custom", gpu_count=0)


def create_tracking_store(root: Path) -> str:
    uri = f"sqlite:///{root}/mlflow.db"
    tracking.client(uri).create_experiment("danq", artifact_location=str(root / "artifacts"))
    return uri


@pytest.fixture(scope="session")
def tracking_store() -> Callable[[Path], str]:
    """Makes a SQLite store under a folder whose `danq` experiment keeps its artifacts there;
    returns its URI (MLflow's global URIs are left alone)."""
    return create_tracking_store


def copy_with_bad_labels(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    arrays = scipy.io.loadmat(dest / "test.mat")
    y = arrays["testdata"]
    y[3, 1] = y[3 + len(y) // 2, 1] = 2
    scipy.io.savemat(
        dest / "test.mat", {"testxdata": arrays["testxdata"], "testdata": y}, format="5"
    )
    return dest


@pytest.fixture(scope="session")
def corrupt_labels() -> Callable[[Path, Path], Path]:
    """Copies a data folder to dest with a label 2 in test.mat (labels must be 0/1)."""
    return copy_with_bad_labels


@pytest.fixture(scope="session")
def resumed_run(
    tiny_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_overrides: list[str],
    tiny_train: dict[str, Any],
) -> ResumedRun:
    """The whole pipeline on the tiny data, SIGKILLed after the baseline's first epoch, then
    run again with the same resume key to a champion (tests/kfp/local_runs.py)."""
    root = tmp_path_factory.mktemp("resumed-run")
    uri = create_tracking_store(root)
    arguments = dict(
        data_uri=str(tiny_data),
        registered_model=PIPELINE_MODEL,
        min_macro_auroc=0.0,
        min_macro_aupr=0.0,
        checkpoint_root=str(root / "checkpoints"),
        resume_key=RESUME_KEY,
        overrides=[*tiny_overrides, *LONG_EPOCHS],
        **{**tiny_train, "max_epochs": MAX_EPOCHS},
    )
    return interrupted_then_resumed(root, uri, arguments, tracking.client(uri))

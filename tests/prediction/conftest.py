"""Fixtures of the prediction tests: a tiny saved model, a SQLite MLflow store, and logging
and registering a model as the project does (with its sha256 tags)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from danq.config import DropoutConfig, ModelConfig

SEQ_LEN = 60
N_TARGETS = 3


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained DanQ of SEQ_LEN bp and N_TARGETS outputs, saved as .keras."""
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq

    cfg = ModelConfig(
        preset="custom", conv_filters=4, conv_width=5, pool_size=4, lstm_units=3, dense_units=6
    )
    model = build_danq(cfg, SEQ_LEN, N_TARGETS, dropout_policy(DropoutConfig(), "baseline"), seed=0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_file: Path):
    from danq.model.loading import load_model

    return load_model(str(model_file))


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URI of an empty SQLite tracking store and registry; nothing global points at it.

    The working directory is tmp_path, so that nothing MLflow writes by default lands in the
    repository.
    """
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path}/mlflow.db"


def log_and_register_model(
    tracking_uri: str,
    model: Any,
    experiment_id: str,
    name: str,
    target_names: list[str],
    tagged: bool = True,
) -> Any:
    """Log model in a new run of experiment_id as training does (tracking.log_keras_model,
    which tags it with its file's sha256) and register it as a version of `name`, with the
    verified sha256 as a version tag as promotion does unless tagged is False; the
    ModelVersion."""
    import mlflow

    from danq import tracking
    from danq.artifacts import TAG_MODEL_SHA256
    from danq.model.integrity import verified_sha256

    client = tracking.client(tracking_uri)
    with tracking.using(tracking_uri), mlflow.start_run(experiment_id=experiment_id) as run:
        logged_uri = tracking.log_keras_model(
            model, np.zeros((2, *model.input_shape[1:]), np.float32), target_names
        )
    tags = {TAG_MODEL_SHA256: verified_sha256(client, logged_uri)} if tagged else {}
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # registered by an earlier call
    with tracking.using(tracking_uri):  # a SQL registry resolves models:/m-... globally
        return client.create_model_version(
            name,
            logged_uri,
            run_id=run.info.run_id,
            model_id=logged_uri.removeprefix("models:/"),
            tags=tags,
        )


@pytest.fixture(scope="session")
def log_and_register() -> Callable[..., Any]:
    """log_and_register_model, for tests (see its docstring)."""
    return log_and_register_model

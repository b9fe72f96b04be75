"""Fixtures of the prediction tests: a tiny saved model and a SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

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

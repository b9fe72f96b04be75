"""Tiny real models for the evaluation tests, built once for the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danq.config import DropoutConfig, ModelConfig
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq

TINY_MODEL = ModelConfig(
    preset="custom", conv_filters=4, conv_width=5, pool_size=8, lstm_units=3, dense_units=6
)


@pytest.fixture(scope="package")
def tiny_models(tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two untrained variants saved like training leaves them (no MLflow run)."""
    root = tmp_path_factory.mktemp("models")
    for i, variant in enumerate(("baseline", "random_dropout")):
        model = build_danq(TINY_MODEL, 200, 16, dropout_policy(DropoutConfig(), variant), seed=i)
        (root / variant).mkdir()
        model.save(root / variant / "model.keras")
        (root / variant / "run.json").write_text(json.dumps({"variant": variant}))
        history = {
            "epochs": [
                {"epoch": e, "loss": 0.5 - e / 100, "val_loss": 0.6 - e / 90} for e in (1, 2, 3)
            ],
            "best_epoch": 3,
            "epochs_run": 3,
        }
        (root / variant / "history.json").write_text(json.dumps(history))
    return root

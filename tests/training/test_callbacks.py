"""Resumable early stopping, the per-epoch MLflow metrics and the progress line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from danq.training.callbacks import ResumableEarlyStopping, epoch_metrics, progress_line
from danq.training.checkpoint import TrainingCheckpoint

RECORD = {
    "epoch": 3,
    "loss": 0.123456,
    "val_loss": 0.234567,
    "val_auroc": 0.81234,
    "samples_per_s": 12345.6,
    "epoch_time_s": 1.5,
    "rates": {"pool_dropout": 0.21234, "lstm_dropout": 0.5},
}


class FakeModel:
    stop_training = False


class BestWeights(TrainingCheckpoint):
    """Records which epochs' best weights would be saved instead of writing them."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.saved: list[int] = []

    def save_best_weights(self, model: Any, epoch: int) -> str:
        self.saved.append(epoch)
        return f"best-e{epoch:04d}.weights.h5"


def early_stopping(tmp_path: Path, patience: int) -> tuple[ResumableEarlyStopping, BestWeights]:
    checkpoint = BestWeights(tmp_path)
    callback = ResumableEarlyStopping(patience, checkpoint)
    callback.set_model(FakeModel())
    return callback, checkpoint


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience(tmp_path: Path) -> None:
    callback, checkpoint = early_stopping(tmp_path, patience=2)
    for epoch, val_loss in enumerate([0.5, 0.4, math.nan, 0.45]):
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
    assert checkpoint.saved == [1, 2]  # NaN never improves
    assert callback.get_state() == {
        "best_val_loss": 0.4,
        "best_epoch": 2,
        "best_weights": "best-e0002.weights.h5",
        "wait": 2,
        "stopped_epoch": 4,
    }
    assert callback.model.stop_training


def test_early_stopping_state_survives_a_restart(tmp_path: Path) -> None:
    first, _ = early_stopping(tmp_path, patience=2)
    for epoch, val_loss in enumerate([0.5, 0.6]):
        first.on_epoch_end(epoch, {"val_loss": val_loss})
    resumed, checkpoint = early_stopping(tmp_path, patience=2)
    resumed.set_state(first.get_state())
    resumed.on_epoch_end(2, {"val_loss": 0.7})
    assert resumed.stopped_epoch == 3 and resumed.best_epoch == 1 and not checkpoint.saved


def test_epoch_metrics_flatten_the_rates() -> None:
    assert epoch_metrics(RECORD) == {
        "loss": 0.123456,
        "val_loss": 0.234567,
        "val_auroc": 0.81234,
        "samples_per_s": 12345.6,
        "epoch_time_s": 1.5,
        "rate.pool_dropout": 0.21234,
        "rate.lstm_dropout": 0.5,
    }


@pytest.mark.parametrize(
    ("show_rates", "best", "line"),
    [
        (
            False,
            False,
            "epoch 3/10  loss 0.1235  val_loss 0.2346  val_auroc 0.812  12,346 samples/s",
        ),
        (
            True,
            True,
            "epoch 3/10  loss 0.1235  val_loss 0.2346  val_auroc 0.812  12,346 samples/s  "
            "rates pool=0.212 lstm=0.500  (best)",
        ),
    ],
)
def test_progress_line(show_rates: bool, best: bool, line: str) -> None:
    assert progress_line(RECORD, 10, show_rates, best) == line

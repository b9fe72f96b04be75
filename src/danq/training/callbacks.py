"""Keras callbacks that make training resumable: early stopping whose state survives a restart,
the per-epoch record, checkpoint, MLflow metrics and progress line, and the guard that fails
training on a non-finite loss before any of that is written."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras

from danq import tracking
from danq.errors import TrainingDiverged
from danq.model.dropout import DropoutRedrawCallback
from danq.training.checkpoint import TrainingCheckpoint


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Raises TrainingDiverged when the epoch's training or validation loss is NaN or
    infinite.

    It must come first among fit's callbacks: raised there, the failing epoch reaches neither
    early stopping (best weights), EpochEnd (history, checkpoint, MLflow metrics) nor the
    finished-run outputs, so the checkpoint keeps the last epoch with finite losses. Unlike
    keras.callbacks.TerminateOnNaN, which stops training as if it had ended normally.
    """

    def __init__(self, state: Mapping[str, Any], checkpoint: TrainingCheckpoint) -> None:
        super().__init__()
        self.state = state  # the checkpoint's state, which EpochEnd advances per epoch
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # The epoch's loss is the mean over its batches, non-finite if any batch's was, so one
        # check per epoch suffices; a per-batch check would read the loss back every step.
        for name, which in (("loss", "training"), ("val_loss", "validation")):
            value = float((logs or {}).get(name, 0.0))
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"epoch {epoch + 1}, end of epoch: the {which} loss is {value}; nothing of "
                    f"epoch {epoch + 1} was kept and no model was saved. The checkpoint in "
                    f"{self.checkpoint.directory} holds epoch {self.state['epoch']}: training "
                    "again with the same settings resumes from it; after changing settings "
                    "(e.g. a lower train.learning_rate) restart training"
                )


class ResumableEarlyStopping(keras.callbacks.Callback):
    """Early stopping on val_loss with state that survives a restart (Keras's keeps its own
    internal state, lost with the process); the best weights go to the checkpoint folder."""

    def __init__(self, patience: int, checkpoint: TrainingCheckpoint) -> None:
        super().__init__()
        self.patience = patience
        self.checkpoint = checkpoint
        self.best_val_loss = math.inf
        self.best_epoch = 0  # 1-based; 0 until an epoch finishes
        self.best_weights: str | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.improved = False

    def get_state(self) -> dict[str, Any]:
        return {
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.best_val_loss = float(state["best_val_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.best_weights = state["best_weights"]
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        val_loss = float((logs or {})["val_loss"])
        self.improved = val_loss < self.best_val_loss  # NaN never improves
        if self.improved:
            self.best_val_loss, self.best_epoch, self.wait = val_loss, epoch + 1, 0
            self.best_weights = self.checkpoint.save_best_weights(self.model, epoch + 1)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True


class EpochEnd(keras.callbacks.Callback):
    """Per finished epoch: the history record, the checkpoint, the MLflow metrics and the
    progress line, in that order. MLflow never holds an epoch the checkpoint lacks; one the
    checkpoint holds but MLflow missed (killed in between) is logged on resume."""

    def __init__(
        self,
        state: dict[str, Any],
        checkpoint: TrainingCheckpoint,
        early_stopping: ResumableEarlyStopping,
        redraw: DropoutRedrawCallback,
        samples_per_epoch: int,
        max_epochs: int,
        show_rates: bool,
        wall_time: Callable[[], float],
    ) -> None:
        super().__init__()
        self.state = state
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.redraw = redraw
        self.samples_per_epoch = samples_per_epoch
        self.max_epochs = max_epochs
        self.show_rates = show_rates
        self.wall_time = wall_time
        self._epoch_started = self._train_ended = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_started = time.monotonic()
        self._train_ended = 0.0

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # Validation starts: the training part of the epoch, which samples/s measures, is over.
        self._train_ended = self._train_ended or time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        now = time.monotonic()
        train_time = (self._train_ended or now) - self._epoch_started
        record = {
            "epoch": epoch + 1,
            **{name: float(value) for name, value in (logs or {}).items()},
            "samples_per_s": self.samples_per_epoch / max(train_time, 1e-9),
            "epoch_time_s": now - self._epoch_started,
            "rates": self.redraw.epoch_rates[-1],
        }
        self.state["history"].append(record)
        self.state["epoch"] = epoch + 1
        self.state["variables"] = self.checkpoint.save_variables(self.model, epoch + 1)
        self.state["early_stopping"] = self.early_stopping.get_state()
        self.state["wall_time_s"] = self.wall_time()
        self.checkpoint.commit(self.state)
        tracking.log_epoch(epoch + 1, epoch_metrics(record))
        print(
            progress_line(record, self.max_epochs, self.show_rates, self.early_stopping.improved),
            flush=True,
        )


def epoch_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A history record as MLflow metrics: rates as rate.<layer>."""
    metrics = {k: v for k, v in record.items() if k not in ("epoch", "rates")}
    metrics.update({f"rate.{layer}": rate for layer, rate in record["rates"].items()})
    return metrics


def progress_line(record: Mapping[str, Any], max_epochs: int, show_rates: bool, best: bool) -> str:
    parts = [
        f"epoch {record['epoch']}/{max_epochs}",
        f"loss {record['loss']:.4f}",
        f"val_loss {record['val_loss']:.4f}",
    ]
    if "val_auroc" in record:
        parts.append(f"val_auroc {record['val_auroc']:.3f}")
    parts.append(f"{record['samples_per_s']:,.0f} samples/s")
    if show_rates:
        rates = " ".join(
            f"{layer.removesuffix('_dropout')}={rate:.3f}"
            for layer, rate in record["rates"].items()
        )
        parts.append(f"rates {rates}")
    if best:
        parts.append("(best)")
    return "  ".join(parts)

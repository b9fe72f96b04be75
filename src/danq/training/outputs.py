"""What a finished training leaves: model.keras, history.json, the training curve, and the
history, curve and model in its MLflow run; and the result a caller gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow

from danq import artifacts, tracking
from danq.artifacts import GENOME_METADATA_KEY, HISTORY_FILE, MODEL_FILE, TRAINING_CURVE_FILE
from danq.config import Params, TrainConfig
from danq.data.dataset import make_dataset
from danq.data.targets import read_metadata, shard_target_table
from danq.errors import TrainingStateError
from danq.io.genome import model_genome_record
from danq.redaction import redact_uri
from danq.training.checkpoint import TrainingCheckpoint

SIGNATURE_SAMPLES = 5


@dataclass(frozen=True)
class TrainResult:
    variant: str
    out_dir: str
    model_path: str
    run_id: str
    model_uri: str
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_epoch: int | None  # epoch at which early stopping fired; None: ran to max_epochs
    wall_time_s: float  # all sessions of this run together
    resumed_from_epoch: int  # epochs already finished when this call started
    already_finished: bool  # out_dir held a finished run with these settings: nothing trained


def history_summary(state: Mapping[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    early = state["early_stopping"]
    return {
        "variant": state["settings"]["variant"],
        "epochs": state["history"],
        "best_epoch": early["best_epoch"],
        "best_val_loss": early["best_val_loss"],
        "stopped_epoch": early["stopped_epoch"],
        "epochs_run": state["epoch"],
        "max_epochs": cfg.max_epochs,
        "patience": cfg.patience,
        "resumed_at_epochs": state["resumed_at_epochs"],
        "wall_time_s": state["wall_time_s"],
        "train_time_s": sum(r["epoch_time_s"] for r in state["history"]),
    }


def plot_training_curve(history: Mapping[str, Any], path: Path) -> None:
    """Loss and validation loss per epoch, the best epoch marked, and the dropout rates."""
    from matplotlib.figure import Figure

    records = history["epochs"]
    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(7, 6), layout="constrained")
    loss_ax, rate_ax = fig.subplots(2, sharex=True, height_ratios=(2, 1))
    loss_ax.plot(epochs, [r["loss"] for r in records], marker="o", label="training")
    loss_ax.plot(epochs, [r["val_loss"] for r in records], marker="o", label="validation")
    if history["best_epoch"]:
        loss_ax.axvline(
            history["best_epoch"],
            color="grey",
            linestyle="--",
            label=f"best epoch ({history['best_epoch']})",
        )
    loss_ax.set_ylabel("binary cross-entropy")
    loss_ax.set_title(f"DanQ {history['variant']}: training curve")
    loss_ax.legend()
    for layer in records[0]["rates"] if records else ():
        rate_ax.plot(epochs, [r["rates"][layer] for r in records], marker=".", label=layer)
    rate_ax.set_ylabel("dropout rate")
    rate_ax.set_xlabel("epoch")
    rate_ax.set_ylim(0, 1)
    rate_ax.legend()
    artifacts.write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def recorded_genome(params: Params, data_dir: str | None) -> dict[str, Any] | None:
    """The genome logged with the model, so that `danq variant-effect` can refuse a FASTA of
    another build: the genome.build setting and the data's metadata.json genome record
    (model_genome_record; ConfigError when they contradict each other)."""
    data_genome = (read_metadata(data_dir) or {}).get(GENOME_METADATA_KEY) if data_dir else None
    return model_genome_record(params.genome.build, data_genome)


def save_model(model: keras.Model, path: Path) -> None:
    artifacts.write_atomically(path, model.save)


def result_from_outputs(
    out: Path, run: Mapping[str, Any], resumed_from_epoch: int, already_finished: bool
) -> TrainResult:
    history = artifacts.read_json(out / HISTORY_FILE)
    return TrainResult(
        variant=run["variant"],
        out_dir=str(out),
        model_path=str(out / MODEL_FILE),
        run_id=run["run_id"],
        model_uri=run["model_uri"],
        best_epoch=history["best_epoch"],
        best_val_loss=history["best_val_loss"],
        epochs_run=history["epochs_run"],
        stopped_epoch=history["stopped_epoch"],
        wall_time_s=history["wall_time_s"],
        resumed_from_epoch=resumed_from_epoch,
        already_finished=already_finished,
    )


def finish(
    model: keras.Model,
    state: dict[str, Any],
    out: Path,
    checkpoint: TrainingCheckpoint,
    params: Params,
    valid_dir: str,
    wall_time: float,
    run: mlflow.ActiveRun,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Best weights to model.keras; history, curve and model to out_dir and to the MLflow run,
    the active one. Returns the run summary that run.json will hold.

    Target names come from the shards (valid_dir's targets.json); data_dir, when given, must
    agree with them."""
    best_weights = state["early_stopping"]["best_weights"]
    if best_weights is None:
        # Without them the last weights, whatever they are, would become the model.
        raise TrainingStateError(
            f"{checkpoint.directory}: no best weights after {state['epoch']} epochs (no epoch "
            "ended with a finite validation loss); no model to save or log"
        )
    model.load_weights(checkpoint.directory / best_weights)
    state["wall_time_s"] = wall_time
    history = history_summary(state, params.train)
    save_model(model, out / MODEL_FILE)
    artifacts.write_json(out / HISTORY_FILE, history, allow_nan=False)
    plot_training_curve(history, out / TRAINING_CURVE_FILE)
    log_final_metrics(history)
    mlflow.log_artifact(str(out / HISTORY_FILE))
    mlflow.log_artifact(str(out / TRAINING_CURVE_FILE))
    sample_x = next(iter(make_dataset(valid_dir, SIGNATURE_SAMPLES)))[0].numpy()
    # Target names travel with the model, so `danq predict` can label its columns anywhere.
    target_names, _ = shard_target_table(int(model.output_shape[-1]), valid_dir, data_dir)
    genome = recorded_genome(params, data_dir)
    logged_model_uri = tracking.log_keras_model(model, sample_x, target_names, genome)

    run_id = run.info.run_id
    return {
        "variant": state["settings"]["variant"],
        "run_id": run_id,
        "experiment": params.mlflow.experiment,
        "experiment_id": run.info.experiment_id,
        # run.json is copied into pipeline artifacts and committed reports: no password in it.
        "tracking_uri": redact_uri(mlflow.get_tracking_uri()),
        "model_uri": tracking.run_model_uri(run_id),
        "logged_model_uri": logged_model_uri,
        "epochs_run": history["epochs_run"],
        "settings_hash": state["settings_hash"],
        "settings": state["settings"],
    }


def log_final_metrics(history: Mapping[str, Any]) -> None:
    """The run's outcome as unstepped metrics; stopped_epoch only when early stopping fired."""
    final = {
        "best_epoch": history["best_epoch"],
        "best_val_loss": history["best_val_loss"],
        "epochs_run": history["epochs_run"],
        "wall_time_s": history["wall_time_s"],
    }
    if history["stopped_epoch"] is not None:
        final["stopped_epoch"] = history["stopped_epoch"]
    mlflow.log_metrics(final)

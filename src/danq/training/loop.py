"""`danq train`: fit DanQ or random-dropout DanQ on prepared shards, resumably, in MLflow.

The paper's recipe (Quang & Xie 2016): RMSprop (lr 1e-3, rho 0.9), batches of 100, binary
cross-entropy over the targets, early stopping on validation loss with patience 5, best
weights kept. On GPUs, mixed precision and (with several) MirroredStrategy switch on.

Every finished epoch leaves a complete checkpoint: all model variables, the dropout layers'
random-generator state included, the optimizer state, the early-stopping and dropout-redraw
state and the MLflow run id. Started again after a crash or a SIGKILL, the same command
continues from the last finished epoch in the same MLflow run, and on CPU (deterministic ops)
ends in the same weights as an uninterrupted run.

out_dir holds:
    model.keras          the best weights (written when training ends)
    history.json         per-epoch loss, val_loss, samples/s, dropout rates; best and stop epoch
    training_curve.png
    run.json             MLflow run, experiment, tracking URI and model URI; written last, it
                         marks a finished run
    checkpoint/          state.json and the files it names; removed when training ends
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf

from danq import tracking
from danq.config import VARIANTS, ConfigError, Params, TrainConfig, Variant
from danq.data.dataset import make_dataset, steps_per_epoch
from danq.data.shards import Manifest, read_manifest
from danq.data.targets import target_table
from danq.errors import TrainingStateError
from danq.io import storage
from danq.io.deepsea import DataError
from danq.model.dropout import DropoutRedrawCallback, dropout_policy
from danq.model.network import build_danq, compile_danq

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
CURVE_FILE = "training_curve.png"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
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


# --- settings ------------------------------------------------------------------------------


def training_settings(
    params: Params, variant: Variant, train: Manifest, valid: Manifest
) -> dict[str, Any]:
    """Everything that shapes the trained weights, flat with dotted keys: logged as MLflow
    params and compared with a checkpoint's before it is resumed."""
    return tracking.flatten(
        {
            "variant": variant,
            "model": params.model.model_dump(),
            "train": params.train.model_dump(),
            "dropout": getattr(params.dropout, variant).model_dump(),
            # Validation runs in inference-sized batches: it decides the best epoch.
            "evaluate": {"batch_size": params.evaluate.batch_size},
            "data": {
                "n_train": train.n_source_samples,
                "n_valid": valid.n_source_samples,
                "seq_len": train.seq_len,
                "n_targets": train.n_targets,
            },
        }
    )


def settings_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def settings_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    changed = [
        f"{key}: {saved.get(key)!r} there, {current.get(key)!r} now"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    return "; ".join(changed)


def configure_devices() -> tf.distribute.Strategy:
    """Mixed precision on GPU and data parallelism over several GPUs; CPU runs stay float32."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# --- data ----------------------------------------------------------------------------------


def training_batches(
    train_dir: str, cfg: TrainConfig, first_epoch: int, max_epochs: int
) -> tuple[tf.data.Dataset, int]:
    """Batches for epochs first_epoch..max_epochs-1, and the steps per epoch.

    An epoch is one pass over the shards unless train.steps_per_epoch sets its length; epoch e
    then starts at step e * steps_per_epoch of the chained seeded passes, inside a
    pass if need be, so a resumed run still sees exactly the batches of an uninterrupted one.
    """
    pass_steps = steps_per_epoch(train_dir, cfg.batch_size)
    steps = cfg.steps_per_epoch or pass_steps
    first_pass, offset = divmod(first_epoch * steps, pass_steps)
    stop_pass = -(-max_epochs * steps // pass_steps)
    batches = make_dataset(
        train_dir,
        cfg.batch_size,
        shuffle=True,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed,
        rc_augment=cfg.rc_augment,
        epochs=(first_pass, stop_pass),
    )
    return (batches.skip(offset) if offset else batches), steps


def validation_batches(valid_dir: str, batch_size: int) -> tf.data.Dataset:
    # A known length spares Keras a probe for the end of the data on every evaluation.
    return make_dataset(valid_dir, batch_size).apply(
        tf.data.experimental.assert_cardinality(steps_per_epoch(valid_dir, batch_size))
    )


# --- checkpoint ----------------------------------------------------------------------------


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename it into place: a
    reader, or a run killed at any moment, sees the old file or the new one, never a part."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def resumable_variables(model: keras.Model) -> list[keras.Variable]:
    """Model variables (weights, dropout rates, dropout seed-generator states) and optimizer
    variables. `model.save` leaves out the seed-generator states: without them a resumed run
    would draw other dropout masks."""
    return [*model.variables, *model.optimizer.variables]


class TrainingCheckpoint:
    """out_dir/checkpoint: state.json plus the files it names, replaced per finished epoch.

    Files carry the epoch in their name and state.json, the commit point, is renamed into
    place last, so a kill at any moment leaves the previous or the new checkpoint complete.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / "state.json"

    def read(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text())

    def save_variables(self, model: keras.Model, epoch: int) -> str:
        name = f"variables-e{epoch:04d}.npz"
        arrays = {
            f"{i:05d}": keras.ops.convert_to_numpy(v)
            for i, v in enumerate(resumable_variables(model))
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.directory / name, lambda tmp: np.savez(tmp, **arrays))
        return name

    def save_best_weights(self, model: keras.Model, epoch: int) -> str:
        name = f"best-e{epoch:04d}.weights.h5"
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.directory / name, model.save_weights)
        return name

    def restore_variables(self, model: keras.Model, name: str) -> None:
        variables = resumable_variables(model)
        with np.load(self.directory / name) as saved:
            if len(saved.files) != len(variables):
                raise TrainingStateError(
                    f"{self.directory / name}: {len(saved.files)} variables, the model has "
                    f"{len(variables)}"
                )
            for i, variable in enumerate(variables):
                value = saved[f"{i:05d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise TrainingStateError(
                        f"{self.directory / name}: variable {variable.path} has shape "
                        f"{value.shape} there, {tuple(variable.shape)} in the model"
                    )
                variable.assign(value)

    def commit(self, state: Mapping[str, Any]) -> None:
        write_json(self.state_path, state)
        self.prune(state)

    def prune(self, state: Mapping[str, Any]) -> None:
        """Delete files the state does not name: superseded epochs, temporaries of a killed run."""
        keep = {self.state_path.name, state["variables"], state["early_stopping"]["best_weights"]}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# --- callbacks -----------------------------------------------------------------------------


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


# --- outputs -------------------------------------------------------------------------------


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
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def save_model(model: keras.Model, path: Path) -> None:
    write_atomically(path, model.save)


def result_from_outputs(
    out: Path, run: Mapping[str, Any], resumed_from_epoch: int, already_finished: bool
) -> TrainResult:
    history = json.loads((out / HISTORY_FILE).read_text())
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


# --- training ------------------------------------------------------------------------------


def read_shards(shard_dir: str) -> tuple[str, Manifest, str, Manifest]:
    train_dir, valid_dir = storage.join(shard_dir, "train"), storage.join(shard_dir, "valid")
    train, valid = read_manifest(train_dir), read_manifest(valid_dir)
    if (train.seq_len, train.n_targets) != (valid.seq_len, valid.n_targets):
        raise DataError(
            f"{shard_dir}: train has {train.seq_len} bp x {train.n_targets} targets, valid "
            f"{valid.seq_len} bp x {valid.n_targets} targets"
        )
    return train_dir, train, valid_dir, valid


def finished_run(out: Path, fingerprint: str, settings: Mapping[str, Any]) -> dict | None:
    """run.json of a finished run with these settings, None when there is none; a finished
    run with other settings is an error (nothing is overwritten without --force)."""
    if not ((out / RUN_FILE).exists() and (out / MODEL_FILE).exists()):
        return None
    run = json.loads((out / RUN_FILE).read_text())
    if run["settings_hash"] != fingerprint:
        raise TrainingStateError(
            f"{out} holds a finished run with other settings "
            f"({settings_diff(run['settings'], settings)}); pass --force to train again, "
            "or choose another --out"
        )
    return run


def train_variant(
    params: Params,
    variant: Variant,
    shard_dir: str,
    out_dir: str,
    data_dir: str | None = None,
    *,
    force: bool = False,
    restart: bool = False,
    checkpoint_dir: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train one variant into out_dir (a local folder), resuming its checkpoint if any.

    force: train again even when out_dir holds a finished run. restart: discard a checkpoint
    and start over. checkpoint_dir: where the per-epoch resume state lives (default
    out_dir/checkpoint; the CLI keeps it outside out_dir because `dvc repro` empties a
    stage's outputs before rerunning it). data_dir: the source data, for the data-version
    tags. callbacks: extra Keras callbacks, called after the checkpoint of each epoch is
    written.
    """
    started = time.monotonic()
    if variant not in VARIANTS:
        raise ConfigError(f"variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    train_dir, train_manifest, valid_dir, valid_manifest = read_shards(shard_dir)
    params.model.check_fits(train_manifest.seq_len)
    cfg = params.train
    settings = training_settings(params, variant, train_manifest, valid_manifest)
    fingerprint = settings_hash(settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # the checkpoint may live elsewhere
    checkpoint = TrainingCheckpoint(
        Path(checkpoint_dir) if checkpoint_dir else out / CHECKPOINT_DIR
    )

    if not force and (run := finished_run(out, fingerprint, settings)) is not None:
        print(f"{variant}: {out} holds a finished run ({run['run_id']}); --force trains again")
        return result_from_outputs(out, run, run["epochs_run"], already_finished=True)
    if (out / RUN_FILE).exists():
        # Trained again: a checkpoint left beside a finished run is spent. run.json goes
        # last, so until then a kill leaves out_dir a finished run.
        checkpoint.remove()
        (out / RUN_FILE).unlink()

    state = checkpoint.read()
    if state is not None and restart:
        checkpoint.remove()
        state = None
    if state is not None and state["settings_hash"] != fingerprint:
        raise TrainingStateError(
            f"{checkpoint.directory} was written with other settings "
            f"({settings_diff(state['settings'], settings)}); pass --restart to discard it "
            "and start over"
        )

    gpus = tf.config.list_physical_devices("GPU")
    strategy = configure_devices()
    devices = f"{len(gpus)} GPU" if gpus else "CPU"
    devices += f", {keras.mixed_precision.global_policy().name}"
    if not gpus:
        # Same seed, same per-epoch losses; on GPU the deterministic kernels cost too much speed.
        tf.config.experimental.enable_op_determinism()
    policy = dropout_policy(params.dropout, variant)
    with strategy.scope():
        model = build_danq(
            params.model, train_manifest.seq_len, train_manifest.n_targets, policy, cfg.seed
        )
        compile_danq(model, cfg)
        model.optimizer.build(model.trainable_variables)
    resumed_from = 0 if state is None else state["epoch"]
    if state is not None:
        checkpoint.restore_variables(model, state["variables"])

    redraw = DropoutRedrawCallback(policy, seed=cfg.seed)
    early_stopping = ResumableEarlyStopping(cfg.patience, checkpoint)
    prior_wall_time = 0.0 if state is None else state["wall_time_s"]
    if state is not None:
        redraw.set_state(state["redraw"])
        early_stopping.set_state(state["early_stopping"])

    resume_run_id = None if state is None else state["run_id"]
    tracking_uri = tracking.resolve_uri(params.mlflow)
    experiment = params.mlflow.experiment
    with (
        tracking.using(tracking_uri),
        tracking.start_run(experiment, resume_run_id, variant) as run,
    ):
        run_id = run.info.run_id
        mlflow.log_params(settings)
        mlflow.set_tags(
            {
                "danq.variant": variant,
                "danq.settings_hash": fingerprint,
                "danq.devices": devices,
                **tracking.provenance_tags(data_dir),
            }
        )
        if state is None:
            state = {
                "settings_hash": fingerprint,
                "settings": settings,
                "run_id": run_id,
                "epoch": 0,
                "variables": checkpoint.save_variables(model, 0),
                "early_stopping": early_stopping.get_state(),
                "redraw": redraw.get_state(),
                "history": [],
                "resumed_at_epochs": [],
                "wall_time_s": 0.0,
            }
            checkpoint.commit(state)
        else:
            state["resumed_at_epochs"].append(state["epoch"])
            mlflow.set_tag("danq.resumed_at_epochs", ",".join(map(str, state["resumed_at_epochs"])))
            logged = tracking.logged_steps(run_id, "loss")
            for record in state["history"]:
                if record["epoch"] not in logged:
                    tracking.log_epoch(record["epoch"], epoch_metrics(record))

        first_epoch = state["epoch"]
        print(
            f"training {variant}: {model.count_params():,} parameters, "
            f"{train_manifest.n_source_samples:,} training samples, {devices}; "
            f"MLflow run {run_id}"
            + (f", resumed after epoch {first_epoch}" if first_epoch else ""),
            flush=True,
        )
        if early_stopping.stopped_epoch is None and first_epoch < cfg.max_epochs:
            batches, steps = training_batches(train_dir, cfg, first_epoch, cfg.max_epochs)
            samples_per_epoch = (
                steps * cfg.batch_size if cfg.steps_per_epoch else train_manifest.n_source_samples
            )
            epoch_end = EpochEnd(
                state,
                checkpoint,
                early_stopping,
                redraw,
                samples_per_epoch,
                cfg.max_epochs,
                show_rates=variant == "random_dropout",
                wall_time=lambda: prior_wall_time + time.monotonic() - started,
            )
            model.fit(
                batches,
                epochs=cfg.max_epochs,
                initial_epoch=first_epoch,
                steps_per_epoch=steps,
                validation_data=validation_batches(valid_dir, params.evaluate.batch_size),
                callbacks=[redraw, early_stopping, epoch_end, *callbacks],
                shuffle=False,  # the dataset shuffles, seeded per epoch
                verbose=1 if sys.stdout.isatty() else 0,
            )
        summary = finish(
            model,
            state,
            out,
            checkpoint,
            params,
            valid_dir,
            wall_time=prior_wall_time + time.monotonic() - started,
            data_dir=data_dir,
        )
    # Written once the MLflow run has ended: run.json marks the run finished.
    write_json(out / RUN_FILE, summary)
    checkpoint.remove()
    return result_from_outputs(out, summary, resumed_from, already_finished=False)


def finish(
    model: keras.Model,
    state: dict[str, Any],
    out: Path,
    checkpoint: TrainingCheckpoint,
    params: Params,
    valid_dir: str,
    wall_time: float,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Best weights to model.keras; history, curve and model to out_dir and the active MLflow
    run. Returns the run summary that run.json will hold."""
    best_weights = state["early_stopping"]["best_weights"]
    if best_weights is not None:
        model.load_weights(checkpoint.directory / best_weights)
    state["wall_time_s"] = wall_time
    history = history_summary(state, params.train)
    save_model(model, out / MODEL_FILE)
    write_json(out / HISTORY_FILE, history)
    plot_training_curve(history, out / CURVE_FILE)

    final = {
        "best_epoch": history["best_epoch"],
        "best_val_loss": history["best_val_loss"],
        "epochs_run": history["epochs_run"],
        "wall_time_s": history["wall_time_s"],
    }
    if history["stopped_epoch"] is not None:
        final["stopped_epoch"] = history["stopped_epoch"]
    mlflow.log_metrics(final)
    mlflow.log_artifact(str(out / HISTORY_FILE))
    mlflow.log_artifact(str(out / CURVE_FILE))
    sample_x = next(iter(make_dataset(valid_dir, SIGNATURE_SAMPLES)))[0].numpy()
    # Target names travel with the model, so `danq predict` can label its columns anywhere.
    target_names, _ = target_table(int(model.output_shape[-1]), data_dir)
    logged_model_uri = tracking.log_keras_model(model, sample_x, target_names)

    run = mlflow.active_run()
    run_id = run.info.run_id
    return {
        "variant": state["settings"]["variant"],
        "run_id": run_id,
        "experiment": params.mlflow.experiment,
        "experiment_id": run.info.experiment_id,
        "tracking_uri": mlflow.get_tracking_uri(),
        "model_uri": tracking.run_model_uri(run_id),
        "logged_model_uri": logged_model_uri,
        "epochs_run": history["epochs_run"],
        "settings_hash": state["settings_hash"],
        "settings": state["settings"],
    }


# --- command line --------------------------------------------------------------------------


def run(args: argparse.Namespace, params: Params) -> int:
    shards = args.shards or storage.join(params.work_dir, "shards")
    out = args.out or os.path.join(params.work_dir, "models", args.variant)
    checkpoint_dir = args.checkpoint_dir or os.path.join(
        params.work_dir, "checkpoints", args.variant
    )
    try:
        result = train_variant(
            params,
            args.variant,
            shards,
            out,
            args.data or params.data_dir,
            force=args.force,
            restart=args.restart,
            checkpoint_dir=checkpoint_dir,
        )
    except TrainingStateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    stop = (
        f"early stop at epoch {result.stopped_epoch}"
        if result.stopped_epoch
        else f"{result.epochs_run} epochs"
    )
    print(
        f"{result.variant}: best epoch {result.best_epoch} (val_loss {result.best_val_loss:.4f}), "
        f"{stop}, {result.wall_time_s:.0f} s -> {result.model_path}; MLflow {result.model_uri}"
    )
    return 0

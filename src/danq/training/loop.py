"""Fit DanQ or random-dropout DanQ on prepared shards, resumably, in MLflow.

The paper's recipe (Quang & Xie 2016): RMSprop (lr 1e-3, rho 0.9), batches of 100, binary
cross-entropy over the targets, early stopping on validation loss with patience 5, best
weights kept. On GPUs, mixed precision and (with several) MirroredStrategy switch on.

Every finished epoch leaves a complete checkpoint: all model variables, the dropout layers'
random-generator state included, the optimizer state, the early-stopping and dropout-redraw
state and the MLflow run id. Started again after a crash or a SIGKILL, the same call
continues from the last finished epoch in the same MLflow run, and on CPU (deterministic ops)
ends in the same weights as an uninterrupted run. A NaN or infinite loss fails the call with
TrainingDiverged before its epoch is kept (NonFiniteLossGuard): the checkpoint keeps the last
finite epoch, the MLflow run ends FAILED with no model, and run.json is not written.

out_dir holds:
    model.keras          the best weights (written when training ends)
    history.json         per-epoch loss, val_loss, samples/s, dropout rates; best and stop epoch
    training_curve.png
    run.json             MLflow run, experiment, tracking URI and model URI; written last, it
                         marks a finished run
    checkpoint/          state.json and the files it names; removed when training ends
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow

from danq import artifacts, tracking
from danq.artifacts import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    RUN_FILE,
    TAG_DEVICES,
    TAG_RESUMED_AT,
    TAG_SETTINGS_HASH,
    TAG_VARIANT,
)
from danq.config import VARIANTS, Params, Variant
from danq.data.shards import Manifest, read_manifest
from danq.data.targets import shard_target_table
from danq.errors import ConfigError, DataError, TrainingStateError
from danq.io import storage
from danq.model.dropout import DropoutPolicy, DropoutRedrawCallback, dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.training.batches import training_batches, validation_batches
from danq.training.callbacks import (
    EpochEnd,
    NonFiniteLossGuard,
    ResumableEarlyStopping,
    epoch_metrics,
)
from danq.training.checkpoint import TrainingCheckpoint
from danq.training.outputs import TrainResult, finish, recorded_genome, result_from_outputs
from danq.training.settings import (
    prepare_devices,
    settings_diff,
    settings_hash,
    training_settings,
)


@dataclass(frozen=True)
class TrainingJob:
    """One call's inputs, checked: what to train, on which shards, into which folders."""

    params: Params
    variant: Variant
    policy: DropoutPolicy
    train_dir: str
    train: Manifest
    valid_dir: str
    settings: dict[str, Any]
    fingerprint: str
    out: Path
    checkpoint: TrainingCheckpoint
    data_dir: str | None
    tags: Mapping[str, str]


def read_shards(shard_dir: str) -> tuple[str, Manifest, str, Manifest]:
    train_dir, valid_dir = storage.join(shard_dir, "train"), storage.join(shard_dir, "valid")
    train, valid = read_manifest(train_dir), read_manifest(valid_dir)
    if (train.seq_len, train.n_targets) != (valid.seq_len, valid.n_targets):
        raise DataError(
            f"{shard_dir}: train has {train.seq_len} bp x {train.n_targets} targets, valid "
            f"{valid.seq_len} bp x {valid.n_targets} targets"
        )
    return train_dir, train, valid_dir, valid


def finished_run(out: Path, fingerprint: str, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """run.json of a finished run with these settings, None when there is none; a finished
    run with other settings is an error (nothing is overwritten unless forced)."""
    if not ((out / RUN_FILE).exists() and (out / MODEL_FILE).exists()):
        return None
    run: dict[str, Any] = artifacts.read_json(out / RUN_FILE)
    if run["settings_hash"] != fingerprint:
        raise TrainingStateError(
            f"{out} holds a finished run with other settings "
            f"({settings_diff(run['settings'], settings)}); train with force to train it "
            "again, or into another output folder"
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
    tags: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train one variant into out_dir (a local folder), resuming its checkpoint if any.

    force: train again even when out_dir holds a finished run (otherwise that run is returned,
    with already_finished set). restart: discard a checkpoint and start over. checkpoint_dir:
    where the per-epoch resume state lives (default out_dir/checkpoint; the CLI keeps it
    outside out_dir because `dvc repro` empties a stage's outputs before rerunning it).
    data_dir: the source data, for the data-version tags. callbacks: extra Keras callbacks,
    called after the checkpoint of each epoch is written. tags: further MLflow run tags (a
    pipeline run's lineage).
    """
    started = time.monotonic()
    job = plan_job(params, variant, shard_dir, out_dir, data_dir, checkpoint_dir, tags)
    finished = None if force else finished_run(job.out, job.fingerprint, job.settings)
    if finished is not None:
        return result_from_outputs(job.out, finished, finished["epochs_run"], already_finished=True)
    state = saved_state(job, restart)
    model, devices = build_model(job, state)
    redraw, early_stopping = resumable_callbacks(job, state)
    resumed_from = 0 if state is None else int(state["epoch"])
    prior_wall_time = 0.0 if state is None else float(state["wall_time_s"])

    def wall_time() -> float:
        return prior_wall_time + time.monotonic() - started

    resume_run_id = None if state is None else state["run_id"]
    with (
        tracking.using(tracking.resolve_uri(params.mlflow)),
        tracking.start_run(params.mlflow.experiment, resume_run_id, variant) as run,
    ):
        state = open_run(job, state, run.info.run_id, model, devices, redraw, early_stopping)
        fit(job, model, state, devices, redraw, early_stopping, wall_time, callbacks)
        summary = finish(
            model,
            state,
            job.out,
            job.checkpoint,
            params,
            job.valid_dir,
            wall_time=wall_time(),
            run=run,
            data_dir=data_dir,
        )
    # Written once the MLflow run has ended: run.json marks the run finished.
    artifacts.write_json(job.out / RUN_FILE, summary)
    job.checkpoint.remove()
    return result_from_outputs(job.out, summary, resumed_from, already_finished=False)


def plan_job(
    params: Params,
    variant: Variant,
    shard_dir: str,
    out_dir: str,
    data_dir: str | None,
    checkpoint_dir: str | None,
    tags: Mapping[str, str] | None = None,
) -> TrainingJob:
    """Check the variant, the shards and the model's fit to them, and create out_dir."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant: {variant!r} is not one of {', '.join(VARIANTS)}")
    train_dir, train_manifest, valid_dir, valid_manifest = read_shards(shard_dir)
    params.model.check_fits(train_manifest.seq_len)
    # The names the finished model is logged with: a mismatch fails now, not after training.
    shard_target_table(valid_manifest.n_targets, valid_dir, data_dir)
    recorded_genome(params, data_dir)  # likewise a genome.build the data contradicts
    settings = training_settings(params, variant, train_manifest, valid_manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)  # the checkpoint may live elsewhere
    return TrainingJob(
        params=params,
        variant=variant,
        policy=dropout_policy(params.dropout, variant),
        train_dir=train_dir,
        train=train_manifest,
        valid_dir=valid_dir,
        settings=settings,
        fingerprint=settings_hash(settings),
        out=out,
        checkpoint=TrainingCheckpoint(
            Path(checkpoint_dir) if checkpoint_dir else out / CHECKPOINT_DIR
        ),
        data_dir=data_dir,
        tags=dict(tags or {}),
    )


def saved_state(job: TrainingJob, restart: bool) -> dict[str, Any] | None:
    """The checkpoint's state to resume from, None to start afresh; a checkpoint written with
    other settings is an error unless restart discards it."""
    checkpoint = job.checkpoint
    if (job.out / RUN_FILE).exists():
        # Trained again: a checkpoint left beside a finished run is spent. run.json goes
        # last, so until then a kill leaves out_dir a finished run.
        checkpoint.remove()
        (job.out / RUN_FILE).unlink()
    state = checkpoint.read()
    if state is not None and restart:
        checkpoint.remove()
        state = None
    if state is not None and state["settings_hash"] != job.fingerprint:
        raise TrainingStateError(
            f"{checkpoint.directory} was written with other settings "
            f"({settings_diff(state['settings'], job.settings)}); restart training to discard "
            "it and start over"
        )
    return state


def build_model(job: TrainingJob, state: Mapping[str, Any] | None) -> tuple[keras.Model, str]:
    """The compiled model on the configured devices, with the checkpoint's variables if any;
    and the description of the devices."""
    strategy, devices = prepare_devices()
    cfg = job.params.train
    with strategy.scope():
        model = build_danq(
            job.params.model, job.train.seq_len, job.train.n_targets, job.policy, cfg.seed
        )
        compile_danq(model, cfg)
        model.optimizer.build(model.trainable_variables)
    if state is not None:
        job.checkpoint.restore_variables(model, state["variables"])
    return model, devices


def resumable_callbacks(
    job: TrainingJob, state: Mapping[str, Any] | None
) -> tuple[DropoutRedrawCallback, ResumableEarlyStopping]:
    """Dropout redraws and early stopping, carried on from the checkpoint's state if any."""
    redraw = DropoutRedrawCallback(job.policy, seed=job.params.train.seed)
    early_stopping = ResumableEarlyStopping(job.params.train.patience, job.checkpoint)
    if state is not None:
        redraw.set_state(state["redraw"])
        early_stopping.set_state(state["early_stopping"])
    return redraw, early_stopping


def open_run(
    job: TrainingJob,
    state: dict[str, Any] | None,
    run_id: str,
    model: keras.Model,
    devices: str,
    redraw: DropoutRedrawCallback,
    early_stopping: ResumableEarlyStopping,
) -> dict[str, Any]:
    """Settings and tags into the active MLflow run; the first checkpoint of a new run, or
    for a resumed one the epochs its checkpoint holds that MLflow missed. Returns the state."""
    mlflow.log_params(job.settings)
    mlflow.set_tags(
        {
            TAG_VARIANT: job.variant,
            TAG_SETTINGS_HASH: job.fingerprint,
            TAG_DEVICES: devices,
            **tracking.provenance_tags(job.data_dir),
            **job.tags,
        }
    )
    if state is None:
        state = {
            "settings_hash": job.fingerprint,
            "settings": job.settings,
            "run_id": run_id,
            "epoch": 0,
            "variables": job.checkpoint.save_variables(model, 0),
            "early_stopping": early_stopping.get_state(),
            "redraw": redraw.get_state(),
            "history": [],
            "resumed_at_epochs": [],
            "wall_time_s": 0.0,
        }
        job.checkpoint.commit(state)
        return state
    state["resumed_at_epochs"].append(state["epoch"])
    mlflow.set_tag(TAG_RESUMED_AT, ",".join(map(str, state["resumed_at_epochs"])))
    logged = tracking.logged_steps(run_id, "loss")
    for record in state["history"]:
        if record["epoch"] not in logged:
            tracking.log_epoch(record["epoch"], epoch_metrics(record))
    return state


def fit(
    job: TrainingJob,
    model: keras.Model,
    state: dict[str, Any],
    devices: str,
    redraw: DropoutRedrawCallback,
    early_stopping: ResumableEarlyStopping,
    wall_time: Callable[[], float],
    callbacks: Sequence[keras.callbacks.Callback],
) -> None:
    """Announce the run, then train the epochs that remain, unless early stopping fired."""
    cfg = job.params.train
    first_epoch = state["epoch"]
    print(
        f"training {job.variant}: {model.count_params():,} parameters, "
        f"{job.train.n_source_samples:,} training samples, {devices}; "
        f"MLflow run {state['run_id']}"
        + (f", resumed after epoch {first_epoch}" if first_epoch else ""),
        flush=True,
    )
    if early_stopping.stopped_epoch is not None or first_epoch >= cfg.max_epochs:
        return
    batches, steps = training_batches(job.train_dir, cfg, first_epoch, cfg.max_epochs)
    samples_per_epoch = (
        steps * cfg.batch_size if cfg.steps_per_epoch else job.train.n_source_samples
    )
    epoch_end = EpochEnd(
        state,
        job.checkpoint,
        early_stopping,
        redraw,
        samples_per_epoch,
        cfg.max_epochs,
        show_rates=job.variant == "random_dropout",
        wall_time=wall_time,
    )
    model.fit(
        batches,
        epochs=cfg.max_epochs,
        initial_epoch=first_epoch,
        steps_per_epoch=steps,
        validation_data=validation_batches(job.valid_dir, job.params.evaluate.batch_size),
        # The guard first: a non-finite loss fails the epoch before anything of it is kept.
        callbacks=[
            NonFiniteLossGuard(state, job.checkpoint),
            redraw,
            early_stopping,
            epoch_end,
            *callbacks,
        ],
        shuffle=False,  # the dataset shuffles, seeded per epoch
        verbose=1 if sys.stdout.isatty() else 0,
    )

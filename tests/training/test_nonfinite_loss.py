"""A NaN loss fails training before its epoch is kept; finish refuses without best weights.

The project's inputs cannot carry a NaN (base codes and packed label bits) and
train.learning_rate stays below 1, so no setting diverges on cue. The fault is injected the
way a diverging run ends up: a real weight of the real model becomes NaN at a chosen point,
through train_variant's callbacks hook, and the real forward pass computes the NaN loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from danq import tracking
from danq.artifacts import HISTORY_FILE, MODEL_FILE, RUN_FILE
from danq.config import Params, parse_params
from danq.errors import TrainingDiverged, TrainingStateError
from danq.training.loop import build_model, plan_job, train_variant
from danq.training.outputs import finish

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
# 240 training samples in batches of 32: 8 steps per epoch.
TINY_TRAIN = dict(batch_size=32, max_epochs=2, patience=3, shuffle_buffer=100, seed=5)


class PoisonOutputBias(keras.callbacks.Callback):
    """Sets the output layer's bias to NaN at the start of an epoch (1-based) or, with
    at_validation, when that epoch's validation begins."""

    def __init__(self, epoch: int, at_validation: bool = False) -> None:
        super().__init__()
        self.target_epoch = epoch
        self.at_validation = at_validation
        self.epoch = 0

    def poison(self) -> None:
        bias = self.model.trainable_variables[-1]
        bias.assign(np.full(bias.shape, np.nan, dtype="float32"))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1
        if self.epoch == self.target_epoch and not self.at_validation:
            self.poison()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.epoch == self.target_epoch and self.at_validation:
            self.poison()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    tracking.client(uri).create_experiment("danq-nan", artifact_location=str(root / "artifacts"))
    return {"tracking_uri": uri, "experiment": "danq-nan"}


def tiny_params(store: dict[str, str]) -> Params:
    return parse_params({"model": TINY_MODEL, "train": TINY_TRAIN, "mlflow": store})


def logged_models(store: dict[str, str], run_id: str) -> list:
    client = tracking.client(store["tracking_uri"])
    experiment = client.get_experiment_by_name(store["experiment"]).experiment_id
    return client.search_logged_models(
        experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'"
    )


def diverged(
    params: Params,
    shards: Path,
    out: Path,
    poison: PoisonOutputBias,
    checkpoints: Path | None = None,
) -> TrainingDiverged:
    """Trains the baseline with the poison, which must end in TrainingDiverged."""
    with pytest.raises(TrainingDiverged) as err:
        train_variant(
            params,
            "baseline",
            str(shards),
            str(out),
            checkpoint_dir=str(checkpoints) if checkpoints else None,
            callbacks=[poison],
        )
    return err.value


def test_nan_loss_at_epoch_2_keeps_epoch_1_logs_no_model_and_training_resumes_from_it(
    store, tiny_shards, tmp_path
):
    params, out, checkpoints = tiny_params(store), tmp_path / "out", tmp_path / "checkpoints"
    err = diverged(params, tiny_shards, out, PoisonOutputBias(epoch=2), checkpoints)
    message = str(err)
    assert message.startswith("epoch 2, end of epoch: the training loss is nan;")
    assert f"checkpoint in {checkpoints} holds epoch 1" in message
    assert err.exit_code == 3

    state = json.loads((checkpoints / "state.json").read_text())
    assert state["epoch"] == 1 and [r["epoch"] for r in state["history"]] == [1]
    assert state["early_stopping"]["best_weights"] == "best-e0001.weights.h5"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "best-e0001.weights.h5",
        "state.json",
        "variables-e0001.npz",
    ]
    with np.load(checkpoints / state["variables"]) as saved:
        assert all(np.isfinite(saved[name]).all() for name in saved.files)
    assert not any((out / name).exists() for name in (RUN_FILE, MODEL_FILE, HISTORY_FILE))

    client = tracking.client(store["tracking_uri"])
    run_id = state["run_id"]
    assert client.get_run(run_id).info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1]
    assert logged_models(store, run_id) == []

    # The fault gone, the same call resumes from epoch 1 in the same MLflow run.
    result = train_variant(
        params, "baseline", str(tiny_shards), str(out), checkpoint_dir=str(checkpoints)
    )
    assert (result.resumed_from_epoch, result.epochs_run, result.run_id) == (1, 2, run_id)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(logged_models(store, run_id)) == 1
    history = json.loads((out / HISTORY_FILE).read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert all(math.isfinite(r[k]) for r in history["epochs"] for k in ("loss", "val_loss"))


def test_nan_validation_loss_in_epoch_1_keeps_no_epoch_and_finish_refuses(
    store, tiny_shards, tmp_path
):
    params, out = tiny_params(store), tmp_path / "out"
    err = diverged(params, tiny_shards, out, PoisonOutputBias(epoch=1, at_validation=True))
    # The training loss of epoch 1 was finite: only the validation loss is not.
    assert str(err).startswith("epoch 1, end of epoch: the validation loss is nan;")
    assert "holds epoch 0" in str(err)

    job = plan_job(params, "baseline", str(tiny_shards), str(out), None, None)
    state = job.checkpoint.read()
    assert state is not None and state["epoch"] == 0 and state["history"] == []
    assert state["early_stopping"]["best_weights"] is None
    assert not list(job.checkpoint.directory.glob("best-*"))

    model, _ = build_model(job, state)
    with (
        tracking.using(store["tracking_uri"]),
        pytest.raises(TrainingStateError, match="no best weights after 0 epochs"),
        mlflow.start_run(run_id=state["run_id"]) as run,
    ):
        finish(model, state, out, job.checkpoint, params, job.valid_dir, 0.0, run)
    assert not any((out / name).exists() for name in (RUN_FILE, MODEL_FILE, HISTORY_FILE))
    assert logged_models(store, state["run_id"]) == []

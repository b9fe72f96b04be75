"""Training: determinism, resume after SIGKILL, MLflow contents, skip/refuse rules, devices."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

import danq.model.dropout  # noqa: F401 - registers the custom layer that saved models refer to
from danq import tracking
from danq.artifacts import (
    CHECKPOINT_DIR,
    CHECKPOINT_STATE_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    RUN_FILE,
    TRAINING_CURVE_FILE,
    write_json,
)
from danq.cli.train import add_train_arguments, cmd_train
from danq.config import load_params, parse_params
from danq.errors import ConfigError, TrainingStateError
from danq.training.batches import training_batches
from danq.training.loop import finished_run, plan_job, saved_state, train_variant
from danq.training.settings import configure_devices, settings_diff, settings_hash

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
# 240 training samples in batches of 32: 8 steps per epoch.
TINY_TRAIN = dict(batch_size=32, max_epochs=3, patience=3, shuffle_buffer=100, seed=5)
DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"

# Trains like `danq train`, and when told to, stands still in the middle of an epoch, after
# the checkpoint of the epoch before it, so that the test can SIGKILL it there.
DRIVER = """
import json, sys, time
from pathlib import Path

import keras

from danq.config import parse_params
from danq.training.loop import train_variant

raw, variant, shards, out, data, hang_epoch, marker = sys.argv[1:]


class HangMidEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == int(hang_epoch) and batch == 2:
            Path(marker).touch()
            time.sleep(600)


train_variant(parse_params(json.loads(raw)), variant, shards, out, data,
              callbacks=[HangMidEpoch()])
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One SQLite tracking store for the module, its artifacts under the temporary folder."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    tracking.client(uri).create_experiment("danq-test", artifact_location=str(root / "artifacts"))
    return {"tracking_uri": uri, "experiment": "danq-test"}


@pytest.fixture(scope="module")
def data_dir(tiny_data: Path) -> str:
    """The tiny data, with a DVC pointer file beside it as `dvc add` would write."""
    Path(f"{tiny_data}.dvc").write_text(
        f"outs:\n- md5: {DATA_MD5}\n  size: 1\n  nfiles: 4\n  hash: md5\n  path: {tiny_data.name}\n"
    )
    return str(tiny_data)


def raw_params(store: dict[str, str], **train: object) -> dict:
    return {"model": TINY_MODEL, "train": {**TINY_TRAIN, **train}, "mlflow": store}


def final_weights(out: Path) -> list[np.ndarray]:
    return keras.models.load_model(out / MODEL_FILE).get_weights()


def history(out: Path) -> dict:
    return json.loads((out / HISTORY_FILE).read_text())


def losses(out: Path) -> list[tuple[float, float]]:
    return [(r["loss"], r["val_loss"]) for r in history(out)["epochs"]]


@pytest.fixture(scope="module")
def reference(store, tiny_shards, data_dir, tmp_path_factory) -> Path:
    """An uninterrupted random-dropout run: the yardstick for determinism and resume."""
    out = tmp_path_factory.mktemp("reference") / "random_dropout"
    train_variant(
        parse_params(raw_params(store)), "random_dropout", str(tiny_shards), str(out), data_dir
    )
    return out


@pytest.fixture(scope="module")
def baseline(store, tiny_shards, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "baseline"
    train_variant(parse_params(raw_params(store)), "baseline", str(tiny_shards), str(out), data_dir)
    return out


def test_epochs_shorter_than_a_pass_resume_inside_the_pass(tiny_shards):
    # 240 samples in batches of 32: 8 batches a pass; 5-step epochs: epoch 4 starts at step 15,
    # inside the second pass. A run resumed there sees the uninterrupted run's batches.
    cfg = parse_params({"train": {**TINY_TRAIN, "steps_per_epoch": 5}}).train
    train_dir = str(tiny_shards / "train")
    uninterrupted, steps = training_batches(train_dir, cfg, 0, 5)
    resumed, _ = training_batches(train_dir, cfg, 3, 5)
    uninterrupted, resumed = list(uninterrupted), list(resumed)
    assert steps == 5 and len(uninterrupted) >= 25 and len(resumed) >= 10
    for (x_a, y_a), (x_b, y_b) in zip(uninterrupted[15:25], resumed[:10], strict=True):
        np.testing.assert_array_equal(x_a, x_b)
        np.testing.assert_array_equal(y_a, y_b)


def test_cpu_keeps_float32_and_the_default_strategy():
    assert not tf.config.list_physical_devices("GPU")
    strategy = configure_devices()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_settings_fingerprint_ignores_order_and_the_diff_names_each_changed_key():
    assert settings_hash({"a": 1, "b": 2}) == settings_hash({"b": 2, "a": 1})
    assert len(settings_hash({"a": 1})) == 16 and settings_hash({"a": 1}) != settings_hash({"a": 2})
    assert settings_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == (
        "b: 2 there, 3 now; c: None there, 4 now"
    )


def test_saved_state_and_finished_run_from_other_settings_are_refused_without_flags(
    tiny_shards, tmp_path
):
    params = parse_params({"model": TINY_MODEL, "train": TINY_TRAIN})
    job = plan_job(params, "baseline", str(tiny_shards), str(tmp_path / "out"), None, None)
    assert job.checkpoint.directory == tmp_path / "out" / CHECKPOINT_DIR
    assert saved_state(job, restart=False) is None

    other = {**job.settings, "train.batch_size": 16}
    state = {"settings_hash": settings_hash(other), "settings": other, "epoch": 1}
    write_json(job.checkpoint.state_path, state)
    with pytest.raises(TrainingStateError) as err:
        saved_state(job, restart=False)
    assert "train.batch_size: 16 there, 32 now" in str(err.value)
    assert "restart training to discard it" in str(err.value) and "--" not in str(err.value)
    assert saved_state(job, restart=True) is None
    assert not job.checkpoint.directory.exists()

    assert finished_run(job.out, job.fingerprint, job.settings) is None
    (job.out / MODEL_FILE).write_text("a model")
    write_json(job.out / RUN_FILE, {"settings_hash": settings_hash(other), "settings": other})
    with pytest.raises(TrainingStateError) as err:
        finished_run(job.out, job.fingerprint, job.settings)
    assert "train.batch_size: 16 there, 32 now" in str(err.value)
    assert "train with force" in str(err.value) and "--" not in str(err.value)
    write_json(job.out / RUN_FILE, {"settings_hash": job.fingerprint, "run_id": "r"})
    assert finished_run(job.out, job.fingerprint, job.settings)["run_id"] == "r"


@pytest.mark.slow
def test_same_seed_gives_the_same_losses_and_weights(
    store, tiny_shards, data_dir, reference, tmp_path
):
    out = tmp_path / "random_dropout"
    train_variant(
        parse_params(raw_params(store)), "random_dropout", str(tiny_shards), str(out), data_dir
    )
    assert len(losses(out)) == TINY_TRAIN["max_epochs"]
    assert losses(out) == losses(reference)
    for ours, theirs in zip(final_weights(out), final_weights(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_ends_in_the_uninterrupted_weights(
    store, tiny_shards, data_dir, reference, tmp_path
):
    out = tmp_path / "random_dropout"
    marker = tmp_path / "hanging"
    raw = json.dumps(raw_params(store))
    command = [
        sys.executable,
        "-c",
        DRIVER,
        raw,
        "random_dropout",
        str(tiny_shards),
        str(out),
        data_dir,
        "2",
        str(marker),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"driver exited with {process.returncode}:\n{process.stdout.read()}")
        assert time.monotonic() < deadline, "driver never reached epoch 2"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    # Killed in epoch 2: the checkpoint holds epoch 1 and the run is not finished.
    state = json.loads((out / CHECKPOINT_DIR / CHECKPOINT_STATE_FILE).read_text())
    assert state["epoch"] == 1
    assert not (out / RUN_FILE).exists()

    result = train_variant(
        parse_params(json.loads(raw)), "random_dropout", str(tiny_shards), str(out), data_dir
    )
    assert result.resumed_from_epoch == 1
    assert result.run_id == state["run_id"]  # the same MLflow run, continued
    assert history(out)["resumed_at_epochs"] == [1]
    assert losses(out) == losses(reference)
    for ours, theirs in zip(final_weights(out), final_weights(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not (out / CHECKPOINT_DIR).exists()

    client = tracking.client(store["tracking_uri"])
    steps = [m.step for m in client.get_metric_history(result.run_id, "loss")]
    assert sorted(steps) == [1, 2, 3]  # each epoch logged once, across both processes


@pytest.mark.slow
def test_mlflow_run_holds_params_metrics_tags_and_model(store, reference, tiny_data):
    run_info = json.loads((reference / RUN_FILE).read_text())
    assert run_info["model_uri"] == f"runs:/{run_info['run_id']}/model"
    assert run_info["experiment"] == "danq-test"
    client = tracking.client(run_info["tracking_uri"])
    run_data = client.get_run(run_info["run_id"]).data

    params = run_data.params
    assert params["variant"] == "random_dropout"
    assert params["model.conv_filters"] == "8"
    assert params["train.batch_size"] == "32"
    assert params["train.learning_rate"] == "0.001"
    assert params["dropout.pool.low"] == "0.1" and params["dropout.redraw"] == "epoch"
    assert (params["data.n_train"], params["data.seq_len"], params["data.n_targets"]) == (
        "240",
        "200",
        "16",
    )

    n_epochs = TINY_TRAIN["max_epochs"]
    for metric in ("loss", "val_loss", "samples_per_s", "rate.pool_dropout", "rate.lstm_dropout"):
        steps = [m.step for m in client.get_metric_history(run_info["run_id"], metric)]
        assert steps == list(range(1, n_epochs + 1)), metric
    assert run_data.metrics["epochs_run"] == n_epochs
    assert run_data.metrics["best_epoch"] == history(reference)["best_epoch"]

    tags = run_data.tags
    assert tags["danq.variant"] == "random_dropout"
    assert tags["data.md5"] == DATA_MD5
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    for package in ("tensorflow", "keras", "mlflow", "danq"):
        assert tags[f"versions.{package}"]

    artifacts = {a.path for a in client.list_artifacts(run_info["run_id"])}
    assert {HISTORY_FILE, TRAINING_CURVE_FILE} <= artifacts
    with tracking.using(run_info["tracking_uri"]):
        model = mlflow.keras.load_model(run_info["model_uri"])
        model_info = mlflow.models.get_model_info(run_info["model_uri"])
    assert model_info.metadata["target_names"][0] == "single:CTCF"
    signature = model_info.signature
    assert signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 200, 4)
    assert signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 16)
    for ours, logged in zip(final_weights(reference), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, logged)


@pytest.mark.slow
def test_random_dropout_redraws_rates_each_epoch_and_baseline_keeps_them(reference, baseline):
    drawn = [r["rates"] for r in history(reference)["epochs"]]
    assert len({r["pool_dropout"] for r in drawn}) == len(drawn)
    assert all(0.1 <= r["pool_dropout"] <= 0.3 and 0.4 <= r["lstm_dropout"] <= 0.6 for r in drawn)
    fixed = [r["rates"] for r in history(baseline)["epochs"]]
    assert all(r == pytest.approx({"pool_dropout": 0.2, "lstm_dropout": 0.5}) for r in fixed)


def train_args(shards, out, data_dir, *extra: str) -> argparse.Namespace:
    """`danq train --variant baseline ...` as the command line parses it."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(
        [
            "--variant",
            "baseline",
            "--shards",
            str(shards),
            "--out",
            str(out),
            "--data",
            data_dir,
            *extra,
        ]
    )


@pytest.mark.slow
def test_a_finished_run_is_not_trained_again(store, tiny_shards, data_dir, baseline, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in baseline.iterdir()}
    args = train_args(tiny_shards, baseline, data_dir)
    assert cmd_train(args, parse_params(raw_params(store))) == 0
    printed = capsys.readouterr().out
    assert f"baseline: {baseline} holds a finished run (" in printed
    assert "--force trains again" in printed and "best epoch" in printed
    assert "training baseline" not in printed
    assert {p.name: p.stat().st_mtime_ns for p in baseline.iterdir()} == before


class Interrupted(Exception):
    pass


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise Interrupted


@pytest.mark.slow
def test_checkpoint_and_finished_run_from_other_settings_are_refused(
    store, tiny_shards, data_dir, baseline, tmp_path
):
    out = tmp_path / "baseline"
    with pytest.raises(Interrupted):
        train_variant(
            parse_params(raw_params(store)),
            "baseline",
            str(tiny_shards),
            str(out),
            data_dir,
            callbacks=[StopAfterFirstEpoch()],
        )
    assert json.loads((out / CHECKPOINT_DIR / CHECKPOINT_STATE_FILE).read_text())["epoch"] == 1

    other = parse_params(raw_params(store, batch_size=16))
    with pytest.raises(TrainingStateError, match=r"train\.batch_size: 32 there, 16 now") as err:
        train_variant(other, "baseline", str(tiny_shards), str(out), data_dir)
    assert "restart training to discard it" in str(err.value) and "--" not in str(err.value)
    result = train_variant(other, "baseline", str(tiny_shards), str(out), data_dir, restart=True)
    assert result.resumed_from_epoch == 0 and result.epochs_run == TINY_TRAIN["max_epochs"]
    # --force trains a finished run again, as a new MLflow run.
    first = losses(out)
    again = train_variant(other, "baseline", str(tiny_shards), str(out), data_dir, force=True)
    assert not again.already_finished and again.run_id != result.run_id
    assert losses(out) == first

    with pytest.raises(TrainingStateError, match=r"train\.max_epochs: 3 there, 4 now") as err:
        train_variant(
            parse_params(raw_params(store, max_epochs=4)),
            "baseline",
            str(tiny_shards),
            str(baseline),
            data_dir,
        )
    assert "train with force" in str(err.value) and "--" not in str(err.value)


def test_bad_settings_fail_at_start_naming_the_key(store, tiny_shards, tmp_path):
    with pytest.raises(ConfigError, match=r"dropout\.random_dropout\.pool\.high"):
        load_params(tmp_path / "absent.yaml", ["dropout.random_dropout.pool.high=1.5"])
    too_wide = parse_params({**raw_params(store), "model": {**TINY_MODEL, "conv_width": 300}})
    with pytest.raises(ConfigError, match=r"model\.conv_width"):
        train_variant(too_wide, "baseline", str(tiny_shards), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_keeps_checkpoints_outside_a_fresh_output_folder(
    store, tiny_shards, data_dir, tmp_path
):
    """dvc repro deletes a stage's outputs before it runs: out_dir may not exist yet."""
    out = tmp_path / "build" / "models" / "baseline"
    checkpoints = ["--checkpoint-dir", str(tmp_path / "checkpoints" / "baseline")]
    args = train_args(tiny_shards, out, data_dir, *checkpoints)
    assert cmd_train(args, parse_params(raw_params(store, max_epochs=1))) == 0
    assert (out / MODEL_FILE).exists() and (out / RUN_FILE).exists()
    assert not (out / CHECKPOINT_DIR).exists()

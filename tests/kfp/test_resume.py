"""A train step survives its pod: SIGKILL mid-training, run again, same run and same weights.

The pipeline test runs the whole pipeline under kfp.local.SubprocessRunner in a child process,
kills the baseline train task's process, and the run with it, with SIGKILL after its first
finished epoch (a lost node gives no warning either), then runs the pipeline again with the
same resume key: training continues from the last finished epoch in the same MLflow run and
ends in the same weights as an uninterrupted training. The gs:// tests drive danq.kfp.resume
directly against gcp-storage-emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from danq import tracking
from danq.errors import ConfigError, TrainingStateError
from danq.io import storage
from danq.kfp.resume import CheckpointMirror, run_folder, train_resumably
from danq.kfp.tasks import task_params

from .local_runs import MAX_EPOCHS, ResumedRun, child_env

TRAIN_UNINTERRUPTED = textwrap.dedent(
    """
    import json, sys
    from kfp.dsl import Artifact, Dataset, Model
    from components.train import train

    args = json.loads(sys.argv[1])
    out = args.pop("out")
    shards = Dataset(name="fit_shards", uri=args.pop("shards"), metadata={})
    train.python_func(
        shards=shards,
        model=Model(name="model", uri=out + "/model", metadata={}),
        training=Artifact(name="training", uri=out + "/training", metadata={}),
        **args,
    )
    """
)


def data_fingerprint(folder: Path) -> str:
    from danq.data.fingerprint import fingerprint_folder

    return fingerprint_folder(str(folder)).to_json()


def final_weights(model_file: Path) -> list[np.ndarray]:
    from danq.model.loading import load_model

    return [np.asarray(w) for w in load_model(str(model_file)).get_weights()]


@pytest.mark.slow
def test_sigkilled_training_resumes_in_the_same_run_with_the_same_weights(
    resumed_run: ResumedRun,
    tiny_data: Path,
    tmp_path: Path,
    tracking_store: Callable[[Path], str],
) -> None:
    assert 1 <= resumed_run.killed_at < MAX_EPOCHS
    assert resumed_run.status_after_kill == "RUNNING"  # as a dead pod leaves it
    client = tracking.client(resumed_run.uri)
    run = client.get_run(resumed_run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["danq.resumed_at_epochs"] == str(resumed_run.killed_at)
    logged = [m.step for m in client.get_metric_history(resumed_run.run_id, "loss")]
    assert logged == list(range(1, MAX_EPOCHS + 1))  # every epoch once
    experiment = client.get_experiment_by_name("danq").experiment_id
    baseline_runs = client.search_runs([experiment], "tags.`danq.variant` = 'baseline'")
    assert [r.info.run_id for r in baseline_runs] == [resumed_run.run_id]
    assert not (resumed_run.durable / "checkpoint").exists()  # spent once training ended

    # The same training, never interrupted, in a fresh process (same thread count).
    arguments = resumed_run.arguments
    reference = tmp_path / "reference"
    args = dict(
        out=str(reference),
        variant="baseline",
        shards=str(next(resumed_run.run_dir.rglob("fit_shards"))),
        checkpoint_root=str(tmp_path / "reference-checkpoints"),
        resume_key="reference",
        kfp_run_id="reference",
        image="unused:tag",
        data_fingerprint=data_fingerprint(tiny_data),
        mlflow_tracking_uri=tracking_store(tmp_path),  # the pipeline's store stays the run's
        **{
            key: arguments[key]
            for key in (
                "data_uri",
                "overrides",
                "max_epochs",
                "batch_size",
                "model_preset",
                "gpu_count",
            )
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_UNINTERRUPTED, json.dumps(args)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    resumed = final_weights(resumed_run.durable / "out" / "model.keras")
    uninterrupted = final_weights(reference / "model" / "model.keras")
    assert len(resumed) == len(uninterrupted)
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)


# --- gs:// checkpoints -------------------------------------------------------------------------


def test_run_folder_takes_only_plain_keys() -> None:
    assert run_folder("gs://b/ck", "run-1.a_b", "baseline") == "gs://b/ck/run-1.a_b/baseline"
    for bad in ("", "../x", "a/b", "-x", "x" * 129):
        with pytest.raises(ConfigError, match="resume key"):
            run_folder("gs://b/ck", bad, "baseline")


def test_mirror_keeps_one_complete_checkpoint_remotely(gcs_bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "checkpoint"
    local.mkdir()
    remote = f"{gcs_bucket}/mirror"
    mirror = CheckpointMirror(local, remote)
    mirror.push()  # nothing committed yet: nothing to copy
    assert not storage.exists(remote)
    (local / "variables-e0001.npz").write_bytes(b"one")
    (local / "state.json").write_text('{"epoch": 1}')
    mirror.push()
    (local / "variables-e0001.npz").unlink()
    (local / "variables-e0002.npz").write_bytes(b"two")
    (local / "state.json").write_text('{"epoch": 2}')
    mirror.push()
    assert storage.listdir(remote) == ["state.json", "variables-e0002.npz"]
    with storage.open_binary(f"{remote}/state.json") as fh:
        assert json.loads(fh.read()) == {"epoch": 2}


DATA = "sha256:" + "0" * 64


class Crash(Exception):
    pass


class CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch + 1 == self.epoch:
            raise Crash


@pytest.mark.slow
def test_training_resumes_from_a_gcs_checkpoint_in_the_same_run(
    gcs_bucket: str,
    tiny_shards: Path,
    tmp_path: Path,
    tiny_overrides: list[str],
    tracking_store: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = tracking_store(tmp_path)
    params = task_params(
        {"train.max_epochs": 2, "mlflow.tracking_uri": uri, "model.preset": "custom"},
        tiny_overrides,
    )
    root = f"{gcs_bucket}/checkpoints"
    folder = run_folder(root, "gcs-run", "baseline")
    from danq.training import loop

    real_train = loop.train_variant

    def crashing(*args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*kwargs["callbacks"], CrashAfterEpoch(1)]
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train_variant", crashing)
    with pytest.raises(Crash):
        train_resumably(params, "baseline", str(tiny_shards), root, "gcs-run", DATA, {"k": "v"})
    monkeypatch.setattr(loop, "train_variant", real_train)
    with storage.open_binary(f"{folder}/checkpoint/state.json") as fh:
        state = json.loads(fh.read())
    assert state["epoch"] == 1

    result, out = train_resumably(params, "baseline", str(tiny_shards), root, "gcs-run", DATA, {})
    assert (result.resumed_from_epoch, result.epochs_run, result.run_id) == (1, 2, state["run_id"])
    assert not storage.exists(f"{folder}/checkpoint")  # spent
    assert "run.json" in storage.listdir(f"{folder}/out")
    assert tracking.client(uri).get_run(result.run_id).data.tags["k"] == "v"

    # A retry after the end finds the finished run in the bucket and trains nothing.
    again, _ = train_resumably(params, "baseline", str(tiny_shards), root, "gcs-run", DATA, {})
    assert again.already_finished and again.run_id == result.run_id
    assert (out / "model.keras").exists()
    # The same key on other data continues nothing.
    with pytest.raises(TrainingStateError, match="resume_key"):
        train_resumably(params, "baseline", str(tiny_shards), root, "gcs-run", "sha256:other", {})

"""`danq study`: does random dropout converge in fewer epochs than the baseline? N seeds per arm.

Li & Huang (2020) report that random dropout converges in fewer epochs at a large batch size
(20 epochs over 14 runs against 27 over 6) and not at a small one, without statistics, and
leave open when a rate should be redrawn. The study trains every arm with the same seeds, so
its runs are paired by seed:

    arm = dropout schedule (baseline; random dropout redrawn per run, epoch or batch;
          optionally other rate ranges) x batch size

Each run is an ordinary `train_variant` run (early stopping, checkpoints, MLflow) followed by
the test-set evaluation of `danq evaluate`; all of them are grouped under one MLflow parent
run. Every random arm is compared with the baseline at its batch size, seed by seed
(danq.study.analysis), and the report written (danq.study.report). The arms and each run's
settings: danq.study.plan.

out_dir (small enough to commit) holds:
    study.json           settings fingerprint and the MLflow parent run (written first)
    runs.json, runs.csv  every run's recorded values (runs.json with the per-epoch curves the
                         endpoints are computed from; runs.csv with the endpoints)
    analysis.json, report.md, report.html, *.png   once every run is done
runs_dir/<fingerprint>/<arm>/seed<i>/ holds one run: train_variant's outputs (a checkpoint/
while unfinished), eval/ (test metrics) and record.json (written last: the run is done).

Started again, the study skips runs with a record, continues an interrupted run from its
checkpoint and starts the rest; adding seeds (study.seeds) extends a finished study. With
workers > 1 the runs are dealt out to `python -m danq.study.runner TASK_FILE` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import mlflow
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from danq import tracking
from danq.artifacts import (
    HISTORY_FILE,
    STUDY_FILE,
    STUDY_RECORD_FILE,
    TAG_STUDY_ARM,
    TAG_STUDY_ID,
    TAG_STUDY_ROLE,
    TAG_STUDY_SEED_INDEX,
    read_json,
    write_json,
)
from danq.config import Params, parse_params
from danq.data.shards import read_manifest
from danq.errors import ConfigError, StudyStateError
from danq.evaluation.scoring import evaluate_variant
from danq.io import storage
from danq.redaction import redact_uri
from danq.study.plan import Arm, planned_runs, run_params, study_arms, study_settings
from danq.study.report import write_report
from danq.training.loop import train_variant
from danq.training.settings import settings_diff, settings_hash

EVAL_DIR = "eval"  # a run's test-set evaluation, inside its folder
WORKERS_DIR = "workers"  # the worker task files, inside the runs folder


# --- the study's identity and parent run ----------------------------------------------------


def open_study(params: Params, shard_dir: str, out: Path) -> dict[str, Any]:
    """study.json of out, created with a new MLflow parent run when out holds no study.

    Raises StudyStateError when out holds a study with other settings.
    """
    settings = study_settings(params, shard_dir)
    fingerprint = settings_hash(settings)
    path = out / STUDY_FILE
    uri = tracking.resolve_uri(params.mlflow)
    client = tracking.client(uri)
    if path.exists():
        study: dict[str, Any] = read_json(path)
        if study["fingerprint"] != fingerprint:
            raise StudyStateError(
                f"{out} holds a study with other settings "
                f"({settings_diff(study['settings'], settings)}); choose another report folder"
            )
        if parent_run_exists(client, study["parent_run_id"]):
            return study
        # A committed report (or another tracking store): same settings, new parent run.
    study = start_parent_run(client, params.study.experiment, settings, fingerprint)
    # A record of where the parent run is, fit to commit: without a password or token.
    study["tracking_uri"] = redact_uri(uri)
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, study)
    return study


def start_parent_run(
    client: mlflow.MlflowClient, experiment: str, settings: dict[str, Any], fingerprint: str
) -> dict[str, Any]:
    """A new parent run with the study's settings as params; what study.json records of it."""
    experiment_id = experiment_id_of(client, experiment)
    parent = client.create_run(
        experiment_id,
        run_name=f"study-{fingerprint[:8]}",
        tags={TAG_STUDY_ID: fingerprint, TAG_STUDY_ROLE: "parent"},
    )
    client.log_batch(
        parent.info.run_id, params=[Param(key, str(value)) for key, value in settings.items()]
    )
    return {
        "fingerprint": fingerprint,
        "settings": settings,
        "parent_run_id": parent.info.run_id,
        "experiment_id": experiment_id,
    }


def experiment_id_of(client: mlflow.MlflowClient, name: str) -> str:
    """The id of the named experiment, created when the tracking store has none."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage == "deleted":
        raise StudyStateError(
            f"MLflow experiment {name!r} is deleted; restore it or set another study.experiment"
        )
    return found.experiment_id


def parent_run_exists(client: mlflow.MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


class JoinStudy(keras.callbacks.Callback):
    """Makes the training run a child of the study's parent run as soon as training starts.

    train_variant opens its own MLflow run, so the parent cannot be the active run around it;
    the mlflow.parentRunId tag is what a nested run records and what the MLflow UI groups by.
    """

    def __init__(self, tags: dict[str, str]) -> None:
        super().__init__()
        self.tags = tags

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        mlflow.set_tags(self.tags)


# --- one run --------------------------------------------------------------------------------


def run_dir(runs: Path, arm: Arm, seed_index: int) -> Path:
    return runs / arm.name / f"seed{seed_index}"


def read_record(runs: Path, arm: Arm, seed_index: int) -> dict[str, Any] | None:
    """The run's record, or None while the run is not done."""
    path = run_dir(runs, arm, seed_index) / STUDY_RECORD_FILE
    return read_json(path) if path.exists() else None


def run_record(
    arm: Arm,
    seed_index: int,
    seed: int,
    samples_per_epoch: int,
    history: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """What the analysis reads from one run: convergence, timing, loss and test metrics, and
    the per-epoch curves from which danq.study.analysis derives the convergence endpoints."""
    epochs = history["epochs"]
    best = history["best_epoch"]
    stopped = history["stopped_epoch"]
    return {
        "arm": arm.name,
        "label": arm.label,
        "schedule": arm.schedule,
        "batch_size": arm.batch_size,
        "seed_index": seed_index,
        "seed": seed,
        "run_id": metrics["mlflow_run_id"],
        "early_stopped": stopped is not None,
        "epochs_run": history["epochs_run"],
        "samples_per_epoch": samples_per_epoch,
        "best_epoch": best,
        "best_val_loss": history["best_val_loss"],
        # Training and validation time of the epochs up to the best one: model building,
        # logging and evaluation are the same for every arm and left out.
        "time_to_best_s": sum(r["epoch_time_s"] for r in epochs[:best]),
        "wall_time_s": history["wall_time_s"],
        "test_macro_auroc": metrics["overall"]["auroc"],
        "test_macro_aupr": metrics["overall"]["aupr"],
        "curves": {
            key: [r[key] for r in epochs] for key in ("loss", "val_loss", "val_auroc") if epochs
        },
    }


def train_and_record(
    params: Params, arm: Arm, seed_index: int, study: dict[str, Any], shard_dir: str, runs: Path
) -> dict[str, Any]:
    """Train (or resume) one run, evaluate it on the test split and write its record."""
    where = run_dir(runs, arm, seed_index)
    settings = run_params(params, arm, seed_index)
    tags = {
        MLFLOW_PARENT_RUN_ID: study["parent_run_id"],
        TAG_STUDY_ID: study["fingerprint"],
        TAG_STUDY_ARM: arm.name,
        TAG_STUDY_SEED_INDEX: str(seed_index),
    }
    # A fresh Keras state per run: a run gives the same result wherever it falls in the study.
    keras.backend.clear_session()
    train_variant(
        settings, arm.variant, shard_dir, str(where), params.data_dir, callbacks=[JoinStudy(tags)]
    )
    metrics = evaluate_variant(
        settings,
        arm.variant,
        model_dir=str(where),
        shard_dir=storage.join(shard_dir, "test"),
        out_dir=str(where / EVAL_DIR),
        data_dir=params.data_dir,
    )
    history = read_json(where / HISTORY_FILE)
    steps = settings.train.steps_per_epoch
    per_epoch = (
        steps * arm.batch_size
        if steps
        else read_manifest(storage.join(shard_dir, "train")).n_source_samples
    )
    record = run_record(arm, seed_index, settings.train.seed, per_epoch, history, metrics)
    write_json(where / STUDY_RECORD_FILE, record)
    return record


# --- the study ------------------------------------------------------------------------------


def run_study(
    params: Params,
    shard_dir: str,
    out_dir: str,
    runs_dir: str,
    max_runs: int | None = None,
    workers: int = 1,
) -> list[dict[str, Any]] | None:
    """Train the study's missing runs (at most max_runs of them) and, once every run is done,
    write the analysis and the report. Returns every record, or None while runs are missing.

    Runs live in runs_dir/<fingerprint>: a study with other settings never meets them. Raises
    StudyStateError when out_dir holds another study or a worker fails, ConfigError when
    max_runs or workers is below 1.
    """
    for name, value in (("max_runs", max_runs), ("workers", workers)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1")
    out = Path(out_dir)
    study = open_study(params, shard_dir, out)
    runs = Path(runs_dir) / study["fingerprint"][:12]
    plan = planned_runs(params)
    todo = [(arm, seed) for arm, seed in plan if read_record(runs, arm, seed) is None]
    print(
        f"study {study['fingerprint'][:8]}: {len(plan)} runs, {len(plan) - len(todo)} done, "
        f"{len(todo)} to go; MLflow parent run {study['parent_run_id']}",
        flush=True,
    )
    todo = todo[:max_runs]
    if workers > 1 and len(todo) > 1:
        train_in_workers(params, todo, study, shard_dir, runs, workers)
    else:
        train_runs(params, todo, study, shard_dir, runs)
    records = [read_record(runs, arm, seed) for arm, seed in plan]
    done = [r for r in records if r is not None]
    if len(done) < len(records):
        return None
    write_report(params, study, study_arms(params), done, out)
    return done


def train_runs(
    params: Params, todo: list[tuple[Arm, int]], study: dict[str, Any], shard_dir: str, runs: Path
) -> None:
    """Train the runs one after another in this process, a progress line after each."""
    started = time.monotonic()
    for count, (arm, seed) in enumerate(todo, start=1):
        record = train_and_record(params, arm, seed, study, shard_dir, runs)
        elapsed = time.monotonic() - started
        print(
            f"[{count}/{len(todo)}] {arm.name} seed {seed}: "
            f"{'stopped' if record['early_stopped'] else 'cut'} at {record['epochs_run']}, "
            f"best {record['best_epoch']} (val_loss {record['best_val_loss']:.4f}), "
            f"test AUROC {record['test_macro_auroc']:.3f}, {record['wall_time_s']:.0f} s; "
            f"{elapsed:.0f} s so far, about {elapsed / count * (len(todo) - count):.0f} s to go",
            flush=True,
        )


# One TensorFlow thread per worker: the study's small models use two cores better as two
# runs side by side than as one run with two threads.
WORKER_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def train_in_workers(
    params: Params,
    todo: list[tuple[Arm, int]],
    study: dict[str, Any],
    shard_dir: str,
    runs: Path,
    workers: int,
) -> None:
    """Deal the runs out to worker processes (`python -m danq.study.runner TASK`) and wait for all.

    Each run has its own folder and record, so workers never touch each other's files, and a
    failed or killed worker loses nothing that a rerun of the study does not pick up.
    """
    tasks = runs / WORKERS_DIR
    tasks.mkdir(parents=True, exist_ok=True)
    raw = params.model_dump(by_alias=True, mode="json")
    # The tracking URI may hold a password: it reaches the workers in their environment, which
    # tracking.resolve_uri reads when params name no URI, not in a file on disk.
    raw["mlflow"]["tracking_uri"] = None
    env = {
        **os.environ,
        **WORKER_ENV,
        tracking.TRACKING_URI_VARIABLE: tracking.resolve_uri(params.mlflow),
    }
    processes = []
    for index in range(min(workers, len(todo))):
        task = tasks / f"worker{index}.json"
        share = [[arm.name, seed] for arm, seed in todo[index::workers]]
        write_json(
            task,
            {"params": raw, "runs": share, "study": study, "shard_dir": shard_dir},
        )
        command = [sys.executable, "-m", "danq.study.runner", str(task)]
        processes.append(subprocess.Popen(command, env=env))
    failed = sum(process.wait() != 0 for process in processes)
    if failed:
        raise StudyStateError(
            f"{failed} of {len(processes)} workers failed (their output is above); "
            "run the same command again to continue"
        )


def worker_main(task_file: str) -> int:
    """A worker process: train the runs that its task file names."""
    task = read_json(task_file)
    params = parse_params(task["params"], task_file)
    arms = {arm.name: arm for arm in study_arms(params)}
    todo = [(arms[name], seed) for name, seed in task["runs"]]
    train_runs(params, todo, task["study"], task["shard_dir"], Path(task_file).parents[1])
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))

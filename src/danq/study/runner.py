"""`danq study`: does random dropout converge in fewer epochs than the baseline? N seeds per arm.

Li & Huang (2020) report that random dropout converges in fewer epochs at a large batch size
(20 epochs over 14 runs against 27 over 6) and not at a small one, without statistics, and
leave open when a rate should be redrawn. The study trains every arm with the same seeds:

    arm = dropout schedule (baseline; random dropout redrawn per run, epoch or batch;
          optionally other rate ranges) x batch size

Each run is an ordinary `train_variant` run (early stopping, checkpoints, MLflow) followed by
the test-set evaluation of `danq evaluate`; all of them are grouped under one MLflow parent
run. Every random arm is compared with the baseline at its batch size (danq.study_report).

out_dir (small enough to commit) holds:
    study.json           settings fingerprint and the MLflow parent run (written first)
    runs.json, runs.csv  every run's recorded values (runs.json with per-epoch curves)
    analysis.json, report.md, report.html, *.png   once every run is done
runs_dir/<fingerprint>/<arm>/seed<i>/ holds one run: train_variant's outputs (a checkpoint/
while unfinished), eval/ (test metrics) and record.json (written last: the run is done).

Started again, the study skips runs with a record, continues an interrupted run from its
checkpoint and starts the rest; adding seeds (study.seeds) extends a finished study.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from danq import tracking
from danq.config import SPLITS, Params, RangeSweep, parse_params
from danq.data.shards import read_manifest
from danq.errors import StudyStateError
from danq.evaluation.scoring import evaluate_variant
from danq.io import storage
from danq.training.loop import (
    HISTORY_FILE,
    TrainingStateError,
    settings_diff,
    settings_hash,
    train_variant,
    write_json,
)

STUDY_FILE = "study.json"
RECORD_FILE = "record.json"


@dataclass(frozen=True)
class Arm:
    """A dropout schedule at one batch size. ranges None: the configured random-dropout ranges."""

    schedule: str  # baseline | run | epoch | batch
    batch_size: int
    ranges: RangeSweep | None = None

    @property
    def name(self) -> str:
        """Folder-safe id, e.g. baseline-b100, epoch-b500, epoch-p0.0-0.2-l0.3-0.5-b100."""
        if self.ranges is None:
            return f"{self.schedule}-b{self.batch_size}"
        pool, lstm = self.ranges.pool, self.ranges.lstm
        return f"{self.schedule}-p{pool.low}-{pool.high}-l{lstm.low}-{lstm.high}-b{self.batch_size}"

    @property
    def label(self) -> str:
        """How the report names the arm."""
        if self.schedule == "baseline":
            what = "baseline"
        else:
            what = f"random, per {self.schedule}"
        if self.ranges is not None:
            pool, lstm = self.ranges.pool, self.ranges.lstm
            what += f" [{pool.low}, {pool.high}]/[{lstm.low}, {lstm.high}]"
        return f"{what} (batch {self.batch_size})"

    @property
    def variant(self) -> str:
        return "baseline" if self.schedule == "baseline" else "random_dropout"


def study_arms(params: Params) -> list[Arm]:
    """Every arm, grouped by batch size, the baseline first in each group."""
    cfg = params.study
    arms = []
    for batch_size in cfg.batch_sizes:
        arms += [Arm(schedule, batch_size) for schedule in cfg.arms]
        arms += [Arm(cfg.range_redraw, batch_size, sweep) for sweep in cfg.ranges]
    return arms


def baseline_of(arm: Arm) -> Arm:
    return Arm("baseline", arm.batch_size)


def run_params(params: Params, arm: Arm, seed_index: int) -> Params:
    """The full settings of one study run: the study's model and training settings, the arm's
    schedule and batch size, and seed train.seed + seed_index."""
    cfg = params.study
    raw = params.model_dump(by_alias=True, mode="json")
    raw["model"] = cfg.model.model_dump(mode="json")
    train = raw["train"]
    train.update(
        batch_size=arm.batch_size,
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        seed=params.train.seed + seed_index,
    )
    if cfg.learning_rate is not None:
        train["learning_rate"] = cfg.learning_rate
    if cfg.samples_per_epoch is not None:
        # The same samples per epoch at every batch size, so epochs compare across sizes.
        train["steps_per_epoch"] = max(1, cfg.samples_per_epoch // arm.batch_size)
    if arm.schedule != "baseline":
        raw["dropout"]["random_dropout"]["redraw"] = arm.schedule
    if arm.ranges is not None:
        raw["dropout"]["random_dropout"].update(arm.ranges.model_dump(mode="json"))
    raw["mlflow"]["experiment"] = cfg.experiment
    return parse_params(raw, "study settings")


# --- the study's identity and parent run ----------------------------------------------------


def study_settings(params: Params, shard_dir: str) -> dict[str, Any]:
    """What every run of the study shares, flat. study.seeds is left out on purpose: more
    seeds extend a study rather than make it another one."""
    study = params.study.model_dump(mode="json", exclude={"seeds"})
    manifests = {split: read_manifest(storage.join(shard_dir, split)) for split in SPLITS}
    return tracking.flatten(
        {
            "study": study,
            # The study sets these three itself.
            "train": params.train.model_dump(
                mode="json", exclude={"batch_size", "max_epochs", "patience"}
            ),
            "dropout": params.dropout.model_dump(mode="json"),
            "evaluate": {"batch_size": params.evaluate.batch_size},
            "data": {split: m.n_source_samples for split, m in manifests.items()},
        }
    )


def open_study(params: Params, shard_dir: str, out: Path) -> dict[str, Any]:
    """study.json of out, created with a new MLflow parent run when out holds no study."""
    settings = study_settings(params, shard_dir)
    fingerprint = settings_hash(settings)
    path = out / STUDY_FILE
    tracking.quiet_mlflow()
    mlflow.set_tracking_uri(tracking.resolve_uri(params.mlflow))
    client = mlflow.MlflowClient()
    if path.exists():
        study = json.loads(path.read_text())
        if study["fingerprint"] != fingerprint:
            raise StudyStateError(
                f"{out} holds a study with other settings "
                f"({settings_diff(study['settings'], settings)}); choose another --out"
            )
        if parent_run_exists(client, study["parent_run_id"]):
            return study
        # A committed report (or another tracking store): same settings, new parent run.
    experiment = mlflow.set_experiment(params.study.experiment)
    parent = client.create_run(
        experiment.experiment_id,
        run_name=f"study-{fingerprint[:8]}",
        tags={"danq.study.id": fingerprint, "danq.study.role": "parent"},
    )
    client.log_batch(
        parent.info.run_id, params=[Param(key, str(value)) for key, value in settings.items()]
    )
    study = {
        "fingerprint": fingerprint,
        "settings": settings,
        "parent_run_id": parent.info.run_id,
        "experiment_id": experiment.experiment_id,
        "tracking_uri": mlflow.get_tracking_uri(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, study)
    return study


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
    path = run_dir(runs, arm, seed_index) / RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def run_record(
    arm: Arm, seed_index: int, seed: int, history: dict[str, Any], metrics: dict[str, Any]
) -> dict[str, Any]:
    """What the analysis reads from one run: convergence, timing, loss and test metrics."""
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
        # A run that never stopped early is counted at max_epochs (right-censored).
        "epochs_to_stop": stopped if stopped is not None else history["epochs_run"],
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
        "mlflow.parentRunId": study["parent_run_id"],
        "danq.study.id": study["fingerprint"],
        "danq.study.arm": arm.name,
        "danq.study.seed_index": str(seed_index),
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
        out_dir=str(where / "eval"),
        data_dir=params.data_dir,
    )
    history = json.loads((where / HISTORY_FILE).read_text())
    record = run_record(arm, seed_index, settings.train.seed, history, metrics)
    write_json(where / RECORD_FILE, record)
    return record


# --- the study ------------------------------------------------------------------------------


def planned_runs(params: Params) -> list[tuple[Arm, int]]:
    """Seed by seed across all arms: a study cut short still has balanced arms."""
    arms = study_arms(params)
    return [(arm, seed) for seed in range(params.study.seeds) for arm in arms]


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

    Runs live in runs_dir/<fingerprint>: a study with other settings never meets them.
    """
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
    if any(r is None for r in records):
        return None
    from danq.study.report import write_report

    write_report(params, study, study_arms(params), records, out)
    return records


def train_runs(
    params: Params, todo: list[tuple[Arm, int]], study: dict[str, Any], shard_dir: str, runs: Path
) -> None:
    """Train the runs one after another in this process, a progress line after each."""
    started = time.monotonic()
    for count, (arm, seed) in enumerate(todo, start=1):
        record = train_and_record(params, arm, seed, study, shard_dir, runs)
        elapsed = time.monotonic() - started
        print(
            f"[{count}/{len(todo)}] {arm.name} seed {seed}: stop {record['epochs_to_stop']}, "
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
    tasks = runs / "workers"
    tasks.mkdir(parents=True, exist_ok=True)
    raw = params.model_dump(by_alias=True, mode="json")
    processes = []
    for index in range(min(workers, len(todo))):
        task = tasks / f"worker{index}.json"
        share = [[arm.name, seed] for arm, seed in todo[index::workers]]
        write_json(
            task,
            {"params": raw, "runs": share, "study": study, "shard_dir": shard_dir},
        )
        command = [sys.executable, "-m", "danq.study.runner", str(task)]
        processes.append(subprocess.Popen(command, env={**os.environ, **WORKER_ENV}))
    failed = sum(process.wait() != 0 for process in processes)
    if failed:
        raise StudyStateError(
            f"{failed} of {len(processes)} workers failed (their output is above); "
            "run the same command again to continue"
        )


def worker_main(task_file: str) -> int:
    """A worker process: train the runs that its task file names."""
    task = json.loads(Path(task_file).read_text())
    params = parse_params(task["params"], task_file)
    arms = {arm.name: arm for arm in study_arms(params)}
    todo = [(arms[name], seed) for name, seed in task["runs"]]
    train_runs(params, todo, task["study"], task["shard_dir"], Path(task_file).parents[1])
    return 0


def run(args: argparse.Namespace, params: Params) -> int:
    out = args.out or str(Path(params.work_dir) / "study")
    runs = args.runs or str(Path(params.work_dir) / "study-runs")
    shards = args.shards or storage.join(params.work_dir, "shards")
    for option, value in (("--max-runs", args.max_runs), ("--workers", args.workers)):
        if value is not None and value < 1:
            print(f"error: {option} must be at least 1", file=sys.stderr)
            return 2
    try:
        records = run_study(params, shards, out, runs, args.max_runs, args.workers)
    except (StudyStateError, TrainingStateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if records is None:
        print(f"study stopped with runs missing; run the same command again to continue ({out})")
        return 0
    print(f"report: {out}/report.md and report.html")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))

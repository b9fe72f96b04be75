"""What a `danq study` trains: its arms, the settings of each run, and the study's identity.

    arm = dropout schedule (baseline; random dropout redrawn per run, epoch or batch;
          optionally other rate ranges) x batch size

Seed i of every arm trains with train.seed + i. Pure functions of the settings (and the shard
manifests): nothing here trains, tracks or writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from danq import tracking
from danq.config import SPLITS, Params, RangeSweep, StudyArm, Variant, parse_params
from danq.data.shards import read_manifest
from danq.io import storage


@dataclass(frozen=True)
class Arm:
    """A dropout schedule at one batch size. ranges None: the configured random-dropout ranges."""

    schedule: StudyArm
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
    def variant(self) -> Variant:
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
    """The arm every other arm at its batch size is compared with."""
    return Arm("baseline", arm.batch_size)


def planned_runs(params: Params) -> list[tuple[Arm, int]]:
    """(arm, seed index) of every run, seed by seed across all arms: a study cut short still
    has balanced arms."""
    arms = study_arms(params)
    return [(arm, seed) for seed in range(params.study.seeds) for arm in arms]


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

"""Several seeds per variant (train.seeds): where each seed's model and evaluation live.

train.seeds = 1 (the default) keeps the single-run layout: <models>/<variant>/ holds one
training's outputs (model.keras, run.json, history.json) and <eval>/<variant>/ its evaluation.

train.seeds = N > 1: seed i (0-based) trains with train.seed + i into
<models>/<variant>/seed-<i>/, a single-run folder each, and <models>/<variant>/seeds.json lists
them. Seed i of every variant starts from the same initial weights and sees the data in the
same order, so seeds pair across variants by index. Evaluation scores each seed into
<eval>/<variant>/seeds/seed-<i>/ and copies the seed best on validation to <eval>/<variant>/,
whose metrics.json lists every seed's validation and test metrics: what promotion, the report
and `dvc metrics` read is laid out as for one seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from danq import artifacts
from danq.config import Params
from danq.errors import EvaluationError


@dataclass(frozen=True)
class SeedRun:
    index: int  # 0-based, the same index pairs seeds across variants
    seed: int  # train.seed + index
    folder: str  # relative to the variant's model folder ("" for a single run)


def seed_folder(index: int) -> str:
    return f"seed-{index}"


def seed_params(params: Params, index: int) -> Params:
    """The settings of seed index's training: train.seed + index, as a single-seed run (so
    seed 0 of N is the run that train.seeds = 1 trains)."""
    train = params.train.model_copy(update={"seed": params.train.seed + index, "seeds": 1})
    return params.model_copy(update={"train": train})


def planned_runs(params: Params) -> list[SeedRun]:
    """The runs train.seeds asks for, in seed order."""
    if params.train.seeds == 1:
        return [SeedRun(0, params.train.seed, "")]
    return [SeedRun(i, params.train.seed + i, seed_folder(i)) for i in range(params.train.seeds)]


def write_seed_index(model_dir: str | os.PathLike[str], variant: str, runs: list[SeedRun]) -> None:
    """seeds.json of a multi-seed variant folder."""
    artifacts.write_json(
        Path(model_dir, artifacts.SEEDS_FILE),
        {
            "variant": variant,
            "seeds": [{"index": r.index, "seed": r.seed, "folder": r.folder} for r in runs],
        },
    )


def trained_runs(model_dir: str | os.PathLike[str], params: Params) -> list[SeedRun]:
    """The seed runs in a variant's model folder, which must be what train.seeds asks for."""
    index_path = Path(model_dir, artifacts.SEEDS_FILE)
    if not index_path.exists():
        if params.train.seeds > 1:
            raise EvaluationError(
                f"{model_dir}: no {artifacts.SEEDS_FILE}, but train.seeds is {params.train.seeds}: "
                "train the variant with these settings first"
            )
        return [SeedRun(0, params.train.seed, "")]
    document: dict[str, Any] = artifacts.read_json(index_path)
    runs = [SeedRun(int(r["index"]), int(r["seed"]), str(r["folder"])) for r in document["seeds"]]
    if len(runs) != params.train.seeds:
        raise EvaluationError(
            f"{index_path}: {len(runs)} seeds trained, but train.seeds is "
            f"{params.train.seeds}: train the variant with these settings first"
        )
    return runs


def selected_folder(metrics: dict[str, Any]) -> str:
    """The model folder (relative to the variant's) of the seed an evaluation selected."""
    selected = metrics.get("selected_seed")
    return str(selected["folder"]) if selected else ""


def selected_model_dir(model_dir: str, eval_dir: str, params: Params) -> str:
    """The model folder that stands for the variant: its only run, or with train.seeds > 1
    the seed its evaluation selected on validation (eval_dir's metrics.json)."""
    runs = trained_runs(model_dir, params)
    if len(runs) == 1 and not runs[0].folder:
        return model_dir
    metrics_path = Path(eval_dir, artifacts.METRICS_FILE)
    if not metrics_path.exists():
        raise EvaluationError(
            f"{model_dir}: {len(runs)} seeds trained; evaluation picks the one that stands for "
            f"the variant (on validation), and {metrics_path} is missing: evaluate first"
        )
    folder = selected_folder(artifacts.read_json(metrics_path))
    if folder not in {run.folder for run in runs}:
        raise EvaluationError(
            f"{metrics_path}: selected seed folder {folder!r} is not one of {model_dir}'s seeds "
            "(an evaluation of another training): evaluate again"
        )
    return str(Path(model_dir, folder))

"""Which trained model stands for a variant: the only one, or the seed evaluation selected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danq.config import Params, TrainConfig
from danq.errors import EvaluationError
from danq.evaluation.seeds import planned_runs, selected_model_dir, write_seed_index


def two_seeds(tmp_path: Path) -> tuple[Params, Path, Path]:
    params = Params(train=TrainConfig(seeds=2))
    models, evaluation = tmp_path / "models" / "baseline", tmp_path / "eval" / "baseline"
    models.mkdir(parents=True)
    write_seed_index(models, "baseline", planned_runs(params))
    return params, models, evaluation


def test_a_single_run_stands_for_itself(tmp_path: Path) -> None:
    assert selected_model_dir(str(tmp_path), str(tmp_path / "no-eval"), Params()) == str(tmp_path)


def test_with_several_seeds_the_one_evaluation_selected(tmp_path: Path) -> None:
    params, models, evaluation = two_seeds(tmp_path)
    evaluation.mkdir(parents=True)
    metrics = {"selected_seed": {"index": 1, "seed": 1235, "folder": "seed-1"}}
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    assert selected_model_dir(str(models), str(evaluation), params) == str(models / "seed-1")


def test_several_seeds_need_their_evaluation_and_a_seed_of_theirs(tmp_path: Path) -> None:
    params, models, evaluation = two_seeds(tmp_path)
    with pytest.raises(EvaluationError, match="metrics.json is missing: evaluate first"):
        selected_model_dir(str(models), str(evaluation), params)
    evaluation.mkdir(parents=True)
    metrics = {"selected_seed": {"index": 4, "seed": 1238, "folder": "seed-4"}}
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(EvaluationError, match="'seed-4' is not one of"):
        selected_model_dir(str(models), str(evaluation), params)

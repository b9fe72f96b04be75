"""danq.study.plan: the arms of a study and the settings of each run."""

from __future__ import annotations

from pathlib import Path

import pytest

from danq.config import ConfigError, load_params
from danq.study.plan import baseline_of, planned_runs, run_params, study_arms


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("study.arms=[run, epoch]", "study.arms"),
        ("study.arms=[baseline, baseline]", "study.arms"),
        ("study.batch_sizes=[100, 100]", "study.batch_sizes"),
        ("study.seeds=1", "study.seeds"),
        ("study.primary=baseline", "study"),
        ("study.arms=[baseline, epoch]", "study"),  # the primary arm (run) is not studied
        (
            "study.ranges=[{pool: {low: 0.3, high: 0.1}, lstm: {low: 0.4, high: 0.6}}]",
            "study.ranges",
        ),
    ],
)
def test_bad_study_settings_name_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(tmp_path / "none.yaml", [override])


def test_each_arm_trains_with_its_schedule_batch_size_and_seed(tmp_path):
    sweep = "[{pool: {low: 0.0, high: 0.2}, lstm: {low: 0.3, high: 0.5}}]"
    params = load_params(
        tmp_path / "none.yaml",
        ["study.batch_sizes=[100, 250]", "study.samples_per_epoch=12000", f"study.ranges={sweep}"],
    )
    arms = {arm.name: arm for arm in study_arms(params)}
    assert list(arms)[:5] == ["baseline-b100", "run-b100", "epoch-b100", "batch-b100"] + [
        "epoch-p0.0-0.2-l0.3-0.5-b100"
    ]
    assert len(arms) == 10
    swept = run_params(params, arms["epoch-p0.0-0.2-l0.3-0.5-b250"], seed_index=3)
    assert swept.dropout.random_dropout.pool.high == 0.2
    assert swept.dropout.random_dropout.lstm.low == 0.3
    assert swept.train.batch_size == 250 and swept.train.steps_per_epoch == 48  # 12,000 samples
    assert swept.train.seed == params.train.seed + 3
    assert swept.train.learning_rate == params.study.learning_rate
    assert swept.model == params.study.model
    per_batch = run_params(params, arms["batch-b100"], seed_index=0)
    assert per_batch.dropout.random_dropout.redraw == "batch"
    assert per_batch.train.steps_per_epoch == 120
    assert per_batch.mlflow.experiment == "danq-study"


def test_runs_are_planned_seed_by_seed_across_arms(tmp_path):
    overrides = [
        "study.seeds=2",
        "study.arms=[baseline, epoch]",
        "study.primary=epoch",
        "study.batch_sizes=[100, 250]",
    ]
    params = load_params(tmp_path / "none.yaml", overrides)
    plan = [(arm.name, seed) for arm, seed in planned_runs(params)]
    assert plan == [
        ("baseline-b100", 0),
        ("epoch-b100", 0),
        ("baseline-b250", 0),
        ("epoch-b250", 0),
        ("baseline-b100", 1),
        ("epoch-b100", 1),
        ("baseline-b250", 1),
        ("epoch-b250", 1),
    ]
    arm = planned_runs(params)[3][0]
    assert (arm.label, arm.variant) == ("random, per epoch (batch 250)", "random_dropout")
    assert baseline_of(arm).name == "baseline-b250"
    assert baseline_of(arm).variant == "baseline"


def test_the_deepsea_settings_are_the_papers():
    """study/params-deepsea.yaml, used as --params: full DanQ, one-pass epochs, DanQ's
    training settings, batch sizes up to 1,000, the primary arm at the largest."""
    path = Path(__file__).parents[2] / "study" / "params-deepsea.yaml"
    params = load_params(path)
    assert params.study.seeds >= 8 and params.study.patience == 5
    primary = next(
        arm
        for arm in study_arms(params)
        if arm.schedule == params.study.primary and arm.batch_size == 1000
    )
    run = run_params(params, primary, seed_index=0)
    assert run.model.conv_filters == 320 and run.model.lstm_units == 320
    assert run.model.dense_units == 925
    assert run.train.batch_size == max(params.study.batch_sizes) == 1000
    assert run.train.steps_per_epoch is None  # an epoch is one pass
    assert (run.train.learning_rate, run.train.max_epochs, run.train.patience) == (0.001, 60, 5)
    assert run.dropout.random_dropout.redraw == "run"

"""danq.metrics against scikit-learn, on hand-built summaries, and bootstrap behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from danq.data.targets import deepsea_categories
from danq.evaluation.metrics import (
    bootstrap_rows,
    paired_bootstrap_delta,
    per_target_auroc_aupr,
    per_target_regressions,
    summarise,
)

TOLERANCE = 1e-6


def sklearn_per_target(
    y_true: np.ndarray, y_score: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: sklearn per target, NaN where a class is missing (no sklearn warnings)."""
    n_targets = y_true.shape[1]
    auroc = np.full(n_targets, np.nan)
    aupr = np.full(n_targets, np.nan)
    weights = np.ones(len(y_true)) if sample_weight is None else sample_weight
    for target in range(n_targets):
        labels, scores = y_true[:, target], y_score[:, target]
        pos_weight = weights[labels == 1].sum()
        neg_weight = weights[labels == 0].sum()
        if pos_weight > 0:
            aupr[target] = average_precision_score(labels, scores, sample_weight=sample_weight)
        if pos_weight > 0 and neg_weight > 0:
            auroc[target] = roc_auc_score(labels, scores, sample_weight=sample_weight)
    return auroc, aupr


def random_problem(
    rng: np.random.Generator, n_rows: int, n_targets: int, decimals: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 labels at varied prevalences and float32 scores, rounded to force ties."""
    prevalence = rng.uniform(0.02, 0.6, n_targets)
    y_true = (rng.random((n_rows, n_targets)) < prevalence).astype(np.uint8)
    y_score = (rng.random((n_rows, n_targets)) + 0.5 * y_true).astype(np.float32)
    if decimals is not None:
        y_score = np.round(y_score, decimals)
    return y_true, y_score


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE, equal_nan=True)


@pytest.mark.parametrize(
    ("n_rows", "n_targets", "decimals"),
    [(500, 12, None), (400, 10, 2), (300, 10, 1), (5, 6, 1), (2, 3, None), (1, 2, None)],
)
def test_matches_sklearn(n_rows: int, n_targets: int, decimals: int | None) -> None:
    rng = np.random.default_rng(n_rows * 100 + n_targets)
    y_true, y_score = random_problem(rng, n_rows, n_targets, decimals)
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    expected_auroc, expected_aupr = sklearn_per_target(y_true, y_score)
    assert auroc.shape == aupr.shape == (n_targets,)
    assert_same(auroc, expected_auroc)
    assert_same(aupr, expected_aupr)


def test_degenerate_targets() -> None:
    rng = np.random.default_rng(0)
    n_rows = 60
    y_score = np.round(rng.random((n_rows, 5)), 1)
    y_true = np.zeros((n_rows, 5), dtype=bool)
    y_true[:, 1] = True  # all positive: AUROC undefined, AP = 1
    y_true[7, 2] = True  # a single positive
    y_true[:, 3] = rng.random(n_rows) < 0.3
    y_true[:, 4] = True
    y_score[:, 4] = 0.5  # all positive and every score tied
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    assert np.isnan(auroc[0]) and np.isnan(aupr[0])  # no positives
    assert np.isnan(auroc[1]) and aupr[1] == pytest.approx(1.0)
    assert np.isnan(auroc[4]) and aupr[4] == pytest.approx(1.0)
    expected_auroc, expected_aupr = sklearn_per_target(y_true.astype(np.uint8), y_score)
    assert_same(auroc, expected_auroc)
    assert_same(aupr, expected_aupr)


def test_all_scores_tied_give_chance_auroc_and_prevalence_ap() -> None:
    y_true = np.array([[1], [0], [0], [1], [0]], dtype=np.uint8)
    auroc, aupr = per_target_auroc_aupr(y_true, np.zeros((5, 1), dtype=np.float32))
    assert auroc[0] == pytest.approx(0.5)
    assert aupr[0] == pytest.approx(0.4)


def test_blocks_and_threads_do_not_change_results() -> None:
    rng = np.random.default_rng(3)
    y_true, y_score = random_problem(rng, 200, 17, 2)
    reference = per_target_auroc_aupr(y_true, y_score, n_threads=1)
    # A budget this small forces one target per block.
    blocked = per_target_auroc_aupr(y_true, y_score, block_bytes=1, n_threads=3)
    np.testing.assert_array_equal(reference[0], blocked[0])
    np.testing.assert_array_equal(reference[1], blocked[1])


@pytest.mark.parametrize("decimals", [None, 1])
def test_integer_weights_equal_repeated_rows(decimals: int | None) -> None:
    rng = np.random.default_rng(11 if decimals is None else 12)
    y_true, y_score = random_problem(rng, 150, 8, decimals)
    y_true[:, 0] = 0
    weights = rng.integers(0, 4, len(y_true))
    auroc, aupr = per_target_auroc_aupr(y_true, y_score, weights)
    repeated = np.repeat(np.arange(len(y_true)), weights)
    repeated_auroc, repeated_aupr = per_target_auroc_aupr(y_true[repeated], y_score[repeated])
    weighted_auroc, weighted_aupr = sklearn_per_target(y_true, y_score, weights)
    assert_same(auroc, repeated_auroc)
    assert_same(aupr, repeated_aupr)
    assert_same(auroc, weighted_auroc)
    assert_same(aupr, weighted_aupr)


def test_float_weights_match_sklearn() -> None:
    rng = np.random.default_rng(5)
    y_true, y_score = random_problem(rng, 120, 6, 1)
    y_true[:, 1] = 1
    weights = rng.random(len(y_true))
    auroc, aupr = per_target_auroc_aupr(y_true, y_score, weights)
    expected_auroc, expected_aupr = sklearn_per_target(y_true, y_score, weights)
    assert_same(auroc, expected_auroc)
    assert_same(aupr, expected_aupr)


def test_rejects_bad_inputs() -> None:
    y_true = np.zeros((4, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape"):
        per_target_auroc_aupr(y_true, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        per_target_auroc_aupr(y_true, np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="0 and 1"):
        per_target_auroc_aupr(y_true + 2, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="sample_weight"):
        per_target_auroc_aupr(y_true, np.zeros((4, 2)), -np.ones(4))


def test_deepsea_categories() -> None:
    categories = deepsea_categories(919)
    assert categories is not None
    assert [len(categories[name]) for name in ("DNase", "TF", "histone")] == [125, 690, 104]
    assert categories["TF"][0] == 125 and categories["histone"][-1] == 918
    assert sorted(sum(categories.values(), [])) == list(range(919))
    assert deepsea_categories(10) is None


def test_summarise_by_hand() -> None:
    auroc = np.array([0.9, 0.7, np.nan, 0.6, np.nan, 0.8])
    aupr = np.array([0.5, 0.3, np.nan, 0.2, 1.0, 0.4])
    summary = summarise(auroc, aupr, {"first": [0, 1, 2], "rest": [3, 4, 5], "empty": [2]})
    assert summary["auroc"] == pytest.approx((0.9 + 0.7 + 0.6 + 0.8) / 4)
    assert summary["aupr"] == pytest.approx((0.5 + 0.3 + 0.2 + 0.4) / 4)
    assert (summary["n_scoreable"], summary["n_skipped"]) == (4, 2)
    assert summary["skipped"] == [2, 4]  # 4 has AP but no AUROC: skipped from both means
    first, rest, empty = (summary["categories"][name] for name in ("first", "rest", "empty"))
    assert first["auroc"] == pytest.approx(0.8) and first["aupr"] == pytest.approx(0.4)
    assert (first["n_scoreable"], first["n_skipped"]) == (2, 1)
    assert rest["auroc"] == pytest.approx(0.7) and rest["aupr"] == pytest.approx(0.3)
    assert (rest["n_scoreable"], rest["n_skipped"]) == (2, 1)
    assert math.isnan(empty["auroc"]) and empty["n_scoreable"] == 0
    assert summarise(auroc, aupr)["categories"] == {}
    with pytest.raises(ValueError, match="outside"):
        summarise(auroc, aupr, {"bad": [6]})


def test_per_target_regressions() -> None:
    metric_a = np.array([0.9, 0.8, np.nan, 0.7, 0.5])
    metric_b = np.array([0.85, 0.79, 0.1, np.nan, 0.6])
    np.testing.assert_array_equal(per_target_regressions(metric_a, metric_b), [0, 1])
    np.testing.assert_array_equal(per_target_regressions(metric_a, metric_b, 0.02), [0])


@pytest.fixture(scope="module")
def bootstrap_models() -> dict[str, np.ndarray]:
    """Labels, a pure-noise model and a model that nearly reads off the labels."""
    rng = np.random.default_rng(2024)
    n_rows, n_targets = 400, 6
    y_true = (rng.random((n_rows, n_targets)) < 0.2).astype(np.uint8)
    y_true[:, 5] = 0  # never scoreable
    return {
        "y_true": y_true,
        "noise": rng.random((n_rows, n_targets)).astype(np.float32),
        "good": (y_true + rng.normal(0, 0.3, (n_rows, n_targets))).astype(np.float32),
    }


@pytest.mark.parametrize("metric", ["auroc", "aupr"])
def test_bootstrap_identical_models(bootstrap_models: dict[str, np.ndarray], metric: str) -> None:
    y_true, noise = bootstrap_models["y_true"], bootstrap_models["noise"]
    result = paired_bootstrap_delta(y_true, noise, noise.copy(), metric, 200, 0.95, 0)
    assert result["delta"] == 0.0
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert result["n_boot"] == 200 and result["n_rows"] == len(y_true)


@pytest.mark.parametrize("metric", ["auroc", "aupr"])
def test_bootstrap_better_and_worse(bootstrap_models: dict[str, np.ndarray], metric: str) -> None:
    y_true, noise, good = (bootstrap_models[key] for key in ("y_true", "noise", "good"))
    better = paired_bootstrap_delta(y_true, noise, good, metric, 200, 0.95, 1)
    assert 0.0 < better["ci_low"] <= better["delta"] <= better["ci_high"]
    auroc_noise, aupr_noise = per_target_auroc_aupr(y_true, noise)
    auroc_good, aupr_good = per_target_auroc_aupr(y_true, good)
    noise_metric, good_metric = (
        (auroc_noise, auroc_good) if metric == "auroc" else (aupr_noise, aupr_good)
    )
    assert better["delta"] == pytest.approx(np.nanmean(good_metric) - np.nanmean(noise_metric))
    worse = paired_bootstrap_delta(y_true, good, noise, metric, 200, 0.95, 1)
    assert worse["ci_high"] < 0.0
    assert worse["delta"] == pytest.approx(-better["delta"])


def test_bootstrap_is_seeded_and_blocks_replay_resamples(
    bootstrap_models: dict[str, np.ndarray],
) -> None:
    y_true, noise, good = (bootstrap_models[key] for key in ("y_true", "noise", "good"))
    first = paired_bootstrap_delta(y_true, noise, good, "aupr", 100, 0.9, 7)
    assert paired_bootstrap_delta(y_true, noise, good, "aupr", 100, 0.9, 7) == first
    # One target per block must draw the same resamples as one block of all targets.
    blocked = paired_bootstrap_delta(y_true, noise, good, "aupr", 100, 0.9, 7, block_bytes=1)
    assert blocked.pop("targets") == first["targets"]
    assert blocked == pytest.approx({k: v for k, v in first.items() if k != "targets"}, rel=1e-12)
    assert paired_bootstrap_delta(y_true, noise, good, "aupr", 100, 0.9, 8) != first


def test_bootstrap_max_rows(bootstrap_models: dict[str, np.ndarray]) -> None:
    y_true, noise, good = (bootstrap_models[key] for key in ("y_true", "noise", "good"))
    result = paired_bootstrap_delta(y_true, noise, good, "auroc", 50, 0.95, 3, max_rows=150)
    assert result["n_rows"] == 150
    assert result == paired_bootstrap_delta(y_true, noise, good, "auroc", 50, 0.95, 3, max_rows=150)


def test_bootstrap_on_its_own_rows_only_is_the_bootstrap_on_all_rows(
    bootstrap_models: dict[str, np.ndarray],
) -> None:
    """The pipeline's evaluate keeps only bootstrap_rows' rows of its predictions: the
    bootstrap on those rows gives what it gives on all of them with max_rows."""
    y_true, noise, good = (bootstrap_models[key] for key in ("y_true", "noise", "good"))
    rows = bootstrap_rows(len(y_true), 150, seed=3)
    assert len(rows) == len(np.unique(rows)) == 150 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, bootstrap_rows(len(y_true), 150, seed=3))
    assert not np.array_equal(rows, bootstrap_rows(len(y_true), 150, seed=4))
    assert np.array_equal(bootstrap_rows(100, 150), np.arange(100))
    on_all = paired_bootstrap_delta(y_true, noise, good, "auroc", 50, 0.95, 3, max_rows=150)
    kept = paired_bootstrap_delta(
        y_true[rows], noise[rows], good[rows], "auroc", 50, 0.95, 3, max_rows=150
    )
    assert kept == on_all


def test_bootstrap_rejects_bad_arguments(bootstrap_models: dict[str, np.ndarray]) -> None:
    y_true, noise = bootstrap_models["y_true"], bootstrap_models["noise"]
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap_delta(y_true, noise, noise, "f1", 10, 0.95, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_delta(y_true, noise, noise, "auroc", 10, 1.5, 0)
    with pytest.raises(ValueError, match="scoreable"):
        paired_bootstrap_delta(y_true[:, 5:], noise[:, 5:], noise[:, 5:], "auroc", 10, 0.95, 0)


def test_bootstrap_averages_a_fixed_set_of_targets_and_redraws_resamples_lacking_a_class() -> None:
    """Targets are fixed once on all rows; a resample in which one of them lacks positives is
    redrawn (and counted), so every resample averages the same targets."""
    rng = np.random.default_rng(5)
    y_true = (rng.random((300, 3)) < 0.3).astype(np.uint8)
    y_true[:, 2] = 0
    y_true[[10, 11], 2] = 1  # two positive rows: often missing from a resample
    a = rng.random(y_true.shape)
    b = (y_true + rng.normal(0, 0.5, y_true.shape)).astype(np.float32)
    result = paired_bootstrap_delta(y_true, a, b, "auroc", 200, 0.95, 0)
    assert result["targets"] == [0, 1, 2] and result["n_excluded"] == 0
    # P(both rows missing) = (1 - 2/300)^300 ~ 0.13: some draws were redrawn.
    assert 0 < result["n_redrawn"] < 200 and result["n_boot"] == 200
    auroc_a, _ = per_target_auroc_aupr(y_true, a)
    auroc_b, _ = per_target_auroc_aupr(y_true, b)
    assert result["delta"] == pytest.approx(np.mean(auroc_b - auroc_a))
    # Asking for positives in 3 blocks (rows, here) leaves the rare target out, for good.
    fewer = paired_bootstrap_delta(y_true, a, b, "auroc", 50, 0.95, 0, min_class_blocks=3)
    assert fewer["targets"] == [0, 1] and fewer["n_excluded"] == 1 and fewer["n_redrawn"] == 0
    with pytest.raises(ValueError, match="held both classes of every compared target"):
        paired_bootstrap_delta(
            y_true, a, b, "auroc", 200, 0.95, 0, block_rows=100, max_draws_per_resample=1
        )


def test_block_bootstrap_widens_the_interval_when_neighbouring_rows_repeat() -> None:
    """Rows in runs of 10 copies (like overlapping windows): resampling rows treats them as
    10x the evidence; blocks of 10 resample the runs and give the honest, wider interval."""
    rng = np.random.default_rng(9)
    base = (rng.random((60, 4)) < 0.4).astype(np.uint8)
    y_true = np.repeat(base, 10, axis=0)
    a = np.repeat(base + rng.normal(0, 0.8, base.shape), 10, axis=0)
    b = np.repeat(base + rng.normal(0, 0.8, base.shape), 10, axis=0)
    rows = paired_bootstrap_delta(y_true, a, b, "auroc", 300, 0.95, 1)
    blocks = paired_bootstrap_delta(y_true, a, b, "auroc", 300, 0.95, 1, block_rows=10)
    assert rows["delta"] == blocks["delta"] and blocks["block_rows"] == 10
    width = blocks["ci_high"] - blocks["ci_low"]
    assert width > 2 * (rows["ci_high"] - rows["ci_low"])


def test_bootstrap_rows_keep_whole_blocks() -> None:
    rows = bootstrap_rows(1000, 200, seed=2, block_rows=50)
    assert len(rows) == 200
    starts = rows[::50]
    assert np.all(starts % 50 == 0)
    assert np.array_equal(rows, (starts[:, None] + np.arange(50)).ravel())

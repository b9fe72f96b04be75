"""Statistics of a `danq study`: per-arm summaries and every random arm against the baseline.

Each random-dropout arm is compared with the baseline at its batch size. Runs are independent
(other weights, data order and masks per seed), so the tests are two-sample, not paired:
- difference in means (arm minus baseline) with a percentile bootstrap CI: each resample draws
  the runs of both arms with replacement. Every comparison and metric replays the same
  generator, seeded by params.seed, so a report is reproducible from its runs.
- Mann-Whitney U (two-sided): U counts the (arm, baseline) run pairs in which the arm's value is
  larger, ties counting one half.
- the spread of epochs to early stop (the paper's slowest random-dropout run took 38 epochs):
  variance, SD and maximum per arm, and the Brown-Forsythe test of equal variances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from danq.config import Params
from danq.study.plan import Arm, baseline_of

# Recorded per run, compared per arm; the label is how the report names it.
METRICS = {
    "epochs_to_stop": "epochs to early stop",
    "best_epoch": "best epoch",
    "time_to_best_s": "train time to best val loss (s)",
    "best_val_loss": "best validation loss",
    "test_macro_auroc": "test macro AUROC",
    "test_macro_aupr": "test macro AUPR",
}


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, sample variance and SD (ddof 1), min and max."""
    return {
        "mean": float(values.mean()),
        "var": float(values.var(ddof=1)) if len(values) > 1 else float("nan"),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def bootstrap_mean_difference(
    baseline: np.ndarray, arm: np.ndarray, n_boot: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile CI of mean(arm) - mean(baseline), both groups resampled with replacement."""
    rng = np.random.default_rng(seed)
    base_draws = rng.integers(0, len(baseline), (n_boot, len(baseline)))
    arm_draws = rng.integers(0, len(arm), (n_boot, len(arm)))
    differences = arm[arm_draws].mean(axis=1) - baseline[base_draws].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return float(low), float(high)


def compare(
    baseline: np.ndarray, arm: np.ndarray, n_boot: int, confidence: float, seed: int
) -> dict[str, float]:
    """Difference in means with its bootstrap CI, and the Mann-Whitney U test."""
    low, high = bootstrap_mean_difference(baseline, arm, n_boot, confidence, seed)
    u, p = stats.mannwhitneyu(arm, baseline, alternative="two-sided")
    return {
        "difference": float(arm.mean() - baseline.mean()),
        "ci_low": low,
        "ci_high": high,
        "mann_whitney_u": float(u),
        "p_value": float(p),
    }


def spread_test(baseline: np.ndarray, arm: np.ndarray) -> float:
    """Brown-Forsythe p-value (Levene's test around the median), NaN where it is undefined:
    with two runs, both lie equally far from their median, and constant arms have no spread."""
    if min(len(baseline), len(arm)) < 3 or (np.ptp(baseline) == 0 and np.ptp(arm) == 0):
        return float("nan")
    return float(stats.levene(arm, baseline, center="median").pvalue)


def values_of(records: Sequence[dict[str, Any]], arm: Arm, metric: str) -> np.ndarray:
    """The metric's value in every run of the arm."""
    return np.array([float(r[metric]) for r in records if r["arm"] == arm.name])


def summarise_arm(arm: Arm, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run counts and every metric's summary for one arm."""
    mine = [r for r in records if r["arm"] == arm.name]
    return {
        "label": arm.label,
        "schedule": arm.schedule,
        "batch_size": arm.batch_size,
        "n": len(mine),
        "n_early_stopped": sum(r["early_stopped"] for r in mine),
        **{m: describe(values_of(records, arm, m)) for m in METRICS},
    }


def compare_with_baseline(
    params: Params, arm: Arm, records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Every metric of a random arm against the baseline at its batch size."""
    cfg = params.study
    base = baseline_of(arm)
    per_metric = {
        m: compare(
            values_of(records, base, m),
            values_of(records, arm, m),
            cfg.bootstrap_samples,
            cfg.confidence,
            params.seed,
        )
        for m in METRICS
    }
    spread = spread_test(
        values_of(records, base, "epochs_to_stop"), values_of(records, arm, "epochs_to_stop")
    )
    return {
        "arm": arm.name,
        "baseline": base.name,
        "label": arm.label,
        "metrics": per_metric,
        "epochs_to_stop_brown_forsythe_p": spread,
    }


def analyse(
    params: Params, arms: Sequence[Arm], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Per-arm summaries and every random arm against the baseline at its batch size."""
    cfg = params.study
    return {
        "confidence": cfg.confidence,
        "bootstrap_samples": cfg.bootstrap_samples,
        "bootstrap_seed": params.seed,
        "max_epochs": cfg.max_epochs,
        "patience": cfg.patience,
        "samples_per_epoch": cfg.samples_per_epoch,
        "arms": {arm.name: summarise_arm(arm, records) for arm in arms},
        "comparisons": [
            compare_with_baseline(params, arm, records)
            for arm in arms
            if arm.schedule != "baseline"
        ],
    }

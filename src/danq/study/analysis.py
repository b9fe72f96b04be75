"""Statistics of a `danq study`: paired by seed, one primary comparison, Holm for the rest.

Pairing. Seed i trains every arm from the same initial weights and in the same data order
(train.seed + i), so the runs of a seed are not independent: every comparison is analysed
through per-seed differences, arm minus baseline at the same seed and batch size:
- the mean difference with a paired t interval (level study.confidence);
- an exact sign-flip permutation test of the mean difference: under no effect the arm and
  the baseline are exchangeable within a seed, so each difference is as likely to carry
  either sign; all 2^n sign patterns for n <= EXACT_MAX_PAIRS seeds, else MONTE_CARLO_FLIPS
  random ones drawn with params.seed (p = (1 + hits) / (1 + draws)).

Endpoints, per run, from its per-epoch validation losses (record["curves"]["val_loss"]):
- epochs_to_target (the primary endpoint): epochs until the validation loss first comes
  within study.tolerance (0.3 %, the paper's criterion) of a target shared by all arms at
  that seed and batch size: the worst (highest) final best validation loss among them, a
  final best being that of a run that stopped early. Why this target:
  * it is symmetric in the arms, so the sign-flip test stays exact under no effect. A target
    taken from the baseline alone (its best x 1.003) is not: the best losses of two runs of
    a seed differ by a few per cent by chance, so an arm no better than the baseline would
    miss the baseline's level in about half the seeds and look slower with no effect at all;
  * stopping early buys nothing: a run that stops at a poor loss lowers the bar for every
    arm of its seed alike, and its time is when it first got there, set against when the
    other runs passed the same level (runs that keep learning pass it on the way down);
  * every run that stopped early reaches it, so it measures speed to a level all of them
    attain, and the losses they end at are reported beside it.
  A run cut by max_epochs has no final best: it does not set the target, and if it has not
  reached the target it is censored (at least max_epochs + 1 epochs).
- epochs_to_own_best: epochs until the validation loss first comes within the tolerance of
  the run's own best, the paper's criterion taken literally; it makes a run that stops early
  at a poor loss look fast, so it is secondary. Censored for a run cut by max_epochs (its best
  may still fall): at least the epoch observed.
- samples: epochs x the run's samples per epoch, the same for arm and baseline at one batch
  size, so a test on samples is the test on epochs (reported, not tested twice).
- best_val_loss and test_macro_auroc: what the runs converged to.

Censoring in a pair. A censored value v means "at least v". A pair with both runs observed
gives the difference; a pair with one censored run is ordered when the censored run's bound
is at least the other's value (it is not faster; its score is the bound's difference, so the
magnitude is a lower bound), otherwise it says nothing; both censored say nothing. Runs that
say nothing score 0, which the sign-flip statistic ignores; swapping the arm and the baseline
negates every score, so the test stays exact with censoring. The mean and t interval use the
pairs with both runs observed, the counts of the others are reported with them.

Multiplicity. One primary comparison, named before the runs: study.primary (random dropout
redrawn per run) against the baseline at the largest batch size, on epochs_to_target. Every
other arm, batch size and endpoint in SECONDARY_METRICS is secondary, Holm-adjusted as one
family; raw and adjusted p are reported.

Power. From the observed SD of the primary per-seed differences: the power to detect the
paper's effect, a PAPER_RELATIVE_REDUCTION of the baseline's mean, of the paired t test and of
the exact sign-flip test itself (simulated; lower with few seeds, its p-values being multiples
of 2 / 2^n), the difference the t test detects with 80 % power with the study's seeds, and the
seeds it would need for 80 % power at the paper's effect.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from danq.config import Params
from danq.study.plan import Arm, baseline_of

# Per-run endpoints; the label is how the report names each.
ENDPOINTS = {
    "epochs_to_target": "epochs to the common target",
    "epochs_to_own_best": "epochs to own best (within tolerance)",
    "best_val_loss": "best validation loss",
    "test_macro_auroc": "test macro AUROC",
    "test_macro_aupr": "test macro AUPR",
}
CENSORABLE = ("epochs_to_target", "epochs_to_own_best")
PRIMARY_METRIC = "epochs_to_target"
SECONDARY_METRICS = ("epochs_to_target", "epochs_to_own_best", "best_val_loss", "test_macro_auroc")
EXACT_MAX_PAIRS = 16  # 2^16 sign patterns: exact in well under a second
MONTE_CARLO_FLIPS = 100_000
# Li & Huang (2020): 27 epochs for the baseline, 20 for random dropout at the large batch size.
PAPER_EPOCHS = (27, 20)
PAPER_RELATIVE_REDUCTION = 1.0 - PAPER_EPOCHS[1] / PAPER_EPOCHS[0]
TARGET_POWER = 0.8
POWER_SIMULATIONS = 4000


# --- endpoints from learning curves ---------------------------------------------------------


def first_within(val_loss: Sequence[float], level: float) -> int | None:
    """1-based epoch at which the validation loss first is at most level (NaN never is)."""
    for epoch, loss in enumerate(val_loss, start=1):
        if loss <= level:
            return epoch
    return None


def common_targets(
    records: Sequence[dict[str, Any]], tolerance: float
) -> dict[tuple[int, int], float | None]:
    """(seed index, batch size) -> the target loss all arms there share: the worst final best
    among the runs that stopped early, widened by the tolerance; None when none stopped. A run
    whose loss was never finite (diverged) has no final best and sets no target."""
    groups: dict[tuple[int, int], list[float]] = {}
    for r in records:
        finals = groups.setdefault((r["seed_index"], r["batch_size"]), [])
        if r["early_stopped"] and math.isfinite(r["best_val_loss"]):
            finals.append(float(r["best_val_loss"]))
    return {key: max(f) * (1.0 + tolerance) if f else None for key, f in groups.items()}


def run_endpoints(
    record: dict[str, Any], target: float | None, tolerance: float, max_epochs: int
) -> dict[str, Any]:
    """The convergence endpoints of one run: epochs, samples and censoring of each."""
    val_loss = record["curves"]["val_loss"]
    per_epoch = record["samples_per_epoch"]
    own = first_within(val_loss, float(record["best_val_loss"]) * (1.0 + tolerance))
    reached = None if target is None else first_within(val_loss, target)
    ends: dict[str, Any] = {
        "target_loss": target,
        # Cut by max_epochs: the best may still fall, so the epoch is a lower bound. A loss
        # never finite (diverged) never converged: at least max_epochs + 1.
        "epochs_to_own_best": own if own is not None else max_epochs + 1,
        "epochs_to_own_best_censored": own is None or not record["early_stopped"],
        "epochs_to_target": reached if reached is not None else max_epochs + 1,
        "epochs_to_target_censored": reached is None,
    }
    for metric in CENSORABLE:
        ends[metric.replace("epochs", "samples")] = ends[metric] * per_epoch
    return ends


def with_endpoints(params: Params, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every record with its endpoints added."""
    cfg = params.study
    targets = common_targets(records, cfg.tolerance)
    return [
        {
            **r,
            **run_endpoints(
                r, targets[(r["seed_index"], r["batch_size"])], cfg.tolerance, cfg.max_epochs
            ),
        }
        for r in records
    ]


# --- paired statistics ----------------------------------------------------------------------


def pair_scores(
    arm: np.ndarray, arm_censored: np.ndarray, base: np.ndarray, base_censored: np.ndarray
) -> np.ndarray:
    """Per-pair score, arm minus baseline (any shape, elementwise): the difference when both
    are observed; when one is censored ("at least v") and its bound is not below the other's
    value, the bound's difference (a lower bound on the gap, in the known direction); else 0."""
    difference = arm - base
    both = ~arm_censored & ~base_censored
    arm_slower = arm_censored & ~base_censored & (difference >= 0)
    base_slower = base_censored & ~arm_censored & (difference <= 0)
    return np.where(both | arm_slower | base_slower, difference, 0.0)


def sign_patterns(n: int) -> np.ndarray:
    """All 2^n patterns of +-1, one per row."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=n))).reshape(-1, n)


def sign_flip_p(scores: np.ndarray, seed: int) -> np.ndarray:
    """Two-sided sign-flip p-value of the mean score, over the last axis (pairs): the share of
    sign patterns whose |sum| is at least the observed one. Exact up to EXACT_MAX_PAIRS pairs,
    Monte Carlo above. Scores of shape (..., n) give p of shape (...)."""
    scores = np.asarray(scores, dtype=float)
    n = scores.shape[-1]
    observed = np.abs(scores.sum(axis=-1))
    # Sums equal in exact arithmetic may differ in the last bits.
    slack = 1e-9 * (np.abs(scores).sum(axis=-1) + 1.0)
    if n <= EXACT_MAX_PAIRS:
        flipped = np.abs(scores @ sign_patterns(n).T)
        return np.mean(flipped >= (observed - slack)[..., None], axis=-1)
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(MONTE_CARLO_FLIPS, n))
    hits = np.sum(np.abs(scores @ signs.T) >= (observed - slack)[..., None], axis=-1)
    return (1.0 + hits) / (1.0 + MONTE_CARLO_FLIPS)


def paired_t_interval(differences: np.ndarray, confidence: float) -> tuple[float, float]:
    """Mean difference +- the t quantile x its standard error; NaN below two pairs."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2.0, n - 1) * differences.std(ddof=1) / math.sqrt(n)
    mean = float(differences.mean())
    return mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the given order; NaN stays NaN (and counts as p = 1)."""
    p = np.array([1.0 if math.isnan(x) else x for x in p_values])
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [math.nan if math.isnan(x) else float(a) for x, a in zip(p_values, adjusted)]


def paired_comparison(
    arm: Sequence[dict[str, Any]],
    base: Sequence[dict[str, Any]],
    metric: str,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """One arm against its baseline on one metric, paired by seed index."""
    by_seed = {r["seed_index"]: r for r in base}
    pairs = [(a, by_seed[a["seed_index"]]) for a in arm if a["seed_index"] in by_seed]
    a_val = np.array([float(a[metric]) for a, _ in pairs])
    b_val = np.array([float(b[metric]) for _, b in pairs])
    censorable = metric in CENSORABLE
    a_cen = np.array([censorable and a[f"{metric}_censored"] for a, _ in pairs], dtype=bool)
    b_cen = np.array([censorable and b[f"{metric}_censored"] for _, b in pairs], dtype=bool)
    scores = pair_scores(a_val, a_cen, b_val, b_cen)
    observed = ~a_cen & ~b_cen
    one = a_cen ^ b_cen
    ordered = one & (scores != 0)
    differences = (a_val - b_val)[observed]
    low, high = paired_t_interval(differences, confidence)
    return {
        "metric": metric,
        "n_pairs": len(pairs),
        "n_observed": int(observed.sum()),
        "n_ordered_arm_slower": int((ordered & (scores > 0)).sum()),
        "n_ordered_arm_faster": int((ordered & (scores < 0)).sum()),
        "n_uninformative": int((~observed & ~ordered).sum()),
        "difference": float(differences.mean()) if len(differences) else math.nan,
        # The direction the test sees, censored pairs included (0: no informative pair).
        "score_mean": float(scores.mean()) if len(pairs) else math.nan,
        "sd": float(differences.std(ddof=1)) if len(differences) > 1 else math.nan,
        "ci_low": low,
        "ci_high": high,
        "p_value": float(sign_flip_p(scores, seed)) if len(pairs) else math.nan,
        "exact": len(pairs) <= EXACT_MAX_PAIRS,
        "differences": [float(d) for d in a_val - b_val],
        "censored_pairs": [bool(c) for c in ~observed],
    }


# --- power ----------------------------------------------------------------------------------


# Gauss-Legendre nodes and weights on (0, 1), for the power integral below.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(400)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0


def paired_t_power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t test at level alpha to detect a mean difference.

    P(|T| > c) for T noncentral t, integrated over the quantiles u of the chi-square of the
    SD estimate (smooth in u at any df): scipy's noncentral t returns NaN in parts of its
    range (df 1, or far in the tail)."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    critical = stats.t.ppf(1.0 - alpha / 2.0, df)
    shift = abs(effect) / (sd / math.sqrt(n))
    bound = critical * np.sqrt(stats.chi2.ppf(_NODES, df) / df)
    rejected = stats.norm.cdf(shift - bound) + stats.norm.cdf(-shift - bound)
    return min(1.0, float(np.sum(_WEIGHTS * rejected)))


def detectable_difference(sd: float, n: int, alpha: float, power: float) -> float:
    """The smallest mean difference the paired t test detects with the given power."""
    if n < 2 or not sd > 0:
        return math.nan
    upper = sd
    while paired_t_power(upper, sd, n, alpha) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda d: paired_t_power(d, sd, n, alpha) - power, 0.0, upper))


def seeds_for_power(effect: float, sd: float, alpha: float, power: float) -> int | None:
    """The fewest seeds with which the paired t test reaches the power (None above 1,000);
    power rises with the seeds, so a bisection finds them."""
    low, high = 1, 1000
    if not sd > 0 or paired_t_power(effect, sd, high, alpha) < power:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if paired_t_power(effect, sd, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


def sign_flip_power(effect: float, sd: float, n: int, alpha: float, seed: int) -> float:
    """Power of the exact sign-flip test itself, by simulation (POWER_SIMULATIONS normal
    studies): below the t test's with few seeds, since its p-values are multiples of 2 / 2^n
    (with 5 seeds or fewer it can never reach p < 0.05). NaN above EXACT_MAX_PAIRS seeds."""
    if n < 2 or n > EXACT_MAX_PAIRS or not sd > 0:
        return math.nan
    differences = np.random.default_rng(seed).normal(effect, sd, (POWER_SIMULATIONS, n))
    # About 4 M sums at a time: 16 seeds have 65,536 sign patterns per study.
    chunks = np.array_split(differences, max(1, POWER_SIMULATIONS * 2**n // 2**22))
    return float(np.mean(np.concatenate([sign_flip_p(c, seed) for c in chunks]) < alpha))


def power_statement(
    primary: dict[str, Any], baseline_mean: float, alpha: float, seed: int
) -> dict[str, Any]:
    """Power of the primary test from the observed SD of its per-seed differences."""
    sd, n = primary["sd"], primary["n_observed"]
    effect = PAPER_RELATIVE_REDUCTION * baseline_mean
    detectable = detectable_difference(sd, n, alpha, TARGET_POWER)
    needed = seeds_for_power(effect, sd, alpha, TARGET_POWER)
    # The sign-flip test's smallest p is 2 / 2^n: below alpha only from this many seeds on.
    fewest = math.floor(math.log2(2.0 / alpha)) + 1
    return {
        "power_sign_flip_at_paper_effect": sign_flip_power(effect, sd, n, alpha, seed),
        "alpha": alpha,
        "n_seeds": n,
        "sd_of_differences": sd,
        "baseline_mean": baseline_mean,
        "paper_relative_reduction": PAPER_RELATIVE_REDUCTION,
        "paper_effect_epochs": effect,
        "power_at_paper_effect": paired_t_power(effect, sd, n, alpha),
        "target_power": TARGET_POWER,
        "detectable_difference": detectable,
        "detectable_relative": detectable / baseline_mean if baseline_mean else math.nan,
        "seeds_for_paper_effect": None if needed is None else max(needed, fewest),
    }


# --- the study ------------------------------------------------------------------------------


def describe(values: np.ndarray) -> dict[str, float]:
    """Mean, SD (ddof 1), min and max; NaN where undefined."""
    if len(values) == 0:
        return {k: math.nan for k in ("mean", "sd", "min", "max")}
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def summarise_arm(arm: Arm, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run counts and every endpoint's summary for one arm; censored runs are counted and
    left out of the means of their endpoint."""
    mine = [r for r in runs if r["arm"] == arm.name]
    summary: dict[str, Any] = {
        "label": arm.label,
        "schedule": arm.schedule,
        "batch_size": arm.batch_size,
        "n": len(mine),
        "n_early_stopped": sum(r["early_stopped"] for r in mine),
    }
    for metric in ENDPOINTS:
        kept = [r for r in mine if not r.get(f"{metric}_censored", False)]
        summary[metric] = describe(np.array([float(r[metric]) for r in kept]))
        if metric in CENSORABLE:
            summary[metric]["n_censored"] = len(mine) - len(kept)
            samples = metric.replace("epochs", "samples")
            summary[samples] = describe(np.array([float(r[samples]) for r in kept]))
    return summary


def primary_arm(params: Params, arms: Sequence[Arm]) -> Arm:
    cfg = params.study
    largest = max(cfg.batch_sizes)
    return next(
        a
        for a in arms
        if a.schedule == cfg.primary and a.ranges is None and a.batch_size == largest
    )


def analyse(
    params: Params, arms: Sequence[Arm], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Endpoints per run, per-arm summaries, the primary comparison with its power, and the
    Holm-adjusted secondary comparisons."""
    cfg = params.study
    runs = with_endpoints(params, records)
    alpha = 1.0 - cfg.confidence

    def of(arm: Arm) -> list[dict[str, Any]]:
        return [r for r in runs if r["arm"] == arm.name]

    def compare(arm: Arm, metric: str) -> dict[str, Any]:
        base = baseline_of(arm)
        result = paired_comparison(of(arm), of(base), metric, cfg.confidence, params.seed)
        return {"arm": arm.name, "baseline": base.name, "label": arm.label, **result}

    first = primary_arm(params, arms)
    primary = compare(first, PRIMARY_METRIC)
    secondary = [
        compare(arm, metric)
        for arm in arms
        if arm.schedule != "baseline"
        for metric in SECONDARY_METRICS
        if not (arm == first and metric == PRIMARY_METRIC)
    ]
    for comparison, adjusted in zip(secondary, holm([c["p_value"] for c in secondary])):
        comparison["p_holm"] = adjusted
    summaries = {arm.name: summarise_arm(arm, runs) for arm in arms}
    baseline_mean = summaries[baseline_of(first).name][PRIMARY_METRIC]["mean"]
    return {
        "confidence": cfg.confidence,
        "alpha": alpha,
        "tolerance": cfg.tolerance,
        "max_epochs": cfg.max_epochs,
        "patience": cfg.patience,
        "samples_per_epoch": cfg.samples_per_epoch,
        "seeds": cfg.seeds,
        "model": cfg.model.model_dump(mode="json"),
        "permutation_seed": params.seed,
        "arms": summaries,
        "primary": primary,
        "power": power_statement(primary, baseline_mean, alpha, params.seed),
        "secondary": secondary,
        "runs": [
            {k: r[k] for k in ("arm", "seed_index", "target_loss", *ENDPOINTS)}
            | {f"{m}_censored": r[f"{m}_censored"] for m in CENSORABLE}
            for r in runs
        ],
    }

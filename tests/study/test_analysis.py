"""danq.study.analysis by hand and by simulation: Holm, the sign-flip test, the endpoints on
hand-made learning curves, censoring, and the primary test's false-positive rate under no
effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from danq.study.analysis import (
    MONTE_CARLO_FLIPS,
    common_targets,
    detectable_difference,
    first_within,
    holm,
    pair_scores,
    paired_comparison,
    paired_t_interval,
    paired_t_power,
    run_endpoints,
    sign_flip_p,
    sign_flip_power,
)

ALPHA = 0.05
MAX_EPOCHS = 40
PATIENCE = 5


def test_holm_by_hand() -> None:
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> stays 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    # An undefined p stays undefined and still counts in the family.
    adjusted = holm([0.01, math.nan])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


def test_exact_sign_flip_by_hand() -> None:
    # The 8 sign patterns of (1, 2, 3) sum to +-6, +-4, +-2, 0, 0: |sum| >= 6 in 2 of 8.
    assert sign_flip_p(np.array([1.0, 2.0, 3.0]), seed=0) == pytest.approx(2 / 8)
    # (1, -1, 2): observed |sum| 2; the patterns of magnitudes (1, 1, 2) give |sum| 4, 0, 2,
    # 2, 2, 2, 0, 4: at least 2 in 6 of 8.
    assert sign_flip_p(np.array([1.0, -1.0, 2.0]), seed=0) == pytest.approx(6 / 8)
    # All differences zero: nothing to see.
    assert sign_flip_p(np.zeros(4), seed=0) == 1.0
    # Eight seeds all one way: 2 of 256 patterns are as extreme.
    assert sign_flip_p(np.full(8, 3.0), seed=0) == pytest.approx(2 / 256)
    # Vectorised over studies: each row is its own test.
    rows = np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 2.0]])
    assert sign_flip_p(rows, seed=0) == pytest.approx([2 / 8, 6 / 8])


def test_monte_carlo_sign_flip_above_sixteen_seeds() -> None:
    same_way = np.full(20, 1.0)  # exact p = 2 / 2^20
    p = sign_flip_p(same_way, seed=3)
    assert p == pytest.approx(1.0 / (1.0 + MONTE_CARLO_FLIPS), rel=1.0)
    noise = np.random.default_rng(1).normal(size=20)
    assert sign_flip_p(noise, seed=3) == sign_flip_p(noise, seed=3)  # seeded: reproducible
    assert 0.0 < sign_flip_p(noise, seed=3) <= 1.0


def test_paired_t_interval_and_power_by_hand() -> None:
    d = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = paired_t_interval(d, 0.95)
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3) x sd / sqrt(4)
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert all(math.isnan(x) for x in paired_t_interval(np.array([1.0]), 0.95))
    # Power rises with the effect; the detectable difference has the requested power.
    assert paired_t_power(1.0, 2.0, 8, ALPHA) < paired_t_power(3.0, 2.0, 8, ALPHA)
    assert paired_t_power(0.0, 2.0, 8, ALPHA) == pytest.approx(ALPHA, abs=1e-5)
    mdd = detectable_difference(2.0, 8, ALPHA, 0.8)
    assert paired_t_power(mdd, 2.0, 8, ALPHA) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(paired_t_power(1.0, 0.0, 8, ALPHA))
    # The exact sign-flip test: with 5 seeds its smallest p is 2/32 > 0.05, so it never
    # rejects; with 8 it is close to the t test; with no effect it rejects at about alpha.
    assert sign_flip_power(3.0, 1.0, 5, ALPHA, seed=0) == 0.0
    assert sign_flip_power(1.0, 1.5, 8, ALPHA, seed=0) == pytest.approx(
        paired_t_power(1.0, 1.5, 8, ALPHA), abs=0.05
    )
    assert 0.03 <= sign_flip_power(0.0, 1.5, 8, ALPHA, seed=0) <= 0.07


# --- endpoints on hand-made learning curves -------------------------------------------------

# Keeps learning: 0.40 at epoch 3, best 0.300 at epoch 12, stopped at 17 (patience 5).
STEADY = [0.60, 0.45, 0.40, 0.37, 0.35, 0.34, 0.33, 0.32, 0.31, 0.305, 0.302, 0.300]
STEADY += [0.301, 0.303, 0.302, 0.304, 0.305]
# Stalls at a poor loss: best 0.410 at epoch 4, stopped at 9.
PREMATURE = [0.60, 0.50, 0.42, 0.410, 0.412, 0.411, 0.413, 0.412, 0.411]


def record(arm: str, curve: list[float], early_stopped: bool = True, seed: int = 0) -> dict:
    return {
        "arm": arm,
        "seed_index": seed,
        "batch_size": 100,
        "early_stopped": early_stopped,
        "best_val_loss": min(curve),
        "samples_per_epoch": 6000,
        "curves": {"val_loss": curve},
    }


def endpoints(records: list[dict], tolerance: float = 0.003) -> list[dict]:
    targets = common_targets(records, tolerance)
    return [
        {**r, **run_endpoints(r, targets[(r["seed_index"], 100)], tolerance, MAX_EPOCHS)}
        for r in records
    ]


def test_first_within() -> None:
    assert first_within([1.0, 0.5, 0.401, 0.400, 0.41], 0.400 * 1.003) == 3
    assert first_within([1.0, math.nan, 0.5], 0.6) == 3  # NaN never counts
    assert first_within([1.0, 0.9], 0.5) is None


def test_a_run_stopping_early_at_a_poor_loss_does_not_look_fast() -> None:
    steady, premature = endpoints([record("baseline", STEADY), record("run", PREMATURE)])
    # Epochs to early stop (the old endpoint) and the own-best criterion reward the stall.
    assert len(PREMATURE) < len(STEADY)
    assert premature["epochs_to_own_best"] == 4 < steady["epochs_to_own_best"] == 12
    # The common target is the worse final best (0.410 x 1.003): the steady run passed it at
    # epoch 3, before the stalled run got there at epoch 4.
    assert steady["target_loss"] == premature["target_loss"] == pytest.approx(0.410 * 1.003)
    assert steady["epochs_to_target"] == 3
    assert premature["epochs_to_target"] == 4
    assert not steady["epochs_to_target_censored"] and not premature["epochs_to_target_censored"]
    assert premature["samples_to_target"] == 4 * 6000
    # Its final loss is reported beside it.
    assert premature["best_val_loss"] > steady["best_val_loss"]


def test_runs_cut_by_max_epochs_are_censored_not_counted_at_max_epochs() -> None:
    # Still improving when cut at max_epochs: never reached 0.300 x 1.003 and has no final best.
    slow = [0.60 - 0.005 * e for e in range(MAX_EPOCHS)]  # ends at 0.405
    cut_done = [0.60 - 0.01 * e for e in range(MAX_EPOCHS)]  # reaches the target, then cut
    steady, slow_run, cut_run = endpoints(
        [
            record("baseline", STEADY),
            record("run", slow, early_stopped=False),
            record("epoch", cut_done, early_stopped=False),
        ]
    )
    # Only the stopped run sets the target; the cut runs do not lower or raise it.
    assert steady["target_loss"] == pytest.approx(0.300 * 1.003)
    assert slow_run["epochs_to_target_censored"]
    assert slow_run["epochs_to_target"] == MAX_EPOCHS + 1  # at least this many
    assert not cut_run["epochs_to_target_censored"]
    assert cut_run["epochs_to_target"] == first_within(cut_done, 0.300 * 1.003)
    # Its own best may still fall: censored at the epoch seen.
    assert slow_run["epochs_to_own_best_censored"] and not steady["epochs_to_own_best_censored"]
    # A run whose loss went NaN stops early (NaN never improves) but sets no target and
    # never reaches one.
    diverged, steady_again = endpoints([record("run", [math.nan] * 6), record("baseline", STEADY)])
    assert steady_again["target_loss"] == pytest.approx(0.300 * 1.003)
    assert diverged["epochs_to_target_censored"] and diverged["epochs_to_own_best_censored"]
    assert diverged["epochs_to_target"] == diverged["epochs_to_own_best"] == MAX_EPOCHS + 1
    # A seed at which no run stopped early has no target: all its runs are censored.
    (alone,) = endpoints([record("run", slow, early_stopped=False, seed=1)])
    assert alone["target_loss"] is None and alone["epochs_to_target_censored"]


def test_censored_pairs_are_ordered_or_uninformative() -> None:
    # Censored: "at least this many epochs".
    cases = [  # arm, arm censored, baseline, baseline censored -> score
        (10.0, False, 12.0, False, -2.0),  # both observed: the difference
        (41.0, True, 15.0, False, 26.0),  # arm at least 41 vs 15: slower by at least 26
        (41.0, True, 41.0, True, 0.0),  # both censored: uninformative
        (5.0, False, 41.0, True, -36.0),  # baseline at least 41 vs 5: arm faster
        (12.0, True, 30.0, False, 0.0),  # arm at least 12 vs 30: either way
        (20.0, False, 25.0, True, -5.0),  # baseline at least 25 vs 20: arm faster
        (30.0, False, 12.0, True, 0.0),  # baseline at least 12 vs 30: either way
    ]
    arm, arm_c, base, base_c, expected = (np.array(column) for column in zip(*cases))
    scores = pair_scores(arm, arm_c.astype(bool), base, base_c.astype(bool))
    assert scores.tolist() == expected.tolist()
    # Swapping arm and baseline negates every score: the sign-flip test stays exact.
    swapped = pair_scores(base, base_c.astype(bool), arm, arm_c.astype(bool))
    assert swapped.tolist() == (-scores).tolist()


def test_paired_comparison_counts_censored_pairs() -> None:
    def runs(values: list[float], censored: list[bool]) -> list[dict]:
        return [
            {"seed_index": i, "epochs_to_target": v, "epochs_to_target_censored": c}
            for i, (v, c) in enumerate(zip(values, censored))
        ]

    arm = runs([10, 41, 41, 9], [False, True, True, False])
    base = runs([12, 15, 41, 11], [False, False, True, False])
    c = paired_comparison(arm, base, "epochs_to_target", 0.95, seed=0)
    assert (c["n_pairs"], c["n_observed"], c["n_uninformative"]) == (4, 2, 1)
    assert (c["n_ordered_arm_slower"], c["n_ordered_arm_faster"]) == (1, 0)
    assert c["difference"] == pytest.approx(-2.0)  # the two observed pairs
    # Scores (-2, +26, 0, -2), |sum| 22: every pattern has |+-26 +- 2 +- 2| >= 22.
    assert c["p_value"] == pytest.approx(1.0)
    assert c["exact"]


# --- the primary test under no effect -------------------------------------------------------


def simulate_curves(rng: np.random.Generator, shape: tuple[int, ...], seed_rate: np.ndarray):
    """Learning curves with early stopping (patience 5) for runs of the given shape, all from
    the same distribution given their seed's rate: exponential decay to a floor, plus noise."""
    floor = 0.30 + 0.01 * rng.standard_normal(shape)
    rate = seed_rate * np.exp(0.15 * rng.standard_normal(shape))
    epochs = np.arange(1, MAX_EPOCHS + 1)
    clean = floor[..., None] + 0.3 * np.exp(-rate[..., None] * epochs)
    curves = clean + 0.003 * rng.standard_normal((*shape, MAX_EPOCHS))
    best = np.full(shape, np.inf)
    wait = np.zeros(shape, dtype=int)
    length = np.full(shape, MAX_EPOCHS)
    running = np.ones(shape, dtype=bool)
    for e in range(MAX_EPOCHS):
        improved = curves[..., e] < best
        best = np.where(running & improved, curves[..., e], best)
        wait = np.where(running & ~improved, wait + 1, np.where(running, 0, wait))
        stop = running & (wait >= PATIENCE)
        length = np.where(stop, e + 1, length)
        running &= ~stop
    return curves, length, ~running


def test_primary_false_positive_rate_on_paired_normal_data() -> None:
    """2,000 simulated studies of 8 seeds, no effect: seed effects shared by arm and
    baseline, continuous and then integer epochs with censoring at max_epochs."""
    rng = np.random.default_rng(2024)
    studies, seeds = 2000, 8
    seed_effect = rng.normal(25.0, 6.0, (studies, seeds, 1))
    runs = seed_effect + rng.normal(0.0, 4.0, (studies, seeds, 2))
    arm, base = runs[..., 0], runs[..., 1]
    never = np.zeros_like(arm, dtype=bool)
    p = sign_flip_p(pair_scores(arm, never, base, never), seed=0)
    assert 0.03 <= np.mean(p < ALPHA) <= 0.07
    # Epochs are integers (ties), and slow runs hit max_epochs = 34: 1 run in 10 censored.
    # The exact test is conservative with ties and censoring (0.027 with 1 run in 4 censored).
    epochs = np.ceil(runs)
    censored = epochs > 34
    epochs = np.where(censored, 35.0, epochs)
    assert 0.05 < censored.mean() < 0.2
    scores = pair_scores(epochs[..., 0], censored[..., 0], epochs[..., 1], censored[..., 1])
    rate = np.mean(sign_flip_p(scores, seed=0) < ALPHA)
    assert 0.03 <= rate <= 0.07


def test_primary_false_positive_rate_from_learning_curves() -> None:
    """The whole primary endpoint under no effect: both arms' curves from one distribution,
    the common target, censoring by max_epochs, the paired sign-flip test; 2,000 studies."""
    rng = np.random.default_rng(7)
    studies, seeds = 2000, 8
    # Slow seeds: some runs are cut by max_epochs and censored.
    seed_rate = np.exp(rng.normal(np.log(0.2), 0.5, (studies, seeds, 1)))
    curves, length, stopped = simulate_curves(rng, (studies, seeds, 2), seed_rate)
    padded = np.where(np.arange(MAX_EPOCHS) < length[..., None], curves, np.nan)
    best = np.nanmin(padded, axis=-1)
    finals = np.where(stopped, best, -np.inf).max(axis=-1, keepdims=True)
    target = np.where(np.isfinite(finals), finals * 1.003, -np.inf)
    hit = padded <= target[..., None]
    reached = hit.any(axis=-1)
    epochs = np.where(reached, hit.argmax(axis=-1) + 1.0, MAX_EPOCHS + 1.0)
    censored = ~reached
    assert censored.mean() > 0.02  # censoring is present
    # The same as the record-by-record code on a sample of runs.
    for s, i, j in [(0, 0, 0), (1, 2, 1), (5, 7, 0)]:
        r = {
            "curves": {"val_loss": list(padded[s, i, j, : length[s, i, j]])},
            "best_val_loss": best[s, i, j],
            "early_stopped": bool(stopped[s, i, j]),
            "samples_per_epoch": 1,
        }
        t = target[s, i, 0]
        ends = run_endpoints(r, t if np.isfinite(t) else None, 0.003, MAX_EPOCHS)
        assert ends["epochs_to_target"] == epochs[s, i, j]
        assert ends["epochs_to_target_censored"] == censored[s, i, j]
    scores = pair_scores(epochs[..., 1], censored[..., 1], epochs[..., 0], censored[..., 0])
    rate = np.mean(sign_flip_p(scores, seed=0) < ALPHA)
    assert 0.03 <= rate <= 0.07

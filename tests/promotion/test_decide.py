"""The blessing decision on constructed cases: floors, paired bootstrap vs champion, regressions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from danq.config import PromoteConfig
from danq.errors import CandidateError
from danq.promotion.decide import (
    CandidateEval,
    ChampionEval,
    array_md5,
    decide,
    registry_tags,
)

N_ROWS, N_TARGETS = 2000, 10
CFG = PromoteConfig(bootstrap_samples=200)


@pytest.fixture(scope="module")
def task() -> tuple[np.ndarray, np.ndarray]:
    """Labels from a latent signal; a model's scores are that signal plus noise."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N_ROWS, N_TARGETS))
    labels = (latent + 0.5 * rng.normal(size=latent.shape) > 0.8).astype(np.uint8)
    return labels, latent


def scores(latent: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Less noise, better model."""
    rng = np.random.default_rng(seed)
    return (latent + noise * rng.normal(size=latent.shape)).astype(np.float32)


def candidate(variant: str, y_score: np.ndarray) -> CandidateEval:
    return CandidateEval(variant, f"runs:/{variant}-run/model", y_score, run_id=f"{variant}-run")


@pytest.fixture(scope="module")
def champion(task) -> ChampionEval:
    return ChampionEval(
        "3",
        "models:/danq/3",
        scores(task[1], 1.0, seed=1),
        tags={"danq.variant": "baseline", "data.md5": "abc"},
    )


def test_better_candidate_is_blessed_and_promoted(task, champion):
    labels, latent = task
    blessing = decide(
        labels, [candidate("random_dropout", scores(latent, 0.6, 2))], champion, CFG, seed=7
    )
    verdict = blessing.verdict("random_dropout")
    assert verdict.blessed and verdict.floors_passed
    assert verdict.vs_champion.ci_low > 0 and verdict.vs_champion.regressed == []
    assert (blessing.decision, blessing.chosen) == ("promote", "random_dropout")
    assert verdict.reason.startswith(
        "random_dropout: validation macro AUPR 0.715 vs champion 0.580, +0.13"
    )
    assert "(95% CI +0.1" in verdict.reason
    assert verdict.reason.endswith(
        "0 of 10 targets regressed by more than 0.01 (cap 20%) -> blessed"
    )
    assert blessing.reason == (
        "random_dropout promoted: best validation macro AUPR 0.715 of 1 blessed "
        "candidate(s); replaces version 3"
    )


def test_worse_candidate_keeps_the_champion(task, champion):
    labels, latent = task
    blessing = decide(labels, [candidate("baseline", scores(latent, 1.5, 3))], champion, CFG)
    verdict = blessing.verdict("baseline")
    assert verdict.floors_passed and not verdict.blessed
    assert verdict.vs_champion.ci_high < 0
    assert "worse than the champion (CI below zero)" in verdict.reason
    assert (blessing.decision, blessing.chosen) == ("keep", None)
    assert blessing.reason == "no candidate blessed; champion version 3 stays"


@pytest.mark.parametrize("jitter", [0.0, 0.05])
def test_tied_or_insignificant_difference_is_not_blessed(task, champion, jitter):
    labels, _ = task
    rng = np.random.default_rng(4)
    tied = (champion.y_score + jitter * rng.normal(size=champion.y_score.shape)).astype(np.float32)
    blessing = decide(labels, [candidate("baseline", tied)], champion, CFG)
    verdict = blessing.verdict("baseline")
    assert verdict.vs_champion.ci_low <= 0 <= verdict.vs_champion.ci_high
    assert not verdict.blessed and "the CI includes zero" in verdict.reason
    assert blessing.decision == "keep"


def test_floor_failure_is_not_blessed_nor_compared(task, champion):
    labels, _ = task
    noise = np.random.default_rng(5).random(labels.shape).astype(np.float32)
    blessing = decide(labels, [candidate("baseline", noise)], champion, CFG)
    verdict = blessing.verdict("baseline")
    assert not verdict.floors_passed and not verdict.blessed
    assert verdict.vs_champion is None
    assert "floor 0.600" in verdict.reason and "below a floor" in verdict.reason


def test_too_many_regressed_targets_is_not_blessed(task, champion):
    """Much better on 7 targets, worse on 3: the macro CI excludes zero but 30% > cap 20%."""
    labels, latent = task
    mixed = np.hstack([scores(latent, 0.3, 5)[:, :7], scores(latent, 1.8, 6)[:, 7:]])
    blessing = decide(labels, [candidate("random_dropout", mixed)], champion, CFG)
    verdict = blessing.verdict("random_dropout")
    assert verdict.vs_champion.ci_low > 0
    assert verdict.vs_champion.regressed == [7, 8, 9]
    assert verdict.vs_champion.regressed_fraction == pytest.approx(0.3)
    assert not verdict.blessed
    assert "3 of 10 targets regressed by more than 0.01 (cap 20%)" in verdict.reason
    assert verdict.reason.endswith("not blessed: too many targets regressed")
    loose = decide(
        labels,
        [candidate("random_dropout", mixed)],
        champion,
        CFG.model_copy(update={"max_regressed_fraction": 0.3}),
    )
    assert loose.verdict("random_dropout").blessed


def test_without_champion_floors_alone_decide(task):
    labels, latent = task
    weak = scores(latent, 1.5, 3)  # far worse than any champion above, but over the floors
    noise = np.random.default_rng(5).random(labels.shape).astype(np.float32)
    blessing = decide(
        labels, [candidate("baseline", noise), candidate("random_dropout", weak)], None, CFG
    )
    assert [v.blessed for v in blessing.candidates] == [False, True]
    assert blessing.verdict("random_dropout").vs_champion is None
    assert blessing.verdict("random_dropout").reason.endswith("no champion yet -> blessed")
    assert (blessing.decision, blessing.chosen, blessing.champion) == (
        "promote",
        "random_dropout",
        None,
    )
    assert blessing.reason.endswith("first champion")


def test_best_of_two_blessed_is_chosen_and_candidates_are_compared(task, champion):
    labels, latent = task
    good, best = scores(latent, 0.6, 2), scores(latent, 0.3, 8)
    blessing = decide(
        labels,
        [candidate("baseline", best), candidate("random_dropout", good)],
        champion,
        CFG,
        seed=11,
    )
    assert all(v.blessed for v in blessing.candidates)
    assert blessing.chosen == "baseline"
    [comparison] = blessing.comparisons
    assert (comparison["a"], comparison["b"], comparison["metric"]) == (
        "baseline",
        "random_dropout",
        "aupr",
    )
    assert comparison["ci_high"] < 0  # random_dropout - baseline: worse here
    again = decide(
        labels,
        [candidate("baseline", best), candidate("random_dropout", good)],
        champion,
        CFG,
        seed=11,
    )
    assert again.comparisons == blessing.comparisons  # seeded


def test_floors_and_metric_follow_the_config(task):
    labels, latent = task
    cfg = PromoteConfig(bootstrap_samples=50, metric="auroc", min_macro_auroc=0.95)
    blessing = decide(labels, [candidate("baseline", scores(latent, 0.6, 2))], None, cfg)
    assert not blessing.verdict("baseline").floors_passed
    assert blessing.thresholds["min_macro_auroc"] == 0.95
    assert blessing.thresholds["metric"] == "auroc"


def test_blessing_document_schema(task, champion):
    labels, latent = task
    blessing = decide(labels, [candidate("baseline", scores(latent, 0.6, 2))], champion, CFG)
    document = json.loads(json.dumps(blessing.to_dict()))
    assert set(document) == {
        "decision",
        "chosen",
        "reason",
        "metric",
        "decided_on",
        "reported_on",
        "rows",
        "interval",
        "candidates",
        "champion",
        "comparisons",
        "seed_comparisons",
        "thresholds",
        "seed",
        "created_at",
        "registry",
    }
    assert (document["decided_on"], document["reported_on"]) == ("valid", "test")
    assert document["rows"] == {
        "split": "valid",
        "n": N_ROWS,
        "n_targets": N_TARGETS,
        "labels_md5": array_md5(labels),
        "block_rows": 50,  # "auto" without the data at hand: DeepSEA's blocks
    }
    assert "two trained models" in document["interval"]
    assert document["seed_comparisons"] == []
    [entry] = document["candidates"]
    assert set(entry) == {
        "variant",
        "model_uri",
        "run_id",
        "data_md5",
        "git_commit",
        "predictions_md5",
        "metrics",
        "test_metrics",
        "seed",
        "floors_passed",
        "vs_champion",
        "blessed",
        "reason",
        "registered_version",
    }
    assert set(entry["vs_champion"]) == {
        "metric",
        "delta",
        "ci_low",
        "ci_high",
        "n_boot",
        "n_redrawn",
        "n_rows",
        "block_rows",
        "n_targets_compared",
        "n_targets_excluded",
        "regressed",
        "n_compared",
        "regressed_fraction",
    }
    assert document["champion"]["version"] == "3"
    assert document["champion"]["data_md5"] == "abc"
    assert document["champion"]["predictions_md5"] == array_md5(champion.y_score)
    assert set(document["thresholds"]) == {
        "min_macro_auroc",
        "min_macro_aupr",
        "bootstrap_samples",
        "confidence",
        "regression_tolerance",
        "max_regressed_fraction",
        "metric",
        "bootstrap_max_rows",
        "bootstrap_block_rows",
        "bootstrap_min_class_blocks",
    }


def test_score_shape_mismatch_is_refused(task, champion):
    labels, latent = task
    with pytest.raises(CandidateError, match="champion version 3: scores of shape"):
        decide(labels[:, :5], [candidate("baseline", scores(latent, 0.6, 2)[:, :5])], champion, CFG)


def test_registry_tags_carry_provenance_metrics_and_decision(task, champion):
    labels, latent = task
    blessing = decide(
        labels,
        [
            CandidateEval(
                "random_dropout",
                "runs:/r/model",
                scores(latent, 0.6, 2),
                run_id="r",
                data_md5="d5",
                git_commit="c0ffee",
                test_metrics={"auroc": 0.81, "aupr": 0.42},
            ),
            candidate("baseline", scores(latent, 1.5, 3)),
        ],
        champion,
        CFG,
    )
    chosen = blessing.verdict("random_dropout")
    tags = registry_tags(chosen, blessing)
    assert {k: v for k, v in tags.items() if k != "danq.reason"} == {
        "danq.variant": "random_dropout",
        "data.md5": "d5",
        "git.commit": "c0ffee",
        "danq.blessed": "true",
        "danq.chosen": "true",
        "danq.decision": "promote",
        "danq.predictions_md5": chosen.predictions_md5,
        "metric.auroc": "0.810000",  # test: reported
        "metric.aupr": "0.420000",
        "metric.valid_auroc": f"{chosen.metrics['auroc']:.6f}",  # validation: decided
        "metric.valid_aupr": f"{chosen.metrics['aupr']:.6f}",
        "danq.delta_vs_champion": f"{chosen.vs_champion.delta:+.6f}",
    }
    assert tags["danq.reason"] == chosen.reason
    other = registry_tags(blessing.verdict("baseline"), blessing)
    assert (other["danq.blessed"], other["danq.chosen"], other["data.md5"]) == (
        "false",
        "false",
        "unknown",
    )


def test_better_on_test_but_worse_on_validation_is_not_promoted(task, champion):
    """Selection uses validation only: test metrics are carried, reported, and ignored."""
    labels, latent = task
    worse_on_valid = CandidateEval(
        "random_dropout",
        "runs:/rd/model",
        scores(latent, 1.5, 4),  # validation scores: worse than the champion's
        test_metrics={"auroc": 0.99, "aupr": 0.99},  # far better on test
    )
    blessing = decide(labels, [worse_on_valid], champion, CFG, seed=3)
    verdict = blessing.verdict("random_dropout")
    assert not verdict.blessed and verdict.vs_champion.ci_high < 0
    assert blessing.decision == "keep" and blessing.chosen is None
    assert verdict.test_metrics == {"auroc": 0.99, "aupr": 0.99}

    # The reverse: better on validation, worse on test, is promoted.
    better_on_valid = CandidateEval(
        "random_dropout",
        "runs:/rd/model",
        scores(latent, 0.6, 2),
        test_metrics={"auroc": 0.5, "aupr": 0.01},
    )
    blessing = decide(labels, [better_on_valid], champion, CFG, seed=3)
    assert blessing.decision == "promote" and blessing.chosen == "random_dropout"

    # Between two candidates, too: the one better on validation is chosen whatever test says.
    pair = [
        CandidateEval(
            "baseline", "runs:/b/model", scores(latent, 0.6, 2), test_metrics={"aupr": 0.9}
        ),
        CandidateEval(
            "random_dropout", "runs:/r/model", scores(latent, 0.3, 8), test_metrics={"aupr": 0.1}
        ),
    ]
    assert decide(labels, pair, None, CFG, seed=3).chosen == "random_dropout"


def test_comparisons_say_they_compare_trained_models_and_within_noise(task):
    labels, latent = task
    same = scores(latent, 0.6, 2)
    close = [candidate("baseline", same), candidate("random_dropout", same + 1e-6)]
    [comparison] = decide(labels, close, None, CFG, seed=1).comparisons
    assert comparison["ci_low"] <= 0 <= comparison["ci_high"]
    assert comparison["verdict"].startswith("within noise")
    apart = [candidate("baseline", scores(latent, 1.5, 3)), candidate("random_dropout", same)]
    [comparison] = decide(labels, apart, None, CFG, seed=1).comparisons
    assert comparison["verdict"] == "the trained random_dropout model is better"
    assert comparison["block_rows"] == 50 and comparison["n_targets_compared"] == N_TARGETS


def test_block_size_is_the_setting_or_given(task):
    labels, latent = task
    rows = decide(
        labels,
        [
            candidate("baseline", scores(latent, 0.6, 2)),
            candidate("random_dropout", scores(latent, 0.6, 3)),
        ],
        None,
        PromoteConfig(bootstrap_samples=50, bootstrap_block_rows=1),
    )
    assert rows.rows["block_rows"] == 1 and rows.comparisons[0]["block_rows"] == 1
    given = decide(
        labels, [candidate("baseline", scores(latent, 0.6, 2))], None, CFG, rows_per_block=7
    )
    assert given.rows["block_rows"] == 7


def test_several_seeds_choose_the_best_seed_of_the_better_variant(task):
    """Variants rank by their mean validation metric over seeds, paired by seed; the
    candidate of each variant is its best seed. A lucky seed of the worse variant does not win."""
    labels, latent = task
    lucky = CandidateEval(
        "baseline", "runs:/b/model", scores(latent, 0.3, 8), seed=3, seed_metrics=(0.55, 0.56, 0.80)
    )
    steady = CandidateEval(
        "random_dropout",
        "runs:/r/model",
        scores(latent, 0.6, 2),
        seed=1,
        seed_metrics=(0.66, 0.70, 0.68),
    )
    blessing = decide(labels, [lucky, steady], None, CFG)
    assert blessing.chosen == "random_dropout" and blessing.verdict("random_dropout").seed == 1
    assert "over 3 seeds" in blessing.reason
    [paired] = blessing.seed_comparisons
    assert (paired["a"], paired["b"], paired["n_seeds"]) == ("baseline", "random_dropout", 3)
    assert paired["delta"] == pytest.approx(np.mean([0.11, 0.14, -0.12]))
    assert paired["ci_low"] < 0 < paired["ci_high"]
    assert paired["verdict"].startswith("within noise over 3 seeds")
    with pytest.raises(CandidateError, match="same number"):
        decide(
            labels,
            [lucky, CandidateEval("random_dropout", "r", lucky.y_score, seed_metrics=(0.1, 0.2))],
            None,
            CFG,
        )

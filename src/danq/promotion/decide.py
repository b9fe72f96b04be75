"""The blessing decision: validation scores in, a Blessing out. Pure: no files, no MLflow.

Everything that decides uses the validation split: a candidate is blessed when its macro
AUROC and AUPR there reach the floors in params.promote and, when a champion exists, it beats
the champion re-scored on the same validation rows: the paired block-bootstrap CI of the
macro-metric difference lies above zero, and at most max_regressed_fraction of the targets
lose more than regression_tolerance. Of the blessed candidates, the one of the better variant
(by the mean validation metric over its seeds; one seed: its own) becomes champion.
Test metrics ride along (CandidateEval.test_metrics) to be reported and never choose: a
model chosen on test would carry an upward-biased test score.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from danq import artifacts
from danq.config import PromoteConfig
from danq.errors import CandidateError
from danq.evaluation.metrics import (
    json_safe,
    paired_bootstrap_delta,
    per_target_auroc_aupr,
    per_target_regressions,
    summarise,
)
from danq.evaluation.resampling import (
    INTERVAL_MEANING,
    block_rows,
    bootstrap_settings,
    seed_comparison,
    verdict_words,
)

DECIDED_ON = "valid"  # the split every choice is made on
REPORTED_ON = "test"  # the split that is only reported


@dataclass(frozen=True)
class CandidateEval:
    """One evaluated candidate: its validation scores (n, T), where its model lives, its test
    metrics (reported, never used to choose) and, with several seeds per variant, the
    validation macro metrics of all its variant's seeds (seed_metrics, in seed order)."""

    variant: str
    model_uri: str
    y_score: np.ndarray
    run_id: str | None = None
    data_md5: str | None = None
    git_commit: str | None = None
    test_metrics: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    seed_metrics: tuple[float, ...] = ()


@dataclass(frozen=True)
class ChampionEval:
    """The current champion's scores on the candidates' validation rows, and its provenance."""

    version: str
    model_uri: str
    y_score: np.ndarray
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VsChampion:
    """Candidate minus champion on the macro metric, and the targets it regressed on."""

    metric: str
    delta: float
    ci_low: float
    ci_high: float
    n_boot: int
    n_redrawn: int
    n_rows: int
    block_rows: int
    n_targets_compared: int
    n_targets_excluded: int
    regressed: list[int]
    n_compared: int
    regressed_fraction: float


@dataclass(frozen=True)
class Verdict:
    """The decision on one candidate, as written to blessing.json."""

    variant: str
    model_uri: str
    run_id: str | None
    data_md5: str | None
    git_commit: str | None
    predictions_md5: str
    metrics: dict[str, float | int]
    test_metrics: dict[str, Any]
    seed: int | None
    floors_passed: bool
    vs_champion: VsChampion | None
    blessed: bool
    reason: str
    registered_version: str | None = None


@dataclass(frozen=True)
class Blessing:
    """The outcome of one promotion round; to_dict() is the blessing.json document."""

    decision: str  # "promote" or "keep"
    chosen: str | None
    reason: str
    metric: str
    decided_on: str  # the split floors, champion comparison and choice used
    reported_on: str  # the split whose metrics are only reported
    rows: dict[str, Any]  # the decision split's rows: n, n_targets, labels_md5
    interval: str  # what a CI in this document means
    candidates: list[Verdict]
    champion: dict[str, Any] | None
    comparisons: list[dict[str, Any]]
    seed_comparisons: list[dict[str, Any]]
    thresholds: dict[str, Any]
    seed: int
    created_at: str
    registry: dict[str, Any] | None = None

    def verdict(self, variant: str) -> Verdict:
        return next(v for v in self.candidates if v.variant == variant)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = json_safe(asdict(self))
        return document


def array_md5(array: np.ndarray) -> str:
    """md5 of an array's dtype, shape and C-order bytes: the identity of a set of predictions."""
    digest = hashlib.md5(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def macro_metrics(y_true: np.ndarray, y_score: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Macro summary (auroc, aupr, n_scoreable, n_skipped) and the per-target metrics (2, T):
    row 0 AUROC, row 1 AUPR."""
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    summary = summarise(auroc, aupr)
    macro = {k: summary[k] for k in ("auroc", "aupr", "n_scoreable", "n_skipped")}
    return macro, np.vstack([auroc, aupr])


def floors(macro: dict[str, Any], cfg: PromoteConfig) -> tuple[bool, str]:
    """Whether the macro metrics reach the floors, and the sentence that says so."""
    passed = macro["auroc"] >= cfg.min_macro_auroc and macro["aupr"] >= cfg.min_macro_aupr
    text = (
        f"macro AUROC {macro['auroc']:.3f} (floor {cfg.min_macro_auroc:.3f}), "
        f"AUPR {macro['aupr']:.3f} (floor {cfg.min_macro_aupr:.3f})"
    )
    return bool(passed), text


def _bootstrap(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    cfg: PromoteConfig,
    seed: int,
    rows_per_block: int,
) -> dict[str, Any]:
    """Macro metric of b minus a with its paired block-bootstrap CI, as params.promote asks
    (the fixed targets' indices left out: the counts say enough)."""
    result = paired_bootstrap_delta(
        y_true,
        score_a,
        score_b,
        cfg.metric,
        seed=seed,
        **bootstrap_settings(cfg, rows_per_block),
    )
    result["n_targets_compared"] = len(result.pop("targets"))
    result["n_targets_excluded"] = result.pop("n_excluded")
    return result


def _compare_with_champion(
    y_true: np.ndarray,
    candidate: CandidateEval,
    per_target: np.ndarray,
    champion: ChampionEval,
    champion_per_target: np.ndarray,
    cfg: PromoteConfig,
    seed: int,
    rows_per_block: int,
) -> VsChampion:
    boot = _bootstrap(y_true, champion.y_score, candidate.y_score, cfg, seed, rows_per_block)
    row = 0 if cfg.metric == "auroc" else 1
    champion_values, candidate_values = champion_per_target[row], per_target[row]
    regressed = per_target_regressions(champion_values, candidate_values, cfg.regression_tolerance)
    n_compared = int(np.count_nonzero(~np.isnan(champion_values) & ~np.isnan(candidate_values)))
    return VsChampion(
        metric=cfg.metric,
        delta=float(boot["delta"]),
        ci_low=float(boot["ci_low"]),
        ci_high=float(boot["ci_high"]),
        n_boot=int(boot["n_boot"]),
        n_redrawn=int(boot["n_redrawn"]),
        n_rows=int(boot["n_rows"]),
        block_rows=int(boot["block_rows"]),
        n_targets_compared=int(boot["n_targets_compared"]),
        n_targets_excluded=int(boot["n_targets_excluded"]),
        regressed=regressed.tolist(),
        n_compared=n_compared,
        regressed_fraction=len(regressed) / n_compared if n_compared else 0.0,
    )


def _vs_champion_reason(
    variant: str,
    macro: dict[str, Any],
    champion_macro: dict[str, Any],
    vs: VsChampion,
    cfg: PromoteConfig,
) -> tuple[bool, str]:
    """Blessed or not against the champion, and the sentence that says why."""
    problems = []
    if vs.ci_high < 0:
        problems.append("worse than the champion (CI below zero)")
    elif vs.ci_low <= 0:
        problems.append("the CI includes zero")
    if vs.regressed_fraction > cfg.max_regressed_fraction:
        problems.append("too many targets regressed")
    blessed = not problems
    verdict_text = "blessed" if blessed else "not blessed: " + " and ".join(problems)
    reason = (
        f"{variant}: validation macro {cfg.metric.upper()} {macro[cfg.metric]:.3f} vs champion "
        f"{champion_macro[cfg.metric]:.3f}, {vs.delta:+.3f} "
        f"({cfg.confidence:.0%} CI {vs.ci_low:+.3f} to {vs.ci_high:+.3f}); "
        f"{len(vs.regressed)} of {vs.n_compared} targets regressed by more than "
        f"{cfg.regression_tolerance:g} (cap {cfg.max_regressed_fraction:.0%}) -> {verdict_text}"
    )
    return blessed, reason


def _judge(
    y_true: np.ndarray,
    candidate: CandidateEval,
    champion: ChampionEval | None,
    champion_metrics: tuple[dict[str, Any], np.ndarray] | None,
    cfg: PromoteConfig,
    seed: int,
    rows_per_block: int,
) -> Verdict:
    """The verdict on one candidate: floors first, then (if any) the champion."""
    macro, per_target = macro_metrics(y_true, candidate.y_score)
    floors_passed, floor_text = floors(macro, cfg)
    floor_text = f"validation {floor_text}"
    vs_champion = None
    if not floors_passed:
        tail = "; not compared with the champion" if champion else ""
        reason = f"{candidate.variant}: {floor_text}{tail} -> not blessed: below a floor"
        blessed = False
    elif champion is None or champion_metrics is None:
        reason = f"{candidate.variant}: {floor_text}; no champion yet -> blessed"
        blessed = True
    else:
        champion_macro, champion_per_target = champion_metrics
        vs_champion = _compare_with_champion(
            y_true, candidate, per_target, champion, champion_per_target, cfg, seed, rows_per_block
        )
        blessed, reason = _vs_champion_reason(
            candidate.variant, macro, champion_macro, vs_champion, cfg
        )
    return Verdict(
        variant=candidate.variant,
        model_uri=candidate.model_uri,
        run_id=candidate.run_id,
        data_md5=candidate.data_md5,
        git_commit=candidate.git_commit,
        predictions_md5=array_md5(candidate.y_score),
        metrics=macro,
        test_metrics=candidate.test_metrics,
        seed=candidate.seed,
        floors_passed=floors_passed,
        vs_champion=vs_champion,
        blessed=blessed,
        reason=reason,
    )


def _check_shapes(
    y_true: np.ndarray, candidates: list[CandidateEval], champion: ChampionEval | None
) -> None:
    for candidate in candidates:
        _check_shape(y_true, candidate.y_score, candidate.variant)
    if champion is not None:
        _check_shape(y_true, champion.y_score, f"champion version {champion.version}")


def _check_shape(y_true: np.ndarray, y_score: np.ndarray, who: str) -> None:
    if y_score.shape != y_true.shape:
        raise CandidateError(
            f"{who}: scores of shape {y_score.shape} do not match the validation labels "
            f"{y_true.shape}"
        )


def _variant_score(candidate: CandidateEval, verdict: Verdict, metric: str) -> float:
    """What ranks a candidate's variant: the mean validation metric over its seeds (one
    seed: the candidate's own)."""
    if len(candidate.seed_metrics) > 1:
        return float(np.mean(candidate.seed_metrics))
    return float(verdict.metrics[metric])


def _choose(
    candidates: list[CandidateEval],
    verdicts: list[Verdict],
    champion: ChampionEval | None,
    cfg: PromoteConfig,
) -> tuple[Verdict | None, str]:
    """The blessed candidate of the best variant (None: keep the champion) and the decision
    in words. Each variant's candidate is already its best seed on validation."""
    blessed = [(c, v) for c, v in zip(candidates, verdicts, strict=True) if v.blessed]
    if not blessed:
        if champion is not None:
            return None, f"no candidate blessed; champion version {champion.version} stays"
        return None, "no candidate blessed and no champion yet"
    # max() keeps the first of equals: ties go to the earlier variant (baseline).
    candidate, chosen = max(blessed, key=lambda cv: _variant_score(cv[0], cv[1], cfg.metric))
    replaces = f"replaces version {champion.version}" if champion else "first champion"
    if len(candidate.seed_metrics) > 1:
        basis = (
            f"best variant by mean validation macro {cfg.metric.upper()} over "
            f"{len(candidate.seed_metrics)} seeds "
            f"({_variant_score(candidate, chosen, cfg.metric):.3f}), its best seed "
            f"({chosen.metrics[cfg.metric]:.3f})"
        )
    else:
        basis = f"best validation macro {cfg.metric.upper()} {chosen.metrics[cfg.metric]:.3f}"
    reason = (
        f"{chosen.variant} promoted: {basis} of {len(blessed)} blessed candidate(s); {replaces}"
    )
    return chosen, reason


def _pairwise(
    y_true: np.ndarray,
    candidates: list[CandidateEval],
    cfg: PromoteConfig,
    seed: int,
    rows_per_block: int,
) -> list[dict[str, Any]]:
    """Each later candidate minus each earlier one (e.g. random_dropout minus baseline) on
    the validation rows: two trained models compared, with the verdict in words."""
    comparisons = []
    for first, second in itertools.combinations(candidates, 2):
        boot = _bootstrap(y_true, first.y_score, second.y_score, cfg, seed, rows_per_block)
        words = verdict_words(boot["ci_low"], boot["ci_high"], second.variant, first.variant)
        comparisons.append(
            {
                "a": first.variant,
                "b": second.variant,
                "metric": cfg.metric,
                **boot,
                "verdict": words,
            }
        )
    return comparisons


def _seed_comparisons(candidates: list[CandidateEval], cfg: PromoteConfig) -> list[dict[str, Any]]:
    """Each later variant minus each earlier one over seeds, when they have several."""
    with_seeds = [c for c in candidates if len(c.seed_metrics) > 1]
    try:
        return [
            seed_comparison(
                first.variant,
                first.seed_metrics,
                second.variant,
                second.seed_metrics,
                cfg.metric,
                cfg.confidence,
            )
            for first, second in itertools.combinations(with_seeds, 2)
        ]
    except ValueError as err:
        raise CandidateError(str(err)) from None


def _champion_document(champion: ChampionEval, macro: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": champion.version,
        "model_uri": champion.model_uri,
        "run_id": champion.run_id,
        "variant": champion.tags.get(artifacts.TAG_VARIANT),
        "data_md5": champion.tags.get(artifacts.TAG_DATA_MD5),
        "git_commit": champion.tags.get(artifacts.TAG_GIT_COMMIT),
        "predictions_md5": array_md5(champion.y_score),
        "metrics": macro,
    }


def decide(
    y_true: np.ndarray,
    candidates: list[CandidateEval],
    champion: ChampionEval | None,
    cfg: PromoteConfig,
    seed: int = 0,
    rows_per_block: int | None = None,
) -> Blessing:
    """Bless each candidate (floors, then vs champion) and choose the best blessed one, all on
    the validation rows y_true (n, T) that the candidates' and champion's scores belong to.

    rows_per_block: the bootstrap's block size (default: promote.bootstrap_block_rows, with
    "auto" taken as DeepSEA's). Candidates are also compared pairwise (later minus earlier,
    e.g. random_dropout minus baseline) for the report, and over seeds when they have
    several; that does not affect the decision.
    """
    if not candidates:
        raise CandidateError("no candidates to decide on")
    y_true = np.asarray(y_true)
    _check_shapes(y_true, candidates, champion)
    block = rows_per_block if rows_per_block is not None else block_rows(cfg)
    champion_metrics = macro_metrics(y_true, champion.y_score) if champion else None
    verdicts = [_judge(y_true, c, champion, champion_metrics, cfg, seed, block) for c in candidates]
    chosen, reason = _choose(candidates, verdicts, champion, cfg)
    return Blessing(
        decision="promote" if chosen else "keep",
        chosen=chosen.variant if chosen else None,
        reason=reason,
        metric=cfg.metric,
        decided_on=DECIDED_ON,
        reported_on=REPORTED_ON,
        rows={
            "split": DECIDED_ON,
            "n": int(y_true.shape[0]),
            "n_targets": int(y_true.shape[1]),
            "labels_md5": array_md5(y_true),
            "block_rows": block,
        },
        interval=INTERVAL_MEANING,
        candidates=verdicts,
        champion=(
            _champion_document(champion, champion_metrics[0])
            if champion and champion_metrics
            else None
        ),
        comparisons=_pairwise(y_true, candidates, cfg, seed, block),
        seed_comparisons=_seed_comparisons(candidates, cfg),
        thresholds=cfg.model_dump(exclude={"max_retries", "lock_expiry_s", "lock_wait_s"}),
        seed=seed,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def registry_tags(verdict: Verdict, blessing: Blessing) -> dict[str, str]:
    """Model-version tags: provenance, test metrics (reported) and the validation metrics the
    decision used, and the blessing decision."""
    tags = {
        artifacts.TAG_VARIANT: verdict.variant,
        artifacts.TAG_DATA_MD5: verdict.data_md5 or "unknown",
        artifacts.TAG_GIT_COMMIT: verdict.git_commit or "unknown",
        artifacts.TAG_BLESSED: str(verdict.blessed).lower(),
        artifacts.TAG_CHOSEN: str(verdict.variant == blessing.chosen).lower(),
        artifacts.TAG_DECISION: blessing.decision,
        artifacts.TAG_REASON: verdict.reason,
        artifacts.TAG_PREDICTIONS_MD5: verdict.predictions_md5,
    }
    for key in ("auroc", "aupr"):
        for name, value in (
            (key, verdict.test_metrics.get(key)),
            (f"valid_{key}", verdict.metrics[key]),
        ):
            if value is not None:
                tags[f"{artifacts.TAG_METRIC_PREFIX}{name}"] = _tag_number(value)
    if verdict.vs_champion is not None:
        tags[artifacts.TAG_DELTA_VS_CHAMPION] = f"{verdict.vs_champion.delta:+.6f}"
    return tags


def _tag_number(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:.6f}"

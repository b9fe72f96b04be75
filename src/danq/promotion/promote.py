"""`danq promote`: bless candidates against floors and the champion, register, move `champion`.

A candidate is blessed when its macro AUROC and AUPR reach the floors in params.promote and,
when a champion exists, it beats the champion on the same test rows: the paired bootstrap CI
of the macro-metric difference lies above zero, and at most max_regressed_fraction of the
targets lose more than regression_tolerance. Of the blessed candidates, the one with the best
macro metric becomes champion. The champion is re-scored on the candidates' test split in the
same run, so both sides see the same rows.

`decide` is the pure decision (arrays in, Blessing out); `promote_candidates` does the I/O:
read the evaluation outputs, score the champion, register every candidate, write and log
blessing.json, and move the aliases.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import tracking
from danq.config import VARIANTS, Params, PromoteConfig
from danq.errors import CandidateError
from danq.evaluation.metrics import (
    json_safe,
    paired_bootstrap_delta,
    per_target_auroc_aupr,
    per_target_regressions,
    summarise,
)
from danq.io import storage

if TYPE_CHECKING:
    from danq.promotion.registry import RetryingClient

PredictFn = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class CandidateEval:
    """One evaluated candidate: its test scores (n, T) and where its model lives."""

    variant: str
    model_uri: str
    y_score: np.ndarray
    run_id: str | None = None
    data_md5: str | None = None
    git_commit: str | None = None


@dataclass(frozen=True)
class ChampionEval:
    """The current champion's scores on the candidates' test rows, and its provenance."""

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
    n_rows: int
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
    test: dict[str, Any]
    candidates: list[Verdict]
    champion: dict[str, Any] | None
    comparisons: list[dict[str, Any]]
    thresholds: dict[str, Any]
    seed: int
    created_at: str
    registry: dict[str, Any] | None = None

    def verdict(self, variant: str) -> Verdict:
        return next(v for v in self.candidates if v.variant == variant)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def array_md5(array: np.ndarray) -> str:
    """md5 of an array's dtype, shape and C-order bytes: the identity of a set of predictions."""
    digest = hashlib.md5(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _macro(y_true: np.ndarray, y_score: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Macro summary (auroc, aupr, n_scoreable, n_skipped) and the per-target metrics."""
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    summary = summarise(auroc, aupr)
    macro = {k: summary[k] for k in ("auroc", "aupr", "n_scoreable", "n_skipped")}
    return macro, np.vstack([auroc, aupr])


def _metric_row(metric: str) -> int:
    return 0 if metric == "auroc" else 1


def _floor_text(macro: dict[str, Any], cfg: PromoteConfig) -> tuple[bool, str]:
    passed = macro["auroc"] >= cfg.min_macro_auroc and macro["aupr"] >= cfg.min_macro_aupr
    text = (
        f"macro AUROC {macro['auroc']:.3f} (floor {cfg.min_macro_auroc:.3f}), "
        f"AUPR {macro['aupr']:.3f} (floor {cfg.min_macro_aupr:.3f})"
    )
    return bool(passed), text


def _judge(
    y_true: np.ndarray,
    candidate: CandidateEval,
    champion: ChampionEval | None,
    champion_macro: dict[str, Any] | None,
    champion_per_target: np.ndarray | None,
    cfg: PromoteConfig,
    seed: int,
) -> Verdict:
    macro, per_target = _macro(y_true, candidate.y_score)
    floors_passed, floor_text = _floor_text(macro, cfg)
    label = cfg.metric.upper()
    vs_champion = None
    if not floors_passed:
        tail = "; not compared with the champion" if champion else ""
        reason = f"{candidate.variant}: {floor_text}{tail} -> not blessed: below a floor"
        blessed = False
    elif champion is None:
        reason = f"{candidate.variant}: {floor_text}; no champion yet -> blessed"
        blessed = True
    else:
        assert champion_macro is not None and champion_per_target is not None
        boot = paired_bootstrap_delta(
            y_true,
            champion.y_score,
            candidate.y_score,
            cfg.metric,
            cfg.bootstrap_samples,
            cfg.confidence,
            seed,
            max_rows=cfg.bootstrap_max_rows,
        )
        row = _metric_row(cfg.metric)
        champion_values, candidate_values = champion_per_target[row], per_target[row]
        regressed = per_target_regressions(
            champion_values, candidate_values, cfg.regression_tolerance
        )
        n_compared = int(np.count_nonzero(~np.isnan(champion_values) & ~np.isnan(candidate_values)))
        fraction = len(regressed) / n_compared if n_compared else 0.0
        vs_champion = VsChampion(
            metric=cfg.metric,
            delta=boot["delta"],
            ci_low=boot["ci_low"],
            ci_high=boot["ci_high"],
            n_boot=int(boot["n_boot"]),
            n_rows=int(boot["n_rows"]),
            regressed=regressed.tolist(),
            n_compared=n_compared,
            regressed_fraction=fraction,
        )
        problems = []
        if boot["ci_high"] < 0:
            problems.append("worse than the champion (CI below zero)")
        elif boot["ci_low"] <= 0:
            problems.append("the CI includes zero")
        if fraction > cfg.max_regressed_fraction:
            problems.append("too many targets regressed")
        blessed = not problems
        verdict_text = "blessed" if blessed else "not blessed: " + " and ".join(problems)
        reason = (
            f"{candidate.variant}: macro {label} {macro[cfg.metric]:.3f} vs champion "
            f"{champion_macro[cfg.metric]:.3f}, {boot['delta']:+.3f} "
            f"({cfg.confidence:.0%} CI {boot['ci_low']:+.3f} to {boot['ci_high']:+.3f}); "
            f"{len(regressed)} of {n_compared} targets regressed by more than "
            f"{cfg.regression_tolerance:g} (cap {cfg.max_regressed_fraction:.0%}) -> {verdict_text}"
        )
    return Verdict(
        variant=candidate.variant,
        model_uri=candidate.model_uri,
        run_id=candidate.run_id,
        data_md5=candidate.data_md5,
        git_commit=candidate.git_commit,
        predictions_md5=array_md5(candidate.y_score),
        metrics=macro,
        floors_passed=floors_passed,
        vs_champion=vs_champion,
        blessed=blessed,
        reason=reason,
    )


def decide(
    y_true: np.ndarray,
    candidates: list[CandidateEval],
    champion: ChampionEval | None,
    cfg: PromoteConfig,
    seed: int = 0,
) -> Blessing:
    """Bless each candidate (floors, then vs champion) and choose the best blessed one.

    Candidates are also compared pairwise (later minus earlier, e.g. random_dropout minus
    baseline) for the report; that comparison does not affect the decision.
    """
    if not candidates:
        raise CandidateError("no candidates to decide on")
    y_true = np.asarray(y_true)
    for scored in [*candidates, *([champion] if champion else [])]:
        if scored.y_score.shape != y_true.shape:
            who = getattr(scored, "variant", None) or f"champion version {scored.version}"
            raise CandidateError(
                f"{who}: scores of shape {scored.y_score.shape} do not match the test labels "
                f"{y_true.shape}"
            )
    champion_macro = champion_per_target = None
    if champion is not None:
        champion_macro, champion_per_target = _macro(y_true, champion.y_score)
    verdicts = [
        _judge(y_true, c, champion, champion_macro, champion_per_target, cfg, seed)
        for c in candidates
    ]
    label = cfg.metric.upper()
    blessed = [v for v in verdicts if v.blessed]
    # max() keeps the first of equals: ties go to the earlier variant (baseline).
    chosen = max(blessed, key=lambda v: v.metrics[cfg.metric]) if blessed else None
    if chosen is not None:
        replaces = f"replaces version {champion.version}" if champion else "first champion"
        reason = (
            f"{chosen.variant} promoted: best macro {label} {chosen.metrics[cfg.metric]:.3f} "
            f"of {len(blessed)} blessed candidate(s); {replaces}"
        )
    elif champion is not None:
        reason = f"no candidate blessed; champion version {champion.version} stays"
    else:
        reason = "no candidate blessed and no champion yet"
    comparisons = []
    for first, second in itertools.combinations(candidates, 2):
        boot = paired_bootstrap_delta(
            y_true,
            first.y_score,
            second.y_score,
            cfg.metric,
            cfg.bootstrap_samples,
            cfg.confidence,
            seed,
            max_rows=cfg.bootstrap_max_rows,
        )
        comparisons.append({"a": first.variant, "b": second.variant, "metric": cfg.metric, **boot})
    champion_doc = None
    if champion is not None:
        champion_doc = {
            "version": champion.version,
            "model_uri": champion.model_uri,
            "run_id": champion.run_id,
            "variant": champion.tags.get("danq.variant"),
            "data_md5": champion.tags.get("data.md5"),
            "git_commit": champion.tags.get("git.commit"),
            "predictions_md5": array_md5(champion.y_score),
            "metrics": champion_macro,
        }
    return Blessing(
        decision="promote" if chosen else "keep",
        chosen=chosen.variant if chosen else None,
        reason=reason,
        metric=cfg.metric,
        test={
            "n": int(y_true.shape[0]),
            "n_targets": int(y_true.shape[1]),
            "labels_md5": array_md5(y_true),
        },
        candidates=verdicts,
        champion=champion_doc,
        comparisons=comparisons,
        thresholds=cfg.model_dump(exclude={"max_retries"}),
        seed=seed,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def load_candidates(
    eval_dir: str | os.PathLike[str], variants: list[str]
) -> tuple[np.ndarray, list[CandidateEval]]:
    """Test labels and each variant's evaluation from <eval_dir>/<variant>/."""
    y_true: np.ndarray | None = None
    candidates = []
    for variant in variants:
        folder = Path(eval_dir, variant)
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
            with np.load(folder / "predictions.npz") as predictions:
                labels, scores = predictions["y_true"], predictions["y_score"]
        except (OSError, KeyError, ValueError) as err:
            raise CandidateError(f"{folder}: evaluation output unreadable: {err}") from err
        if not metrics.get("model_uri"):
            raise CandidateError(f"{folder}/metrics.json: no model_uri (was training logged?)")
        if y_true is None:
            y_true = labels
        elif not np.array_equal(y_true, labels):
            raise CandidateError(
                f"{variant} was evaluated on other test labels than {variants[0]}: "
                "candidates must share one test split"
            )
        candidates.append(
            CandidateEval(
                variant=variant,
                model_uri=metrics["model_uri"],
                y_score=scores,
                run_id=metrics.get("mlflow_run_id"),
                data_md5=metrics.get("data_md5"),
                git_commit=metrics.get("git_commit"),
            )
        )
    if y_true is None:
        raise CandidateError("no variants given")
    return y_true, candidates


def registry_tags(verdict: Verdict, blessing: Blessing) -> dict[str, str]:
    """Model-version tags: provenance, test metrics, and the blessing decision."""
    tags = {
        "danq.variant": verdict.variant,
        "data.md5": verdict.data_md5 or "unknown",
        "git.commit": verdict.git_commit or "unknown",
        "danq.blessed": str(verdict.blessed).lower(),
        "danq.chosen": str(verdict.variant == blessing.chosen).lower(),
        "danq.decision": blessing.decision,
        "danq.reason": verdict.reason,
        "danq.predictions_md5": verdict.predictions_md5,
    }
    for key in ("auroc", "aupr"):
        value = verdict.metrics[key]
        tags[f"metric.{key}"] = "nan" if np.isnan(value) else f"{value:.6f}"
    if verdict.vs_champion is not None:
        tags["danq.delta_vs_champion"] = f"{verdict.vs_champion.delta:+.6f}"
    return tags


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def score_champion(
    client: RetryingClient, registered_model: str, predict_fn: PredictFn
) -> ChampionEval | None:
    """The current champion scored by predict_fn on the test rows; None when there is none."""
    from danq.promotion import registry

    champion_version = registry.current_champion(client, registered_model)
    if champion_version is None:
        return None
    uri = registry.version_uri(registered_model, champion_version.version)
    return ChampionEval(
        version=champion_version.version,
        model_uri=uri,
        y_score=np.asarray(client.retrying(predict_fn, uri)),
        run_id=champion_version.run_id,
        tags=dict(champion_version.tags),
    )


def promote_candidates(
    client: RetryingClient,
    registered_model: str,
    cfg: PromoteConfig,
    eval_dir: str | os.PathLike[str],
    variants: list[str],
    out_dir: str | os.PathLike[str],
    predict_fn: PredictFn,
    seed: int = 0,
) -> Blessing:
    """One promotion round; returns the Blessing also written to <out_dir>/blessing.json.

    Order: read candidates, score the champion, decide, write blessing.json (the decision
    is on disk even if MLflow fails next), register every candidate, move the aliases, then
    rewrite blessing.json with versions and aliases and log it to each candidate's run.
    """
    from danq.promotion import registry

    y_true, candidates = load_candidates(eval_dir, variants)
    champion = score_champion(client, registered_model, predict_fn)
    blessing = decide(y_true, candidates, champion, cfg, seed)
    blessing_path = Path(out_dir, "blessing.json")
    _write_json(blessing_path, blessing.to_dict())

    versions = {
        v.variant: registry.register_candidate(
            client, registered_model, v.model_uri, registry_tags(v, blessing)
        )
        for v in blessing.candidates
    }
    if blessing.chosen is not None:
        aliases = registry.promote(client, registered_model, versions[blessing.chosen])
    else:
        aliases = registry.aliases(client, registered_model)
    blessing = replace(
        blessing,
        candidates=[
            replace(v, registered_version=versions[v.variant]) for v in blessing.candidates
        ],
        registry={
            "tracking_uri": client.tracking_uri,
            "model": registered_model,
            "aliases": aliases,
        },
    )
    _write_json(blessing_path, blessing.to_dict())
    for verdict in blessing.candidates:
        if verdict.run_id:
            client.log_artifact(verdict.run_id, str(blessing_path), artifact_path="promotion")
            client.set_tag(verdict.run_id, "danq.blessed", str(verdict.blessed).lower())
            client.set_tag(verdict.run_id, "danq.registered_version", versions[verdict.variant])
    return blessing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-dir", help="evaluation outputs (default: <paths.work_dir>/eval)")
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), help="candidates to consider"
    )
    parser.add_argument("--out", help="where blessing.json goes (default: <work_dir>/promote)")
    parser.add_argument(
        "--shards",
        help="test shards to score the champion on (default: <paths.work_dir>/shards/test)",
    )


def run(args: argparse.Namespace, params: Params) -> int:
    """`danq promote`: one promotion round with the settings in params.promote."""
    import mlflow

    from danq.promotion import registry

    work_dir = params.work_dir
    shards = args.shards or storage.join(work_dir, "shards", "test")
    # models:/ URIs (the champion) resolve against the fluent API's tracking server.
    mlflow.set_tracking_uri(tracking.resolve_uri(params.mlflow))

    def predict_fn(model_uri: str) -> np.ndarray:
        from danq.evaluation.scoring import predict_uri

        return predict_uri(model_uri, shards, params.evaluate.batch_size)

    try:
        blessing = promote_candidates(
            registry.connect(params),
            params.mlflow.registered_model,
            params.promote,
            args.eval_dir or storage.join(work_dir, "eval"),
            args.variants,
            args.out or storage.join(work_dir, "promote"),
            predict_fn,
            params.seed,
        )
    except (CandidateError, registry.RegistryUnavailable, registry.AliasMoveError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for verdict in blessing.candidates:
        print(f"{verdict.reason} [version {verdict.registered_version}]")
    for comparison in blessing.comparisons:
        print(
            f"{comparison['b']} - {comparison['a']}: macro {comparison['metric'].upper()} "
            f"{comparison['delta']:+.3f} ({params.promote.confidence:.0%} CI "
            f"{comparison['ci_low']:+.3f} to {comparison['ci_high']:+.3f})"
        )
    aliases = blessing.registry["aliases"] if blessing.registry else {}
    print(f"{blessing.decision}: {blessing.reason}; aliases {aliases}")
    return 0

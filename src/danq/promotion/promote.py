"""`danq promote`'s work: read the evaluations, score the champion, register, move `champion`.

The decision itself is danq.promotion.decide (arrays in, Blessing out). Here is the I/O around
it: read each candidate's evaluation outputs (its validation predictions decide; its test
metrics are carried along to be reported), re-score the champion on the candidates'
validation split (so both sides see the same rows), register every candidate (with its model
file's
sha256), write and log blessing.json, and move the aliases (danq.promotion.moves) stating the
champion the decision was made against: if another command moved it meanwhile, nothing moves
and ChampionChanged says so. A version that was rolled back is not made champion again by
promotion: the round keeps the champion and says why (an operator can promote it by hand).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from danq import artifacts, tracking
from danq.artifacts import VALID_DIR
from danq.config import PromoteConfig
from danq.errors import CandidateError
from danq.promotion import moves, registry
from danq.promotion.decide import Blessing, CandidateEval, ChampionEval, decide, registry_tags
from danq.promotion.registry import RetryingClient
from danq.redaction import redact_uri

PredictFn = Callable[[str], np.ndarray]
RUN_ARTIFACT_PATH = "promotion"  # where blessing.json goes among a candidate run's artifacts


def load_candidates(
    eval_dir: str | os.PathLike[str], variants: list[str], metric: str = "aupr"
) -> tuple[np.ndarray, list[CandidateEval]]:
    """Validation labels and each variant's evaluation from <eval_dir>/<variant>/: its
    validation scores (valid/predictions.npz), test metrics (metrics.json, reported only) and,
    with several seeds, every seed's validation `metric` (metrics.json's "seeds")."""
    y_true: np.ndarray | None = None
    candidates = []
    for variant in variants:
        folder = Path(eval_dir, variant)
        try:
            metrics = artifacts.read_json(folder / artifacts.METRICS_FILE)
            with np.load(folder / VALID_DIR / artifacts.PREDICTIONS_FILE) as predictions:
                labels, scores = predictions["y_true"], predictions["y_score"]
        except (OSError, KeyError, ValueError) as err:
            raise CandidateError(
                f"{folder}: validation evaluation unreadable ({err}); promotion decides on the "
                "validation split: run danq evaluate (it scores both splits)"
            ) from err
        if not metrics.get("model_uri"):
            raise CandidateError(
                f"{folder}/{artifacts.METRICS_FILE}: no model_uri (was training logged?)"
            )
        if y_true is None:
            y_true = labels
        elif not np.array_equal(y_true, labels):
            raise CandidateError(
                f"{variant} was evaluated on other validation labels than {variants[0]}: "
                "candidates must share one validation split"
            )
        overall = metrics.get("overall", {})
        selected = metrics.get("selected_seed") or {}
        candidates.append(
            CandidateEval(
                variant=variant,
                model_uri=metrics["model_uri"],
                y_score=scores,
                run_id=metrics.get("mlflow_run_id"),
                data_md5=metrics.get("data_md5"),
                git_commit=metrics.get("git_commit"),
                test_metrics={k: overall[k] for k in ("auroc", "aupr") if k in overall},
                seed=selected.get("seed", metrics.get("train_seed")),
                seed_metrics=tuple(_number(s["valid"][metric]) for s in metrics.get("seeds", [])),
            )
        )
    if y_true is None:
        raise CandidateError("no variants given")
    return y_true, candidates


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def score_champion(
    client: RetryingClient, registered_model: str, predict_fn: PredictFn
) -> ChampionEval | None:
    """The current champion scored by predict_fn on the validation rows; None when there is
    none.

    predict_fn gets the champion's models:/ URI and runs with MLflow's fluent API pointed at
    the client's server, where that URI resolves."""
    champion_version = registry.current_champion(client, registered_model)
    if champion_version is None:
        return None
    uri = registry.version_uri(registered_model, champion_version.version)
    with tracking.using(client.tracking_uri):
        y_score = np.asarray(client.retrying(predict_fn, uri))
    return ChampionEval(
        # A SQL store read directly (sqlite:) gives versions as ints; aliases hold strings.
        version=str(champion_version.version),
        model_uri=uri,
        y_score=y_score,
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
    version_tags: Mapping[str, str] | None = None,
    rows_per_block: int | None = None,
) -> Blessing:
    """One promotion round; returns the Blessing also written to <out_dir>/blessing.json.

    Order: read candidates, score the champion, decide, write blessing.json (the decision
    is on disk even if MLflow fails next), register every candidate, move the aliases if the
    champion is still the one scored (else ChampionChanged), then rewrite blessing.json with
    versions and aliases and log it to each candidate's run. Keeping the champion also takes
    the registry lock, to repair a move a failed command left unfinished.
    version_tags: further tags of every registered version (a pipeline run's lineage).
    rows_per_block: the bootstrap's block size (danq.evaluation.resampling.block_rows).
    """
    y_true, candidates = load_candidates(eval_dir, variants, cfg.metric)
    champion = score_champion(client, registered_model, predict_fn)
    blessing = decide(y_true, candidates, champion, cfg, seed, rows_per_block)
    blessing_path = Path(out_dir, artifacts.BLESSING_FILE)
    artifacts.write_json(blessing_path, blessing.to_dict())

    versions = {
        v.variant: registry.register_candidate(
            client,
            registered_model,
            v.model_uri,
            {**registry_tags(v, blessing), **(version_tags or {})},
        )
        for v in blessing.candidates
    }
    expected = champion.version if champion else None
    if blessing.chosen is not None and versions[blessing.chosen] != expected:
        blessing = _unless_rolled_back(
            client, registered_model, blessing, versions[blessing.chosen]
        )
    if blessing.chosen is not None:
        aliases = moves.promote(client, registered_model, versions[blessing.chosen], expected, cfg)
    else:
        aliases = moves.repair(client, registered_model, cfg)
    blessing = replace(
        blessing,
        candidates=[
            replace(v, registered_version=versions[v.variant]) for v in blessing.candidates
        ],
        registry={
            "tracking_uri": redact_uri(client.tracking_uri),
            "model": registered_model,
            "aliases": aliases,
        },
    )
    artifacts.write_json(blessing_path, blessing.to_dict())
    for verdict in blessing.candidates:
        if verdict.run_id:
            client.log_artifact(verdict.run_id, str(blessing_path), artifact_path=RUN_ARTIFACT_PATH)
            client.set_tag(verdict.run_id, artifacts.TAG_BLESSED, str(verdict.blessed).lower())
            client.set_tag(
                verdict.run_id, artifacts.TAG_REGISTERED_VERSION, versions[verdict.variant]
            )
    return blessing


def _unless_rolled_back(
    client: RetryingClient, registered_model: str, blessing: Blessing, version: str
) -> Blessing:
    """The blessing, turned into "keep" when its chosen version was rolled back before: a
    rolled-back model does not return by itself (its version's decision tags say so too)."""
    record = moves.rolled_back(client, registered_model, version)
    if record is None:
        return blessing
    client.set_model_version_tag(registered_model, version, artifacts.TAG_CHOSEN, "false")
    client.set_model_version_tag(registered_model, version, artifacts.TAG_DECISION, "keep")
    return replace(
        blessing,
        decision="keep",
        chosen=None,
        reason=(
            f"{blessing.reason}; but version {version} was rolled back ({record}), so "
            "promotion does not make it champion again: the champion stays (an operator can "
            "promote that version by hand)"
        ),
    )

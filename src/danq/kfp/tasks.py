"""Path-level entry points of the Kubeflow components (components/, pipelines/).

A component only turns its KFP artifacts into folders and calls one function here; these
functions call the same package code as the `danq` commands, so a pipeline run and a
`dvc repro` run compute the same thing. Settings come from the package defaults (a component
has no params.yaml), the pipeline's typed parameters and free `key=value` overrides, validated
by danq.config like any params.yaml.

Each step receives only what it reads (the launcher copies every input artifact whole into the
pod): train gets the train and valid shards, evaluate the model and the validation and test
shards, compare and promote the validation shards (the champion is re-scored on validation,
where the decision is made) and the evaluations, whose predictions are cut to the rows the
promotion bootstrap uses (danq.evaluation.metrics.bootstrap_rows, in whole blocks).
With train.seeds > 1 the train step trains the seeds in sequence into seed-<i>/ folders of its
artifacts (danq.evaluation.seeds) and evaluate scores each and hands on the best on validation.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from danq.artifacts import (
    CURVES_FILE,
    EXPLAIN_ARTIFACT_PATH,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PER_TARGET_FILE,
    PREDICTIONS_FILE,
    RUN_FILE,
    SEEDS_FILE,
    TRAINING_CURVE_FILE,
    VALID_DIR,
    read_json,
)
from danq.config import VARIANTS, Params, Variant, load_params
from danq.errors import CandidateError, ConfigError, DataGateFailed, EvaluationError, PipelineError
from danq.evaluation.metrics import bootstrap_rows
from danq.io import limits as reader_limits
from danq.kfp.tracking_uri import redacted

if TYPE_CHECKING:  # the task bodies import these libraries only when they run
    from danq.kfp.lineage import Lineage
    from danq.promotion.decide import Blessing
    from danq.promotion.promote import PredictFn
    from danq.training.outputs import TrainResult
    from danq.validation.report import ValidationReport

GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
ROC_MAX_POINTS = 200  # the KFP UI draws the curve from artifact metadata: keep it small
REPORT_DIR = "report"  # compare's comparison report, under its work folder
FIT_SPLITS = ("train", "valid")  # what train reads; test goes to evaluate only
VALID_SPLIT = "valid"  # also its own artifact: evaluate, compare and promote read it
TEST_SPLIT = "test"
MODEL_OUTPUTS = [MODEL_FILE, RUN_FILE]  # the `model` artifact: what evaluate loads
TRAINING_OUTPUTS = [HISTORY_FILE, RUN_FILE, TRAINING_CURVE_FILE]  # what compare reports
ROWS_KEY = "rows"  # in a pipeline evaluation's predictions.npz (its `rows=`): the rows kept
TRACKING_URI_SETTING = "mlflow.tracking_uri"


def task_params(settings: Mapping[str, Any], overrides: Sequence[str] = ()) -> Params:
    """Package defaults, then the typed pipeline settings (dotted keys), then the overrides.

    params.yaml is not read: on the cluster a component has no work tree, and locally it
    must not pick up the laptop's settings. Bad keys or values raise ConfigError naming them.
    The overrides (a free run parameter) may not change the tracking URI, which is compiled
    into the pipeline (danq.kfp.tracking_uri): a step would send its MLflow login there.
    """
    pairs = [f"{key}={json.dumps(value)}" for key, value in settings.items()]
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"overrides: {item!r} is not a key=value string")
    params = load_params(os.devnull, [*pairs, *overrides])
    reader_limits.apply(params.limits)
    # Compared after parsing: "mlflow={tracking_uri: ...}" would set it too.
    compiled = settings.get(TRACKING_URI_SETTING)
    if params.mlflow.tracking_uri != compiled:
        where = f"compiled in as {redacted(compiled)}" if compiled else "not used by this step"
        raise ConfigError(
            f"overrides: {TRACKING_URI_SETTING} is fixed when the pipeline is compiled "
            f"({where}); a run cannot change it (danq pipeline compile --tracking-uri)"
        )
    return params


def promotion_params(
    mlflow_tracking_uri: str,
    registered_model: str,
    min_macro_auroc: float,
    min_macro_aupr: float,
    overrides: Sequence[str] = (),
) -> Params:
    """task_params of the steps that read or change the registry (compare, promote)."""
    return task_params(
        {
            TRACKING_URI_SETTING: mlflow_tracking_uri,
            "mlflow.registered_model": registered_model,
            "promote.min_macro_auroc": min_macro_auroc,
            "promote.min_macro_aupr": min_macro_aupr,
        },
        overrides,
    )


def gpu_node_selector(gpu_type: str) -> dict[str, str]:
    """The GKE node selector that places a pod on a node with this accelerator type."""
    if not gpu_type or not all(c.isalnum() or c in "-_." for c in gpu_type):
        raise ConfigError(f"gpu_type: {gpu_type!r} is not a GKE accelerator name such as nvidia-l4")
    return {GKE_ACCELERATOR_LABEL: gpu_type}


# --- validate ------------------------------------------------------------------------------


def validation_markdown(report: ValidationReport) -> str:
    """The gate's verdict as a Markdown table (the KFP UI renders Markdown artifacts)."""
    verdict = "passed" if report.passed else f"FAILED ({len(report.failures)} blocking checks)"
    lines = [
        f"# Data gate {verdict}",
        "",
        f"{report.data_dir}: {len(report.checks)} checks, {len(report.warnings)} warnings",
        "",
        "| check | split | blocking | result | observed | threshold | message |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report.checks:
        result = {True: "pass", False: "FAIL", None: "not run"}[c.passed]
        observed = "" if c.observed is None else f"{c.observed:.4g}"
        message = c.message.replace("|", "/")
        lines.append(
            f"| {c.name} | {c.split} | {'yes' if c.blocking else 'no'} | {result} | "
            f"{observed} | {c.threshold} | {message} |"
        )
    return "\n".join(lines) + "\n"


def validate_data(data_dir: str, out_dir: str, params: Params) -> ValidationReport:
    """Run the data gate into out_dir; raise DataGateFailed (after writing it) if it fails."""
    from danq.validation.gate import validate_dataset

    report = validate_dataset(data_dir, params.validate_, out_dir)
    if not report.passed:
        problems = "; ".join(f"{c.name} ({c.split}): {c.message}" for c in report.failures)
        raise DataGateFailed(f"data gate failed on {data_dir}: {problems}")
    return report


# --- prepare, train ------------------------------------------------------------------------


def prepare_shards(
    data_dir: str,
    fit_dir: str,
    test_dir: str,
    params: Params,
    data_fingerprint: str,
    valid_dir: str | None = None,
) -> dict[str, int]:
    """TFRecord shards of train and valid in fit_dir/<split>/, of test in test_dir/test/ and,
    given valid_dir, a copy of valid in valid_dir/valid/ (small: the steps after train get it
    without the training split), from data whose content must still be what the data gate
    fingerprinted (DataError naming the changed file otherwise). Returns samples per split."""
    from danq.data.fingerprint import DataFingerprint
    from danq.data.shards import prepare_dataset

    expected = DataFingerprint.from_json(data_fingerprint)
    staging = Path(fit_dir).parent / f".{Path(fit_dir).name}-shards"
    manifests = prepare_dataset(
        data_dir, str(staging), params.prepare, progress=False, expected_fingerprint=expected
    )
    if valid_dir is not None:
        shutil.copytree(staging / VALID_SPLIT, Path(valid_dir, VALID_SPLIT))
    for split in manifests:
        dest = test_dir if split == TEST_SPLIT else fit_dir
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.move(staging / split, Path(dest, split))
    shutil.rmtree(staging)
    return {split: m.n_samples for split, m in manifests.items()}


def train_model(
    params: Params,
    variant: str,
    shard_dir: str,
    model_dir: str,
    training_dir: str,
    gpus: int,
    checkpoint_root: str,
    run_key: str,
    lineage: Lineage,
) -> list[TrainResult]:
    """Train one variant; model.keras and run.json into model_dir, history.json, run.json
    and the training curve into training_dir. With train.seeds > 1, each seed in turn into
    seed-<i>/ of both, with seeds.json beside them (danq.evaluation.seeds). Returns the
    results in seed order.

    checkpoint_root: where the run's checkpoint survives the pod (danq.kfp.resume), keyed by
    run_key (with -seed-<i> for several seeds) and variant; empty: in the pod only, so a retry
    starts again from epoch 0.
    gpus: how many GPUs the step was given; fewer visible ones is an error, because the
    training would otherwise fall back to the CPU silently and take days.
    """
    import tempfile

    import tensorflow as tf

    from danq.evaluation.seeds import planned_runs, seed_params, write_seed_index
    from danq.kfp.resume import copy_outputs, train_resumably
    from danq.kfp.staging import scratch_dir
    from danq.training.loop import train_variant

    visible = len(tf.config.list_physical_devices("GPU"))
    if visible < gpus:
        raise PipelineError(
            f"gpu_count: {gpus} GPU(s) requested but TensorFlow sees {visible}; check the "
            "node's NVIDIA driver and that the image is the GPU image"
        )
    if not checkpoint_root:
        print("no checkpoint_root: the checkpoint lives in the pod; a retry starts over")
    runs = planned_runs(params)
    results = []
    for run in runs:
        settings = seed_params(params, run.index) if run.folder else params
        # A pipeline parameter is a plain string; train_variant rejects one that is no variant.
        if checkpoint_root:
            key = f"{run_key}-{run.folder}" if run.folder else run_key
            result, out = train_resumably(
                settings,
                cast(Variant, variant),
                shard_dir,
                checkpoint_root,
                key,
                lineage.data_fingerprint,
                lineage.tags(),
            )
        else:
            out = Path(tempfile.mkdtemp(prefix=f"danq-train-{variant}-", dir=scratch_dir()))
            result = train_variant(
                settings, cast(Variant, variant), shard_dir, str(out), tags=lineage.tags()
            )
        copy_outputs(out, MODEL_OUTPUTS, str(Path(model_dir, run.folder)))
        copy_outputs(out, TRAINING_OUTPUTS, str(Path(training_dir, run.folder)))
        results.append(result)
    if len(runs) > 1:
        write_seed_index(model_dir, variant, runs)
        write_seed_index(training_dir, variant, runs)
    return results


# --- evaluate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RocCurve:
    target: str
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


def evaluate_model(
    params: Params, model_dir: str, shard_dir: str, valid_shard_dir: str, out_dir: str, work: str
) -> dict[str, Any]:
    """Score a trained model (or each seed, keeping the best on validation) on the validation
    and test shards; returns metrics.json's content.

    The whole evaluation goes to work/; out_dir gets its metrics, per-target table and
    curves, and the predictions of both splits (valid/ for validation) cut to the rows the
    promotion bootstrap keeps (with those rows' indices under "rows"): the steps downstream
    read no more, and the full predictions of DeepSEA's test set (~2 GB) never leave the pod.
    A step has no data folder: promote.bootstrap_block_rows "auto" means DeepSEA's blocks."""
    from danq.evaluation.resampling import block_rows
    from danq.evaluation.scoring import evaluate_seeds

    variant = _variant_of(model_dir, RUN_FILE)
    metrics = evaluate_seeds(params, variant, model_dir, shard_dir, valid_shard_dir, work, None)
    Path(out_dir, VALID_DIR).mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, PER_TARGET_FILE, CURVES_FILE):
        shutil.copyfile(Path(work, name), Path(out_dir, name))
    shutil.copyfile(Path(work, VALID_DIR, METRICS_FILE), Path(out_dir, VALID_DIR, METRICS_FILE))
    rows_per_block = block_rows(params.promote)
    for folder in ("", VALID_DIR):
        with np.load(Path(work, folder, PREDICTIONS_FILE)) as predictions:
            y_true, y_score = predictions["y_true"], predictions["y_score"]
        rows = bootstrap_rows(
            len(y_true), params.promote.bootstrap_max_rows, params.seed, rows_per_block
        )
        with Path(out_dir, folder, PREDICTIONS_FILE).open("wb") as fh:
            np.savez_compressed(fh, y_true=y_true[rows], y_score=y_score[rows], rows=rows)
    return metrics


def roc_curve(eval_dir: str, max_points: int = ROC_MAX_POINTS) -> RocCurve:
    """The ROC curve, with thresholds, of the first target that evaluation plotted."""
    from danq.evaluation.scoring import curve_points

    curves = read_json(Path(eval_dir, CURVES_FILE))
    if not curves:
        raise EvaluationError(f"{eval_dir}/{CURVES_FILE}: no target has a curve (no positives?)")
    target = curves[0]["target"]
    with Path(eval_dir, PER_TARGET_FILE).open() as fh:
        index = next(
            int(r["index"]) for r in csv.DictReader(fh, delimiter="\t") if r["name"] == target
        )
    with np.load(Path(eval_dir, PREDICTIONS_FILE)) as predictions:
        y_true = predictions["y_true"][:, index]
        y_score = predictions["y_score"][:, index].astype(np.float64)
    points = curve_points(y_true, y_score)
    n = len(points["thresholds"])
    keep = np.unique(np.linspace(0, n - 1, min(max_points, n)).round()).astype(int)
    return RocCurve(
        target=target,
        fpr=points["fpr"][keep].tolist(),
        tpr=points["tpr"][keep].tolist(),
        thresholds=points["thresholds"][keep].tolist(),
    )


# --- explain -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explained:
    variant: str
    run_id: str
    n_compared: int  # filters with enough sites to be compared with JASPAR
    n_matched: int  # ... whose best JASPAR match has q < explain_filters.max_q


def shards_for_explain(params: Params, valid_artifact: str, test_artifact: str) -> str:
    """The shard folder of explain_filters.split within the valid or test shard artifact."""
    split = params.explain_filters.split
    if split == VALID_SPLIT:
        return f"{valid_artifact}/{VALID_SPLIT}"
    if split == TEST_SPLIT:
        return f"{test_artifact}/{TEST_SPLIT}"
    raise ConfigError(
        f"explain_filters.split: {split!r}; a pipeline step after training has the "
        f"{VALID_SPLIT} and {TEST_SPLIT} shards only"
    )


def explain_model(
    params: Params, model_dir: str, eval_dir: str, shard_dir: str, out_dir: str
) -> Explained:
    """The filter report (danq.interpretation.explain) of the model that stands for the
    variant (with train.seeds > 1, the seed its evaluation in eval_dir selected), scanned over
    the shards in shard_dir, written to out_dir and logged to the model's MLflow training run
    under explain/, as `dvc repro` logs it."""
    from danq.evaluation.scoring import load_candidate
    from danq.evaluation.seeds import selected_model_dir
    from danq.interpretation.explain import explain_filters
    from danq.interpretation.filters import shard_batches
    from danq.tracking import client, resolve_uri

    variant = _variant_of(model_dir, RUN_FILE)
    chosen = selected_model_dir(model_dir, eval_dir, params)
    run = read_json(Path(chosen, RUN_FILE))
    tracking_uri = resolve_uri(params.mlflow)
    loaded = load_candidate(run, chosen, tracking_uri)
    settings = params.explain_filters
    explained = explain_filters(
        loaded.model,
        shard_batches(shard_dir, settings.batch_size),
        settings,
        out_dir,
        title=f"Filters of {variant} ({loaded.source}, sha256 {loaded.sha256})",
    )
    client(tracking_uri).log_artifacts(run["run_id"], out_dir, artifact_path=EXPLAIN_ARTIFACT_PATH)
    return Explained(
        variant, run["run_id"], explained.summary.n_compared, explained.summary.n_matched
    )


# --- compare and promote -------------------------------------------------------------------


def _variant_of(folder: str, marker: str) -> str:
    """The variant named in folder/marker, or in folder/seeds.json (several seeds)."""
    path = Path(folder, marker)
    if not path.exists() and Path(folder, SEEDS_FILE).exists():
        path = Path(folder, SEEDS_FILE)
    try:
        return str(read_json(path)["variant"])
    except (OSError, KeyError, ValueError) as err:
        raise CandidateError(f"{path}: cannot tell which variant this is: {err}") from err


def stage_by_variant(
    folders: Iterable[str], marker: str, dest: str, copy: bool = False
) -> list[str]:
    """Link (or copy) each artifact folder as dest/<variant>/, the layout that
    danq.evaluation.report and danq.promotion.promote read; returns the variants in VARIANTS
    (baseline first, so ties and differences read as in `danq promote`)."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    variants = []
    for folder in folders:
        variant = _variant_of(folder, marker)
        if variant in variants:
            raise CandidateError(f"two {marker} folders are both variant {variant!r}")
        if copy:
            shutil.copytree(folder, Path(dest, variant))
        else:
            Path(dest, variant).symlink_to(Path(folder).resolve(), target_is_directory=True)
        variants.append(variant)
    return _ordered(variants)


def _ordered(variants: Iterable[str]) -> list[str]:
    return sorted(variants, key=lambda v: (VARIANTS.index(v) if v in VARIANTS else 99, v))


def sampled_rows(candidates_dir: str, variants: Sequence[str]) -> np.ndarray:
    """The validation rows the candidates' predictions hold (where the decision is made and
    the champion is re-scored), which must be the same for all: the comparisons are paired by
    row."""
    rows: np.ndarray | None = None
    for variant in variants:
        path = Path(candidates_dir, variant, VALID_DIR, PREDICTIONS_FILE)
        try:
            with np.load(path) as predictions:
                these = predictions[ROWS_KEY]
        except (OSError, KeyError, ValueError) as err:
            raise CandidateError(f"{path}: no validation rows recorded ({err})") from err
        if rows is not None and not np.array_equal(rows, these):
            raise CandidateError(
                f"{path}: other validation rows than {variants[0]}'s; evaluate both with the "
                "same seed, promote.bootstrap_max_rows and promote.bootstrap_block_rows"
            )
        rows = these
    if rows is None:
        raise CandidateError(f"{candidates_dir}: no candidates")
    return rows


def _champion_predictor(
    params: Params, shard_dir: str, rows: np.ndarray, cache: str | None
) -> PredictFn:
    """Scores of a model URI on the candidates' validation rows; a registered version's scores
    are read from cache when compare already computed them (versions are immutable)."""
    from danq.evaluation.scoring import predict_uri

    def predict(model_uri: str) -> np.ndarray:
        if cache:
            with np.load(cache) as saved:
                if str(saved["model_uri"]) == model_uri:
                    return saved["y_score"]
        return predict_uri(model_uri, shard_dir, params.evaluate.batch_size, rows=rows)

    return predict


def compare_candidates(
    params: Params,
    training_dirs: Sequence[str],
    eval_dirs: Sequence[str],
    shard_dir: str,
    work: str,
    candidates_dir: str,
    scores_path: str,
) -> tuple[dict[str, Any], Blessing]:
    """The comparison report (work/report/) and the blessing decision against the current
    champion, without changing the registry; shard_dir: the validation shards. The
    evaluations are copied to candidates_dir/<variant>/ and the champion's scores on their
    validation rows to scores_path (an .npz), the inputs of the promote step. Returns
    (comparison, blessing)."""
    from danq.evaluation.report import build_report
    from danq.promotion import registry
    from danq.promotion.decide import decide
    from danq.promotion.promote import load_candidates, score_champion

    variants = stage_by_variant(training_dirs, RUN_FILE, os.path.join(work, "models"))
    if stage_by_variant(eval_dirs, METRICS_FILE, candidates_dir, copy=True) != variants:
        raise CandidateError("the trained and the evaluated variants differ")
    comparison = build_report(
        params,
        variants,
        models_dir=os.path.join(work, "models"),
        eval_dir=candidates_dir,
        out_dir=os.path.join(work, REPORT_DIR),
    )
    y_true, candidates = load_candidates(candidates_dir, variants, params.promote.metric)
    rows = sampled_rows(candidates_dir, variants)
    client = registry.connect(params)
    champion = score_champion(
        client,
        params.mlflow.registered_model,
        _champion_predictor(params, shard_dir, rows, None),
    )
    # Written even without a champion: an output artifact must exist for KFP to upload it.
    # To a file object: given a path, numpy appends ".npz" and the artifact's path stays empty.
    with open(scores_path, "wb") as fh:
        np.savez(
            fh,
            model_uri=champion.model_uri if champion else "",
            y_score=champion.y_score if champion else np.empty((0, 0), np.float32),
        )
    blessing = decide(y_true, candidates, champion, params.promote, params.seed)
    return comparison, blessing


def promote_round(
    params: Params,
    candidates_dir: str,
    shard_dir: str,
    champion_scores: str,
    out_dir: str,
    lineage: Lineage,
) -> Blessing:
    """One promotion round (danq.promotion.promote) over candidates_dir/<variant>/, the
    champion re-scored on the validation shards shard_dir; blessing.json in out_dir; every
    registered version carries the run's lineage tags. The
    round decides again against the registry as it is now, so a champion that moved since
    compare is judged afresh rather than replaced on a stale decision."""
    from danq.promotion import registry
    from danq.promotion.promote import promote_candidates

    variants = _ordered(p.name for p in Path(candidates_dir).iterdir() if p.is_dir())
    rows = sampled_rows(candidates_dir, variants)
    return promote_candidates(
        registry.connect(params),
        params.mlflow.registered_model,
        params.promote,
        candidates_dir,
        variants,
        out_dir,
        _champion_predictor(params, shard_dir, rows, champion_scores),
        params.seed,
        version_tags=lineage.tags(),
    )


def blessing_markdown(blessing: Blessing) -> str:
    """The decision in words and one row per candidate, for the KFP UI."""
    lines = [
        f"# Promotion decision: {blessing.decision}",
        "",
        blessing.reason,
        "",
        f"Decided on {blessing.decided_on}; {blessing.reported_on} is reported only.",
        "",
        "| variant | valid macro AUROC | valid macro AUPR | test macro AUROC (reported) | "
        "test macro AUPR (reported) | floors | vs champion | blessed | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in blessing.candidates:
        vs = "" if v.vs_champion is None else f"{v.vs_champion.delta:+.4f}"
        test = [v.test_metrics.get(k) for k in ("auroc", "aupr")]
        test_cells = " | ".join("n/a" if t is None else f"{t:.4f}" for t in test)
        lines.append(
            f"| {v.variant} | {v.metrics['auroc']:.4f} | {v.metrics['aupr']:.4f} | "
            f"{test_cells} | {'pass' if v.floors_passed else 'fail'} | {vs} | "
            f"{'yes' if v.blessed else 'no'} | {v.reason} |"
        )
    if blessing.registry:
        lines += [
            "",
            f"Registry aliases of {blessing.registry['model']}: {blessing.registry['aliases']}",
        ]
    return "\n".join(lines) + "\n"

"""`danq evaluate`: validation and test scoring with the DeepSEA protocol.

Each sequence is scored together with its reverse complement and the two predictions are
averaged (DeepSEA, DanQ), so one row of predictions is one forward/reverse pair. Per-target
ROC AUC and average precision come from danq.evaluation.metrics (exact, vectorised); targets
without positives are reported as skipped.
Outputs per variant, under build/eval/<variant>/: metrics.json (test metrics as before, plus
the validation summary under "validation"; the command also copies it to
<paths.metrics_dir>/<variant>.json for `dvc metrics`), per_target.tsv, predictions.npz, ROC /
PR curve points for a few named targets (for the report's plots and MLflow), and valid/ with
the validation split's metrics.json, per_target.tsv and predictions.npz. Promotion decides on
valid/ and only reports the test metrics; with several seeds per variant see
danq.evaluation.seeds.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import artifacts, tracking
from danq.artifacts import EVAL_SEEDS_DIR, VALID_DIR
from danq.config import Params
from danq.data.shards import Manifest, read_manifest
from danq.data.targets import shard_target_table
from danq.errors import DataError, EvaluationError
from danq.evaluation.metrics import (
    json_safe,
    per_target_auroc_aupr,
    per_target_table,
    summarise,
)
from danq.evaluation.seeds import SeedRun, trained_runs
from danq.io import storage
from danq.model.loading import load_model, load_verified_model
from danq.redaction import redact_uri

if TYPE_CHECKING:
    import keras

    from danq.model.integrity import VerifiedModel

RUN_ARTIFACT_PATH = "evaluation"  # where the evaluation files go among the run's artifacts
SUMMARY_KEYS = ("auroc", "aupr", "n_scoreable", "n_skipped", "skipped")


def check_rows(rows: np.ndarray, n_forward: int, where: str) -> np.ndarray:
    """rows as int64 if they are sorted, distinct indices into n_forward sequences."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise DataError(f"{where}: rows must be a 1-D array of integer indices")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n_forward):
        bad = rows[(rows < 0) | (rows >= n_forward)][0]
        raise DataError(f"{where}: row {bad} is out of range (the split has {n_forward} sequences)")
    steps = np.diff(rows)
    if (steps == 0).any():
        raise DataError(f"{where}: row {rows[1:][steps == 0][0]} is given twice")
    if (steps < 0).any():
        at = int(np.flatnonzero(steps < 0)[0])
        raise DataError(f"{where}: rows are not sorted ({rows[at]} before {rows[at + 1]})")
    return rows


def predict_split(
    model: keras.Model, shard_dir: str, batch_size: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n, T) uint8 and RC-averaged scores (n, T) float32 for the n forward sequences.

    The shards stream the forward half first and the reverse-complement half second, in the
    same order (stored, or regenerated for "forward" shards), so sample i and i + n pair up.
    rows (sorted, distinct indices of forward sequences): score only those and their reverse
    complements, (len(rows), T) in that order.
    """
    from danq.data.dataset import make_dataset

    manifest = read_manifest(shard_dir)
    check_model_fits(model, manifest, shard_dir)
    total = manifest.n_source_samples
    if total % 2:
        raise DataError(f"{shard_dir}: {total} samples cannot pair forward with reverse halves")
    if rows is not None:
        rows = check_rows(rows, total // 2, shard_dir)
        return _predict_rows(model, shard_dir, manifest, batch_size, rows)
    scores = np.empty((total, manifest.n_targets), dtype=np.float32)
    labels = np.empty((total, manifest.n_targets), dtype=np.uint8)
    at = 0
    for x, y in make_dataset(shard_dir, batch_size):
        n = len(y)
        scores[at : at + n] = model.predict_on_batch(x)
        labels[at : at + n] = y.numpy()
        at += n
    half = total // 2
    return labels[:half], (scores[:half] + scores[half:]) / 2


def _predict_rows(
    model: keras.Model, shard_dir: str, manifest: Manifest, batch_size: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """predict_split over the given forward rows: samples are dropped batch by batch, still
    as base codes, so the model and the one-hot expansion see only the wanted ones."""
    import tensorflow as tf

    from danq.data.dataset import make_dataset, one_hot

    total, k = manifest.n_source_samples, len(rows)
    if k == 0:
        empty = np.empty((0, manifest.n_targets))
        return empty.astype(np.uint8), empty.astype(np.float32)
    wanted = np.zeros(total, dtype=bool)
    wanted[rows] = wanted[rows + total // 2] = True
    mask = tf.constant(wanted)

    def keep(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        codes, labels = batch
        index = step * batch_size + tf.range(tf.shape(codes, out_type=tf.int64)[0])
        chosen = tf.gather(mask, index)
        return tf.boolean_mask(codes, chosen), tf.boolean_mask(labels, chosen)

    # Every batch but the last is full (no shuffling), so step * batch_size is its first sample.
    batches = (
        make_dataset(shard_dir, batch_size, codes_only=True)
        .enumerate()
        .map(keep)
        .unbatch()
        .batch(batch_size)
        .map(lambda codes, labels: (one_hot(codes), labels))
    )
    scores = np.empty((2 * k, manifest.n_targets), dtype=np.float32)
    labels = np.empty((2 * k, manifest.n_targets), dtype=np.uint8)
    at = 0
    for x, y in batches:
        n = len(y)
        scores[at : at + n] = model.predict_on_batch(x)
        labels[at : at + n] = y.numpy()
        at += n
    if at != 2 * k:
        raise DataError(f"{shard_dir}: streamed {at} of the {2 * k} wanted samples")
    return labels[:k], (scores[:k] + scores[k:]) / 2


def check_model_fits(model: keras.Model, manifest: Manifest, shard_dir: str) -> None:
    """A DataError when the model's input length or output count differs from the shards'
    (e.g. a champion trained on data of another layout), before anything is scored."""
    seq_len, n_outputs = model.input_shape[1], model.output_shape[-1]
    if (seq_len, n_outputs) != (manifest.seq_len, manifest.n_targets):
        raise DataError(
            f"{shard_dir}: {manifest.seq_len}-bp sequences with {manifest.n_targets} targets, but "
            f"the model {getattr(model, 'name', '')!r} takes {seq_len}-bp sequences and has "
            f"{n_outputs} outputs: it was trained on data of another layout and cannot be scored "
            "on these rows"
        )


def predict_uri(
    model_uri: str, shard_dir: str, batch_size: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """RC-averaged test scores of the model at model_uri (e.g. the current champion); an
    MLflow URI resolves against the fluent API's tracking server (see tracking.using), and
    its file must match the sha256 recorded in the registry before anything is scored.
    rows: only those forward sequences (see predict_split)."""
    return predict_split(load_model(model_uri), shard_dir, batch_size, rows)[1]


def curve_points(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and precision-recall curve points of one target over distinct thresholds.

    Point i > 0 counts the scores >= thresholds[i] as positive; the (0, 0) start has a
    threshold just above the highest score."""
    order = np.argsort(-y_score, kind="mergesort")
    y, s = y_true[order].astype(np.float64), y_score[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    positives, negatives = max(tp[-1], 1), max(fp[-1], 1)
    return {
        "thresholds": np.r_[np.nextafter(s[0], np.inf), s[last_of_tie]],
        "fpr": np.r_[0.0, fp / negatives],
        "tpr": np.r_[0.0, tp / positives],
        "recall": np.r_[0.0, tp / positives],
        "precision": np.r_[1.0, tp / (tp + fp)],
    }


def curve_targets(
    names: list[str], categories: dict[str, list[int]], auroc: np.ndarray, count: int
) -> list[int]:
    """A few scoreable targets to plot: the first of each category, then by index."""
    chosen: list[int] = []
    for members in categories.values():
        scoreable = [t for t in members if not np.isnan(auroc[t])]
        if scoreable and len(chosen) < count:
            chosen.append(scoreable[0])
    for t in range(len(names)):
        if len(chosen) >= count:
            break
        if t not in chosen and not np.isnan(auroc[t]):
            chosen.append(t)
    return sorted(chosen)


def evaluate_variant(
    params: Params,
    variant: str,
    model_dir: str,
    shard_dir: str,
    out_dir: str,
    data_dir: str | None,
    valid_shard_dir: str | None = None,
) -> dict[str, Any]:
    """Score one trained model on the test shards (and, given valid_shard_dir, the validation
    shards) and write its evaluation outputs; returns metrics.json's content.

    Target names come from the shards (targets.json); data_dir, when given, must agree.
    """
    run_info = artifacts.read_json(Path(model_dir, artifacts.RUN_FILE))
    # Names, the training run and the model's checksum first: disagreeing data, another
    # store or a tampered model are refused before hours of scoring, not after.
    names, categories = shard_target_table(read_manifest(shard_dir).n_targets, shard_dir, data_dir)
    if valid_shard_dir is not None:
        valid_names, _ = shard_target_table(
            read_manifest(valid_shard_dir).n_targets, valid_shard_dir, data_dir
        )
        if valid_names != names:
            raise EvaluationError(
                f"{valid_shard_dir}: other targets than the test shards {shard_dir}"
            )
    tracking_uri = tracking.resolve_uri(params.mlflow)
    run_id = run_info.get("run_id")
    provenance = _provenance(tracking_uri, run_id)
    loaded = load_candidate(run_info, model_dir, tracking_uri)
    out = Path(out_dir)
    validation = None
    if valid_shard_dir is not None:
        validation = _score_split(
            loaded.model, valid_shard_dir, params, names, categories, out / VALID_DIR
        )
        write_metrics(out / VALID_DIR / artifacts.METRICS_FILE, {"variant": variant, **validation})
    y_true, y_score = predict_split(loaded.model, shard_dir, params.evaluate.batch_size)
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    summary = summarise(auroc, aupr, categories)
    metrics = {
        "variant": variant,
        "split": "test",
        "model_uri": run_info.get("model_uri"),
        "model_source": loaded.source,
        "model_sha256": loaded.sha256,
        "mlflow_run_id": run_id,
        "train_seed": run_info.get("settings", {}).get("train.seed"),
        "n_test": int(len(y_true)),
        "n_targets": int(y_true.shape[1]),
        "overall": {k: summary[k] for k in SUMMARY_KEYS},
        "categories": summary["categories"],
        **provenance,
    }
    if validation is not None:
        # Labelled apart from the test metrics above: promotion decides on these.
        metrics["validation"] = validation
    _write_predictions(out / artifacts.PREDICTIONS_FILE, y_true, y_score)
    artifacts.write_text(
        out / artifacts.PER_TARGET_FILE, per_target_table(names, categories, y_true, auroc, aupr)
    )
    plotted = curve_targets(names, categories, auroc, params.evaluate.curve_targets)
    curves = curve_rows(names, y_true, y_score, plotted)
    artifacts.write_text(out / artifacts.CURVES_FILE, json.dumps(curves) + "\n")
    write_metrics(out / artifacts.METRICS_FILE, metrics)
    _log_to_mlflow(tracking_uri, metrics, out)
    return metrics


def _score_split(
    model: keras.Model,
    shard_dir: str,
    params: Params,
    names: list[str],
    categories: dict[str, list[int]],
    out: Path,
) -> dict[str, Any]:
    """Predictions, per-target table and summary of one more split (validation) into out."""
    y_true, y_score = predict_split(model, shard_dir, params.evaluate.batch_size)
    auroc, aupr = per_target_auroc_aupr(y_true, y_score)
    summary = summarise(auroc, aupr, categories)
    _write_predictions(out / artifacts.PREDICTIONS_FILE, y_true, y_score)
    artifacts.write_text(
        out / artifacts.PER_TARGET_FILE, per_target_table(names, categories, y_true, auroc, aupr)
    )
    return {
        "split": VALID_DIR,
        "n": int(len(y_true)),
        "overall": {k: summary[k] for k in SUMMARY_KEYS},
        "categories": summary["categories"],
    }


def evaluate_seeds(
    params: Params,
    variant: str,
    model_dir: str,
    shard_dir: str,
    valid_shard_dir: str,
    out_dir: str,
    data_dir: str | None,
) -> dict[str, Any]:
    """Evaluate a variant on validation and test: its one model (train.seeds = 1), or each
    seed into <out_dir>/seeds/seed-<i>/ with the seed best on validation (promote.metric;
    ties: the lower seed) copied to out_dir. metrics.json then lists every seed's validation
    and test macro metrics ("seeds") and names the selected one ("selected_seed"); the
    choice never looks at test."""
    runs = trained_runs(model_dir, params)
    if len(runs) == 1 and not runs[0].folder:
        return evaluate_variant(
            params, variant, model_dir, shard_dir, out_dir, data_dir, valid_shard_dir
        )
    seeds_dir = Path(out_dir, EVAL_SEEDS_DIR)
    if seeds_dir.exists():  # a previous evaluation's seeds, maybe more of them
        shutil.rmtree(seeds_dir)
    per_seed = [
        evaluate_variant(
            params,
            variant,
            str(Path(model_dir, run.folder)),
            shard_dir,
            str(seeds_dir / run.folder),
            data_dir,
            valid_shard_dir,
        )
        for run in runs
    ]
    metric = params.promote.metric
    scores = [m["validation"]["overall"][metric] for m in per_seed]
    best = max(range(len(runs)), key=lambda i: _comparable(scores[i]))
    chosen = seeds_dir / runs[best].folder
    for name in (artifacts.PREDICTIONS_FILE, artifacts.PER_TARGET_FILE, artifacts.CURVES_FILE):
        artifacts.write_atomically(Path(out_dir, name), partial(shutil.copyfile, chosen / name))
    if Path(out_dir, VALID_DIR).exists():
        shutil.rmtree(Path(out_dir, VALID_DIR))
    shutil.copytree(chosen / VALID_DIR, Path(out_dir, VALID_DIR))
    metrics = {
        **per_seed[best],
        "selected_seed": _seed_entry(runs[best], per_seed[best]),
        "selected_on": f"{VALID_DIR} macro {metric}",
        "seeds": [_seed_entry(run, m) for run, m in zip(runs, per_seed, strict=True)],
    }
    write_metrics(Path(out_dir, artifacts.METRICS_FILE), metrics)
    return metrics


def _comparable(value: float | None) -> float:
    return float("-inf") if value is None or np.isnan(value) else float(value)


def _seed_entry(run: SeedRun, metrics: dict[str, Any]) -> dict[str, Any]:
    """One seed's line in a multi-seed metrics.json."""
    return {
        "index": run.index,
        "seed": run.seed,
        "folder": run.folder,
        "mlflow_run_id": metrics["mlflow_run_id"],
        "model_uri": metrics["model_uri"],
        "valid": {k: metrics["validation"]["overall"][k] for k in ("auroc", "aupr")},
        "test": {k: metrics["overall"][k] for k in ("auroc", "aupr")},
    }


def load_candidate(run_info: dict[str, Any], model_dir: str, tracking_uri: str) -> VerifiedModel:
    """The trained model to score.

    When training logged it (run.json's model_uri), the logged model, once its file matches
    the sha256 recorded at logging: the bytes scored are the bytes registration verifies and
    registers, and metrics.json carries their sha256. A folder without an MLflow record
    (a model saved by hand): its model.keras, in safe mode, with no checksum to compare."""
    model_uri = run_info.get("model_uri")
    if model_uri:
        return load_verified_model(model_uri, tracking_uri)
    return load_verified_model(storage.join(model_dir, artifacts.MODEL_FILE))


def write_metrics(path: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    """metrics.json as evaluation writes it (NaN as null), atomically."""
    artifacts.write_json(path, json_safe(metrics))


def _write_predictions(path: Path, y_true: np.ndarray, y_score: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        # A file object: given a name, numpy would append ".npz" to the temporary one.
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, y_true=y_true, y_score=y_score)

    artifacts.write_atomically(path, save)


def curve_rows(
    names: list[str], y_true: np.ndarray, y_score: np.ndarray, targets: list[int]
) -> list[dict[str, Any]]:
    """curves.json: the ROC and PR points of each target in targets, rounded to 5 digits."""
    rows = []
    for t in targets:
        points = curve_points(y_true[:, t], y_score[:, t])
        for fpr, tpr, rec, prec in zip(
            points["fpr"], points["tpr"], points["recall"], points["precision"], strict=True
        ):
            rows.append(
                {
                    "target": names[t],
                    "fpr": round(float(fpr), 5),
                    "tpr": round(float(tpr), 5),
                    "recall": round(float(rec), 5),
                    "precision": round(float(prec), 5),
                }
            )
    return rows


def _provenance(tracking_uri: str, run_id: str | None) -> dict[str, str | None]:
    """The data version and code version that training recorded on its MLflow run."""
    if not run_id:
        return {"data_md5": None, "git_commit": None}
    from mlflow.exceptions import MlflowException

    try:
        tags = tracking.client(tracking_uri).get_run(run_id).data.tags
    except MlflowException as err:
        raise EvaluationError(
            f"training run {run_id} is not in the MLflow store {redact_uri(tracking_uri)} "
            f"({tracking.error_text(err)}); "
            "the model was trained against another store: train again (dvc repro -f train)"
        ) from None
    return {
        "data_md5": tags.get(artifacts.TAG_DATA_MD5),
        "git_commit": tags.get(artifacts.TAG_GIT_COMMIT),
    }


def _log_to_mlflow(tracking_uri: str, metrics: dict[str, Any], out: Path) -> None:
    """Test metrics (reported), validation metrics (what promotion decides on) and the
    evaluation files on the variant's training run."""
    run_id = metrics.get("mlflow_run_id")
    if not run_id:
        return
    client = tracking.client(tracking_uri)
    values = {}
    splits = [("test", metrics)]
    if "validation" in metrics:
        splits.append(("valid", metrics["validation"]))
    for prefix, split in splits:
        values[f"{prefix}_macro_auroc"] = split["overall"]["auroc"]
        values[f"{prefix}_macro_aupr"] = split["overall"]["aupr"]
        for category, summary in split["categories"].items():
            values[f"{prefix}_macro_auroc_{category}"] = summary["auroc"]
            values[f"{prefix}_macro_aupr_{category}"] = summary["aupr"]
    for key, value in values.items():
        if value is not None and not np.isnan(value):  # an empty category has no mean
            client.log_metric(run_id, key, float(value))
    for name in (artifacts.METRICS_FILE, artifacts.PER_TARGET_FILE, artifacts.CURVES_FILE):
        client.log_artifact(run_id, str(out / name), artifact_path=RUN_ARTIFACT_PATH)

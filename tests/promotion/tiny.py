"""Tiny real Keras models logged as training logs them, and the files promotion reads.

Candidates are tiny Keras models (4 inputs -> 5 sigmoid targets) whose weights are the true
weights of a synthetic task plus a fixed perturbation: the larger it is, the worse the model.
They are logged with tracking.log_keras_model (which records the model file's sha256), and a
champion is re-scored by loading it back from the registry after checking that sha256.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from danq import artifacts, tracking
from danq.config import VARIANTS

N_ROWS, N_INPUTS, N_TARGETS = 1500, 4, 5


def make_task() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_INPUTS)).astype(np.float32)
    weights = rng.normal(size=(N_INPUTS, N_TARGETS))
    labels = (x @ weights + rng.logistic(size=(N_ROWS, N_TARGETS)) > 1.5).astype(np.uint8)
    return {"x": x, "y": labels, "weights": weights, "direction": rng.normal(size=weights.shape)}


def log_models(
    uri: str, experiment: str, task: Mapping[str, np.ndarray], perturbations: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """Each model of perturbations logged as its own run: run_id, model_uri, test scores."""
    import keras
    import mlflow

    out = {}
    with tracking.using(uri):
        found = mlflow.set_experiment(experiment)
        for key, perturbation in perturbations.items():
            model = keras.Sequential(
                [keras.Input((N_INPUTS,)), keras.layers.Dense(N_TARGETS, activation="sigmoid")]
            )
            kernel = task["weights"] + perturbation * task["direction"]
            model.set_weights([kernel.astype(np.float32), np.zeros(N_TARGETS, np.float32)])
            with mlflow.start_run(experiment_id=found.experiment_id, run_name=key) as run:
                model_uri = tracking.log_keras_model(
                    model, task["x"][:8], [f"t{i}" for i in range(N_TARGETS)]
                )
            out[key] = {
                "run_id": run.info.run_id,
                "model_uri": model_uri,
                "y_score": model.predict(task["x"], verbose=0),
            }
    return out


def predict_fn(task: Mapping[str, np.ndarray]) -> Callable[[str], np.ndarray]:
    """Score a registered model on the test inputs after loading it back, verified, from the
    server. Its models:/ URI resolves only if promotion points MLflow's fluent API at the
    registry's server while it scores: nothing else here does."""
    import mlflow

    from danq.model.integrity import load_verified

    def score(model_uri: str) -> np.ndarray:
        model = load_verified(mlflow.MlflowClient(), model_uri).model
        return np.asarray(model.predict(task["x"], verbose=0))

    return score


def write_round(
    folder: Path,
    task: Mapping[str, np.ndarray],
    logged: Mapping[str, Mapping[str, Any]],
    round_name: str,
    variants: tuple[str, ...] = VARIANTS,
    test_scores: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """<folder>/<variant>/{metrics.json,predictions.npz,valid/predictions.npz} for one
    round's candidates, the models logged as f"{round_name}_{variant}". The task's rows are
    the validation split (what promotion decides on, and what the champion is re-scored on);
    the test predictions and metrics are the model's own scores unless test_scores gives
    others by variant (test is only reported)."""
    from danq.artifacts import VALID_DIR
    from danq.promotion.decide import macro_metrics

    for variant in variants:
        entry = logged[f"{round_name}_{variant}"]
        out = folder / variant
        (out / VALID_DIR).mkdir(parents=True)
        test = entry["y_score"] if test_scores is None else test_scores[variant]
        test_macro, _ = macro_metrics(task["y"], test)
        valid_macro, _ = macro_metrics(task["y"], entry["y_score"])
        (out / artifacts.METRICS_FILE).write_text(
            json.dumps(
                {
                    "variant": variant,
                    "split": "test",
                    "model_uri": entry["model_uri"],
                    "mlflow_run_id": entry["run_id"],
                    "n_test": N_ROWS,
                    "n_targets": N_TARGETS,
                    "overall": test_macro,
                    "validation": {"split": VALID_DIR, "n": N_ROWS, "overall": valid_macro},
                    "data_md5": "d41d8cd9",
                    "git_commit": f"commit-{round_name}",
                }
            )
        )
        np.savez_compressed(out / artifacts.PREDICTIONS_FILE, y_true=task["y"], y_score=test)
        np.savez_compressed(
            out / VALID_DIR / artifacts.PREDICTIONS_FILE,
            y_true=task["y"],
            y_score=entry["y_score"],
        )
    return folder


def write_params(path: Path, tracking_uri: str, name: str, **sections: Mapping[str, Any]) -> str:
    """A params file for `danq` commands on this registry; sections update the defaults."""
    raw: dict[str, Any] = {
        "paths": {"work_dir": str(path.parent)},
        "mlflow": {"tracking_uri": tracking_uri, "registered_model": name},
        "promote": {"bootstrap_samples": 100, "min_macro_auroc": 0.55, "max_retries": 1},
    }
    for section, settings in sections.items():
        raw[section] = {**raw.get(section, {}), **settings}
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def version_sources(client: Any, name: str, logged: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Register each logged model (a RetryingClient's register_candidate: its sha256 checked)
    as a version of `name`; what new versions of other registered models can be made from."""
    from danq.artifacts import TAG_MODEL_SHA256
    from danq.promotion.registry import register_candidate

    out = []
    for key, entry in logged.items():
        version = register_candidate(client, name, entry["model_uri"], {"danq.variant": key})
        found = client.get_model_version(name, version)
        out.append(
            {
                "source": found.source,
                "run_id": found.run_id,
                "model_id": found.source.removeprefix("models:/"),  # a logged model's id
                "tags": {TAG_MODEL_SHA256: found.tags[TAG_MODEL_SHA256], "danq.variant": key},
            }
        )
    return out


def make_versions(uri: str, name: str, sources: list[dict]) -> list[str]:
    """A registered model `name` with one version per source, in order (as registration
    would make them, with the sha256 tag, without downloading the files again)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(uri, uri)
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    with tracking.using(uri):  # a models:/m-... source resolves through the global URI
        return [
            str(
                client.create_model_version(
                    name,
                    s["source"],
                    run_id=s["run_id"],
                    tags=s["tags"],
                    model_id=s["model_id"],
                    await_creation_for=0,
                ).version
            )
            for s in sources
        ]


class FailingClient:
    """An MlflowClient whose set_registered_model_alias raises on chosen calls: a failure (or
    a kill) between two alias writes."""

    def __init__(self, inner: Any, should_fail: Callable[[int, str, str], Exception | None]):
        self.inner = inner
        self.should_fail = should_fail  # (call number, alias, version) -> exception or None
        self.alias_calls: list[tuple[str, str]] = []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.alias_calls.append((alias, version))
        error = self.should_fail(len(self.alias_calls), alias, version)
        if error is not None:
            raise error
        self.inner.set_registered_model_alias(name, alias, version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

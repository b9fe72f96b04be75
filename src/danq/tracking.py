"""MLflow: the only module that knows the tracking/registry URI, and how runs are tracked.

Everything else asks here for a client bound to an explicit URI (`client`), or runs MLflow's
fluent API (start_run, log_model, load_model of a models:/ URI) inside `using(uri)`, which
restores MLflow's global URIs and their environment variables on exit, so no setting leaks
from one command, test or pipeline step into the next.

A run records the settings as params, per-epoch curves as metrics with step = epoch, and as tags
the data version (the md5 in the DVC pointer file beside the data folder and its remote URL),
the git commit of the code and the versions of the libraries that trained the model.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml

from danq.artifacts import GENOME_METADATA_KEY
from danq.config import MlflowConfig
from danq.redaction import redact_text

MODEL_ARTIFACT = "model"
VERSIONED_PACKAGES = ("tensorflow", "keras", "mlflow", "numpy", "danq")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
REGISTRY_URI_VARIABLE = "MLFLOW_REGISTRY_URI"
HTTP_TIMEOUT_S = 10


def error_text(err: Exception) -> str:
    """An MLflow error's message with any password or token in the URLs it quotes redacted
    (MLflow quotes the whole request URL, a login in it included)."""
    return redact_text(getattr(err, "message", None) or str(err))


def resolve_uri(cfg: MlflowConfig) -> str:
    """The tracking (and registry) URI: mlflow.tracking_uri in params.yaml, else
    MLFLOW_TRACKING_URI, else a SQLite store in the working directory."""
    return cfg.tracking_uri or os.environ.get(TRACKING_URI_VARIABLE) or DEFAULT_TRACKING_URI


def client(uri: str) -> mlflow.MlflowClient:
    """A client for the tracking server at uri, which is also the model registry."""
    quiet_mlflow()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def using(uri: str) -> Iterator[None]:
    """MLflow's fluent API (runs, model logging and loading, models:/ URIs) against uri within
    this scope; the previous URIs, and the environment variables MLflow sets with them, are
    restored after it."""
    quiet_mlflow()
    names = (TRACKING_URI_VARIABLE, REGISTRY_URI_VARIABLE)
    saved_env = {name: os.environ.get(name) for name in names}
    saved_tracking = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    saved_registry = saved_env[REGISTRY_URI_VARIABLE]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        # None is what MLflow starts with: resolve from the environment, else its default.
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
        mlflow.set_registry_uri(saved_registry)  # type: ignore[arg-type]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def fail_fast_http(timeout_s: int = HTTP_TIMEOUT_S) -> Iterator[None]:
    """Within this scope MLflow's HTTP client makes one attempt per call, with a short timeout.

    By default it retries 7 times with exponential backoff (minutes); callers that retry on
    their own (the registry's RetryingClient) replace that with a bound of their own.
    """
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    settings = {
        MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0",
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name: "0",
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.name: "0",
        MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(timeout_s),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def quiet_mlflow() -> None:
    """Keep MLflow's INFO chatter (store migrations, run links) out of the training log.

    Warnings and errors still show, and failing tracking calls still raise.
    """
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run ... at <tracking URI>" when a run ends, a password in the URI
    # included (mlflow/tracking/_tracking_service/client.py); the project logs URIs redacted.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def start_run(experiment: str, run_id: str | None, run_name: str) -> mlflow.ActiveRun:
    """Open run_id again to resume it, or start a new run in the experiment. Call it inside
    `using(uri)`: the run is the fluent API's active run."""
    if run_id is not None:
        return mlflow.start_run(run_id=run_id)
    found = mlflow.set_experiment(experiment)
    return mlflow.start_run(experiment_id=found.experiment_id, run_name=run_name)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=epoch)


def logged_steps(run_id: str, metric: str) -> set[int]:
    """Steps at which the run already holds the metric."""
    history = mlflow.MlflowClient().get_metric_history(run_id, metric)
    return {m.step for m in history}


def dvc_pointer(data_dir: str | os.PathLike[str]) -> Path:
    """The file `dvc add <data_dir>` writes: data -> data.dvc, beside the folder."""
    return Path(f"{str(data_dir).rstrip('/')}.dvc")


def data_tags(data_dir: str | os.PathLike[str] | None) -> dict[str, str]:
    """data.md5 from the DVC pointer file and data.dvc_remote, the data's URL on the default
    remote; both absent for data that DVC does not track (or when no remote is configured)."""
    if data_dir is None:
        return {}
    tags = {"data.path": str(data_dir)}
    pointer = dvc_pointer(data_dir)
    if not pointer.exists():
        return tags
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or []
    if outs and outs[0].get("md5"):
        tags["data.md5"] = str(outs[0]["md5"])
    remote = dvc_remote_url(Path(data_dir))
    if remote is not None:
        tags["data.dvc_remote"] = remote
    return tags


def dvc_remote_url(data_dir: Path) -> str | None:
    """Where the default DVC remote stores data_dir, or None outside a DVC repo or remote."""
    import dvc.api
    from dvc.config import NoRemoteError
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        root = Path(Repo.find_root(str(data_dir.resolve().parent)))
        return dvc.api.get_url(str(data_dir.resolve().relative_to(root)), repo=str(root))
    except (NotDvcRepoError, NoRemoteError):
        return None


def git_tags(where: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """git.commit and git.dirty of the repository holding `where` (default: this package's
    source, so an editable install reports the code that actually ran); empty outside git."""
    where = Path(where) if where is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(dirty).lower()}


def version_tags(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    tags = {"versions.python": sys.version.split()[0]}
    for package in packages:
        tags[f"versions.{package}"] = metadata.version(package)
    return tags


def provenance_tags(data_dir: str | os.PathLike[str] | None) -> dict[str, str]:
    return {**data_tags(data_dir), **git_tags(), **version_tags()}


def log_keras_model(
    model: Any,
    sample_x: np.ndarray,
    target_names: list[str],
    genome: Mapping[str, Any] | None = None,
) -> str:
    """Log the model to the active run with a signature inferred from sample_x, as a .keras
    file, and tag the logged model and the run with that file's sha256 (the checksum every
    later load and registration checks); returns the logged model's URI. The target names
    and, when known, the genome the data came from (GENOME_METADATA_KEY) go in its metadata.

    The model carries the danq code that loading it needs (danq.model.mlflow_flavor), so its
    pip requirements name only published packages, pinned; danq itself is not on PyPI.
    Requirements are given, not inferred: inference reloads the model in a subprocess.
    """
    from mlflow.models import Model, infer_signature

    from danq.model import mlflow_flavor
    from danq.model.integrity import record_model_sha256

    predictions = model.predict(sample_x, verbose=0)
    info = Model.log(
        artifact_path=None,
        name=MODEL_ARTIFACT,
        flavor=mlflow_flavor,
        model=model,
        signature=infer_signature(sample_x, predictions),
        metadata={
            "target_names": list(target_names),
            **({GENOME_METADATA_KEY: dict(genome)} if genome else {}),
        },
        pip_requirements=mlflow_flavor.pinned_requirements(),
        save_exported_model=False,  # a .keras file: the only format danq loads
    )
    record_model_sha256(mlflow.MlflowClient(), info.model_uri)
    return info.model_uri


def run_model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"

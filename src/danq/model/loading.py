"""Loading a trained model, and the names of its targets, from a file, a folder or MLflow.

The one model loader of the project: `danq predict` and `danq evaluate` both go through
`load_model`. A model is a .keras (or legacy .h5) file, an MLflow model folder, or an MLflow
URI (models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model or any artifact
URI), resolved against an explicit tracking server.

Target names come from, in order: an explicit file (one per line), the MLflow model's
metadata (`metadata={"target_names": [...]}` at `log_model`), the registered model version's
tags, the run's tags or params (`target_names`, a JSON list), the data folder's
metadata.json when its target count matches, else `target_<i>`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from danq import tracking
from danq.errors import PredictError

if TYPE_CHECKING:
    import keras
    import mlflow

TARGET_NAMES_KEY = "target_names"
MODEL_FILE_SUFFIXES = (".keras", ".h5")
# A URI with a scheme (models:/, runs:/, gs://, file://, mlflow-artifacts:/) goes to MLflow.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # 2+ letters: not C:/
_MODELS_ALIAS_URI = re.compile(r"^models:/([^/@]+)@([^/]+)$")
_MODELS_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")
_REGISTRY_TAGS = "the registered model version's tags"


def is_mlflow_uri(uri: str) -> bool:
    """Whether uri names an MLflow model (a URI with a scheme or a folder with an MLmodel)."""
    return bool(_URI_SCHEME.match(uri)) or (Path(uri) / "MLmodel").is_file()


@contextmanager
def _mlflow_scope(tracking_uri: str | None) -> Iterator[None]:
    """MLflow's fluent API against tracking_uri, or against MLflow's own default when None."""
    tracking.quiet_mlflow()
    if tracking_uri is None:
        yield
        return
    with tracking.using(tracking_uri):
        yield


def _mlflow_client(tracking_uri: str | None) -> mlflow.MlflowClient:
    import mlflow

    return tracking.client(tracking_uri) if tracking_uri else mlflow.MlflowClient()


def load_model(uri: str, tracking_uri: str | None = None) -> keras.Model:
    """A Keras model (not compiled) from a .keras file, an MLflow model folder or an MLflow URI.

    MLflow URIs: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model, or
    any artifact URI, looked up on the tracking server and registry at tracking_uri (MLflow's
    default when None). Raises PredictError when the model is missing or unreadable.
    """
    import keras

    import danq.model.dropout  # noqa: F401 - registers RandomRateDropout for deserialisation

    path = Path(uri)
    if path.is_file():
        if path.suffix not in MODEL_FILE_SUFFIXES:
            raise PredictError(
                f"model {uri}: expected a {' or '.join(MODEL_FILE_SUFFIXES)} file, an MLflow "
                "model folder or an MLflow URI"
            )
        try:
            return keras.saving.load_model(path, compile=False)
        except (OSError, TypeError, ValueError) as err:
            raise PredictError(f"model {uri}: cannot load: {err}") from None
    if not is_mlflow_uri(uri):
        raise PredictError(
            f"model {uri}: no such file or MLflow model folder, and not an MLflow URI "
            "(models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model)"
        )
    import mlflow.keras
    from mlflow.exceptions import MlflowException

    try:
        with _mlflow_scope(tracking_uri):
            return mlflow.keras.load_model(uri, load_model_kwargs={"compile": False})
    except (MlflowException, OSError) as err:
        raise PredictError(f"model {uri}: cannot load: {_mlflow_message(err)}") from None


def _mlflow_message(err: Exception) -> str:
    return getattr(err, "message", None) or str(err)


def _parse_names(value: object, source: str) -> list[str]:
    names = json.loads(value) if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PredictError(f"{source}: '{TARGET_NAMES_KEY}' is not a list of names")
    return names


def _name_sources(uri: str, tracking_uri: str | None) -> list[tuple[str, dict[str, str]]]:
    """Where an MLflow model may keep its target names, most specific first."""
    import mlflow

    with _mlflow_scope(tracking_uri):
        info = mlflow.models.get_model_info(uri)
    sources = [("the MLflow model's metadata", info.metadata or {})]
    if not uri.startswith(("models:/", "runs:/")):
        return sources
    client = _mlflow_client(tracking_uri)
    if alias := _MODELS_ALIAS_URI.match(uri):
        sources.append((_REGISTRY_TAGS, client.get_model_version_by_alias(*alias.groups()).tags))
    elif numbered := _MODELS_VERSION_URI.match(uri):
        sources.append((_REGISTRY_TAGS, client.get_model_version(*numbered.groups()).tags))
    if info.run_id:
        run = client.get_run(info.run_id)
        sources.append(("the MLflow run's tags", run.data.tags))
        sources.append(("the MLflow run's params", run.data.params))
    return sources


def mlflow_target_names(uri: str, tracking_uri: str | None = None) -> tuple[list[str], str] | None:
    """Target names stored with an MLflow model, and where they were found; None if absent.

    Registry and run records are consulted for models:/ and runs:/ URIs only: a copied model
    folder may name a run that the current tracking server does not hold.
    """
    from mlflow.exceptions import MlflowException

    try:
        for source, values in _name_sources(uri, tracking_uri):
            if TARGET_NAMES_KEY in values:
                return _parse_names(values[TARGET_NAMES_KEY], f"{uri} {source}"), source
    except MlflowException as err:
        raise PredictError(f"model {uri}: {_mlflow_message(err)}") from None
    except json.JSONDecodeError as err:
        raise PredictError(f"model {uri}: '{TARGET_NAMES_KEY}' is not JSON: {err}") from None
    return None


def read_target_names(path: str | os.PathLike[str]) -> list[str]:
    """One name per line; blank lines skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PredictError(f"{path}: cannot read target names: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_target_names(
    n_targets: int,
    names_file: str | os.PathLike[str] | None = None,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], str]:
    """The model's target names and where they came from (see the module doc for the order)."""
    names, source = _find_target_names(n_targets, names_file, model_uri, tracking_uri, data_dir)
    bad = [n for n in names if not n or any(c in n for c in "\t\r\n")]
    if bad:
        raise PredictError(f"{source}: target name {bad[0]!r} is empty or holds a tab or newline")
    return names, source


def _find_target_names(
    n_targets: int,
    names_file: str | os.PathLike[str] | None,
    model_uri: str | None,
    tracking_uri: str | None,
    data_dir: str | os.PathLike[str] | None,
) -> tuple[list[str], str]:
    if names_file is not None:
        names = read_target_names(names_file)
        if len(names) != n_targets:
            raise PredictError(
                f"{names_file}: {len(names)} target names, the model has {n_targets} outputs"
            )
        return names, str(names_file)
    if model_uri is not None and is_mlflow_uri(model_uri):
        stored = mlflow_target_names(model_uri, tracking_uri)
        if stored is not None and len(stored[0]) == n_targets:
            return stored
        if stored is not None:
            print(
                f"warning: {len(stored[0])} target names in {stored[1]}, the model has "
                f"{n_targets} outputs; names not used",
                file=sys.stderr,
            )
    if data_dir is not None:
        from danq.data.targets import read_metadata

        targets = (read_metadata(data_dir) or {}).get("targets", [])
        if len(targets) == n_targets:
            ordered = sorted(targets, key=lambda t: t["index"])
            return [t["name"] for t in ordered], f"{data_dir}/metadata.json"
    return [f"target_{i}" for i in range(n_targets)], "generic target_<i>"

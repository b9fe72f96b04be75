"""Loading a trained model, and the names of its targets, from a file, a folder or MLflow.

The one model loader of the project: `danq predict`, `danq evaluate`, the pipeline's compare
and promote's re-scoring of the champion all go through `load_model`, which hands every model
to danq.model.integrity: Keras safe mode, the project's custom objects only, .keras files only
(no .h5, no exported SavedModel), and a sha256 check before anything is deserialised.

- MLflow URIs (models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/<name>,
  models:/<logged model id>), resolved against an explicit tracking server: the file must
  match the sha256 recorded in the registry (the version's tag, or the logged model's).
- A local .keras file or MLflow model folder: checked against expected_sha256 when given
  (`danq predict --model-sha256`), else loaded unchecked. A local file has no registry record;
  a checksum kept beside it would be as writable as the file, so only the caller can vouch
  for it (a training run's own output, for `danq evaluate`).
- Any other URI (gs://, mlflow-artifacts:/, file://): refused. Such a folder is shared
  storage with no registry record; register it, or copy it locally and give its sha256.

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from danq import tracking
from danq.errors import ModelIntegrityError, PredictError
from danq.model.integrity import KERAS_SUFFIX, MLMODEL_FILE, VerifiedModel
from danq.redaction import redact_uri

if TYPE_CHECKING:
    import keras
    import mlflow

TARGET_NAMES_KEY = "target_names"
REFUSED_SUFFIXES = (".h5", ".hdf5")
# A URI with a scheme (models:/, runs:/, gs://, file://, mlflow-artifacts:/) goes to MLflow.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # 2+ letters: not C:/
_REGISTRY_URI = re.compile(r"^(models|runs):/")
_MODELS_ALIAS_URI = re.compile(r"^models:/([^/@]+)@([^/]+)$")
_MODELS_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_REGISTRY_TAGS = "the registered model version's tags"
_METADATA = "the MLflow model's metadata"


def is_mlflow_uri(uri: str) -> bool:
    """Whether uri names an MLflow model (a URI with a scheme or a folder with an MLmodel)."""
    return bool(_URI_SCHEME.match(uri)) or (Path(uri) / MLMODEL_FILE).is_file()


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


def load_model(
    uri: str, tracking_uri: str | None = None, expected_sha256: str | None = None
) -> keras.Model:
    """A Keras model (not compiled), verified as described in the module doc."""
    return load_verified_model(uri, tracking_uri, expected_sha256).model


def load_verified_model(
    uri: str, tracking_uri: str | None = None, expected_sha256: str | None = None
) -> VerifiedModel:
    """The model at uri and what was verified (the pinned source, its sha256).

    MLflow URIs are looked up on the tracking server and registry at tracking_uri (MLflow's
    default when None); expected_sha256 applies to local files and folders only. Raises
    ModelIntegrityError for a checksum or format problem, PredictError when the model is
    missing or unreadable."""
    from danq.model import integrity

    if expected_sha256 is not None and not _SHA256.match(expected_sha256):
        raise PredictError(f"expected sha256 {expected_sha256!r}: not 64 hexadecimal digits")
    path = Path(uri)
    if path.is_file() or (path / MLMODEL_FILE).is_file():
        if path.is_file() and path.suffix.lower() in REFUSED_SUFFIXES:
            raise ModelIntegrityError(
                f"model {uri}: legacy HDF5 (.h5) models are not loaded: Keras safe mode does "
                "not cover them; save the model again as .keras (model.save('model.keras'))"
            )
        if path.is_file() and path.suffix != KERAS_SUFFIX:
            raise PredictError(
                f"model {uri}: expected a .keras file, an MLflow model folder or an MLflow URI"
            )
        return integrity.load_local(path, expected_sha256)
    if not is_mlflow_uri(uri):
        raise PredictError(
            f"model {uri}: no such file or MLflow model folder, and not an MLflow URI "
            "(models:/<name>@<alias>, models:/<name>/<version>, runs:/<run id>/model)"
        )
    if not _REGISTRY_URI.match(uri):
        raise ModelIntegrityError(
            f"model {redact_uri(uri)}: not a registered or logged model, so there is "
            "no recorded sha256 "
            "to check it against; register it (danq promote), or copy it to a local folder "
            "and give its expected sha256"
        )
    if expected_sha256 is not None:
        raise PredictError(
            f"model {uri}: an expected sha256 applies to local files; a registered or logged "
            "model is checked against the sha256 recorded in the registry"
        )
    from mlflow.exceptions import MlflowException

    try:
        return integrity.load_verified(_mlflow_client(tracking_uri), uri)
    except MlflowException as err:
        raise PredictError(f"model {uri}: cannot load: {tracking.error_text(err)}") from None


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
    sources = [(_METADATA, info.metadata or {})]
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


def mlflow_target_names(
    uri: str, tracking_uri: str | None = None, metadata: Mapping[str, Any] | None = None
) -> tuple[list[str], str] | None:
    """Target names stored with an MLflow model, and where they were found; None if absent.

    metadata: the model's MLmodel metadata when the caller has it already. Registry and run
    records are consulted for models:/ and runs:/ URIs only: a copied model folder may name a
    run that the current tracking server does not hold.
    """
    from mlflow.exceptions import MlflowException

    if metadata and TARGET_NAMES_KEY in metadata:
        return _parse_names(metadata[TARGET_NAMES_KEY], f"{uri} {_METADATA}"), _METADATA
    try:
        for source, values in _name_sources(uri, tracking_uri):
            if TARGET_NAMES_KEY in values:
                return _parse_names(values[TARGET_NAMES_KEY], f"{uri} {source}"), source
    except MlflowException as err:
        raise PredictError(f"model {uri}: {tracking.error_text(err)}") from None
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
    model_metadata: Mapping[str, Any] | None = None,
) -> tuple[list[str], str]:
    """The model's target names and where they came from (see the module doc for the order).

    model_metadata: the MLmodel metadata of the model loaded from model_uri
    (VerifiedModel.metadata), so that it is not fetched again."""
    names, source = _find_target_names(
        n_targets, names_file, model_uri, tracking_uri, data_dir, model_metadata
    )
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
    model_metadata: Mapping[str, Any] | None,
) -> tuple[list[str], str]:
    if names_file is not None:
        names = read_target_names(names_file)
        if len(names) != n_targets:
            raise PredictError(
                f"{names_file}: {len(names)} target names, the model has {n_targets} outputs"
            )
        return names, str(names_file)
    if model_uri is not None and is_mlflow_uri(model_uri):
        stored = mlflow_target_names(model_uri, tracking_uri, model_metadata)
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

"""Model integrity: the sha256 of a model's Keras file, recorded when it is logged and
registered, checked before anything loads it; and the one place where model bytes become a
Keras model.

Why: the `champion` alias is what downstream users load, and whoever can write the artifact
store (or has EDIT on the registered model) could otherwise swap the file. So:
- `tracking.log_keras_model` calls `record_model_sha256`: the stored .keras file of every
  logged model is downloaded back and hashed, and TAG_MODEL_SHA256 is set on the logged model
  and its run. (Hashing before the upload is not possible: Keras writes a zip with
  timestamps, and mlflow re-saves the model into its own folder.)
- registration (danq.promotion) calls `verified_sha256` and records the result as a tag of the
  registered version.
- `load_verified` (through danq.model.loading.load_model) resolves a models:/ URI to its
  registered version, or a runs:/ or models:/m-... URI to its logged model, downloads the
  files to a private temporary folder, accepts only an MLflow keras flavor holding a .keras
  file (no exported SavedModel, no .h5), hashes the file, compares it with the recorded tag,
  and only then deserialises it, in Keras safe mode and with the project's own custom objects
  only. It never calls mlflow.keras.load_model: that takes safe mode from Keras' global
  setting and loads an MLmodel that asks for it with tf.saved_model.load
  (mlflow/keras/load.py, `_load_keras_model`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from danq import tracking
from danq.artifacts import TAG_MODEL_SHA256
from danq.errors import ModelIntegrityError, PredictError
from danq.redaction import redact_uri

if TYPE_CHECKING:
    import keras
    import mlflow

MLMODEL_FILE = "MLmodel"
KERAS_FLAVOR = "keras"
KERAS_SUFFIX = ".keras"
_CHUNK_BYTES = 1 << 20
_ALIAS_URI = re.compile(r"^models:/([^/@]+)@([^/@]+)$")
_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")
LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]+)$")
_RUN_URI = re.compile(r"^runs:/([^/]+)/(.+)$")
# Keras packages whose built-in classes deserialise by module and name
# (keras/src/saving/serialization_lib.py, `_retrieve_class_or_fn`).
_BUILTIN_MODULES = ("keras", "builtins")


@dataclass(frozen=True)
class VerifiedModel:
    """A loaded model and what was checked: `source` is the pinned form of the URI asked for
    (models:/<name>/<version> for an alias, the logged model's models:/m-... for runs:/), or
    the local path; `verified` is False only for a local model loaded without a checksum;
    `metadata` is the MLmodel's (target names), empty for a bare .keras file."""

    model: keras.Model
    uri: str
    source: str
    sha256: str
    verified: bool
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ModelRecord:
    """What an MLflow model URI resolved to (`source`: models:/<name>/<version> or
    models:/<logged model id>), where its files are, and the sha256 recorded for them."""

    source: str
    artifact_uri: str
    where: str
    expected: str


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (full-size models are ~200 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def project_custom_objects() -> dict[str, Any]:
    """The only custom classes a project model may hold, by their registered names."""
    import keras

    from danq.model.dropout import RandomRateDropout

    return {keras.saving.get_registered_name(RandomRateDropout): RandomRateDropout}


# --------------------------------------------------------------------------- MLflow records


def logged_model(client: mlflow.MlflowClient, uri: str) -> Any:
    """The logged model (MLflow 3 LoggedModel) that a runs:/<run>/<name> or models:/m-... URI
    names. A model logged with log_model(name=...) is a logged model, not run artifacts."""
    if found := LOGGED_MODEL_URI.match(uri):
        return client.get_logged_model(found.group(1))
    if found := _RUN_URI.match(uri):
        run_id, name = found.groups()
        run = client.get_run(run_id)
        logged = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"name = '{name}' AND source_run_id = '{run_id}'",
        )
        if not logged:
            raise ModelIntegrityError(f"model {uri}: run {run_id} logged no model named {name!r}")
        return max(logged, key=lambda m: m.creation_timestamp)
    raise ModelIntegrityError(
        f"model {uri}: expected runs:/<run id>/<name> or models:/<logged model id> (m-...)"
    )


def _registered_version(client: mlflow.MlflowClient, uri: str) -> Any | None:
    """The registered version a models:/<name>@<alias> or models:/<name>/<version> URI names;
    None for other URIs."""
    if found := _ALIAS_URI.match(uri):
        return client.get_model_version_by_alias(*found.groups())
    if found := _VERSION_URI.match(uri):
        return client.get_model_version(*found.groups())
    return None


def model_record(client: mlflow.MlflowClient, uri: str) -> ModelRecord:
    """Resolve uri to one immutable model and the sha256 recorded for it.

    An alias is resolved once, to its version, and that version's files are fetched: an alias
    moved meanwhile cannot pair one version's tag with another version's file."""
    version = _registered_version(client, uri)
    if version is None:
        logged = logged_model(client, uri)
        where = f"logged model {logged.model_id} of run {logged.source_run_id}"
        expected = logged.tags.get(TAG_MODEL_SHA256)
        if not expected:
            raise ModelIntegrityError(
                f"model {uri}: {where} has no {TAG_MODEL_SHA256} tag, so its file cannot be "
                "checked; log it with danq (tracking.log_keras_model records the tag)"
            )
        return ModelRecord(f"models:/{logged.model_id}", logged.artifact_location, where, expected)
    where = f"registered model {version.name} version {version.version}"
    source = f"models:/{version.name}/{version.version}"
    expected = version.tags.get(TAG_MODEL_SHA256)
    if not expected:
        raise ModelIntegrityError(
            f"model {uri}: {where} has no {TAG_MODEL_SHA256} tag, so its file cannot be "
            "checked. A version registered before danq recorded checksums: check that it is "
            "the model you trained and record its file's sha256 with `danq registry verify "
            f"--version {version.version} --model {version.name}`. Otherwise register the "
            "model through `danq promote` (which records the sha256), or move the alias back "
            "to a version that has the tag"
        )
    # ModelVersion.model_id does not survive the REST API (its proto lacks the field): a
    # version registered from a logged model names it in its source, models:/m-...
    logged_source = LOGGED_MODEL_URI.match(version.source or "")
    model_id = version.model_id or (logged_source.group(1) if logged_source else None)
    if not model_id:
        artifact_uri = client.get_model_version_download_uri(version.name, version.version)
        return ModelRecord(source, artifact_uri, where, expected)
    logged = client.get_logged_model(model_id)
    logged_tag = logged.tags.get(TAG_MODEL_SHA256)
    if logged_tag and logged_tag != expected:
        raise ModelIntegrityError(
            f"model {uri}: {where} records sha256 {expected} but its logged model "
            f"{model_id} records {logged_tag}: a tag was changed after logging; "
            "do not use this version, register the model again from its training run"
        )
    return ModelRecord(source, logged.artifact_location, where, expected)


def fetch_model_file(client: mlflow.MlflowClient, artifact_uri: str, uri: str, dst: Path) -> Path:
    """The model's MLmodel and the .keras file it names, downloaded from the model folder at
    artifact_uri into dst; returns the .keras file. Nothing else is fetched: on a server with
    authentication every file costs requests that each check a password."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        repo = get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)
        repo.download_artifacts(MLMODEL_FILE, str(dst))
        relative = keras_path_of(dst, uri)
        repo.download_artifacts(relative, str(dst))
    except (MlflowException, OSError) as err:
        raise PredictError(
            f"model {uri}: cannot download its files from {redact_uri(artifact_uri)}: "
            f"{tracking.error_text(err)}"
        ) from None
    return keras_file_of(dst, uri)


# --------------------------------------------------------------------------- files


def keras_path_of(model_dir: Path, uri: str) -> str:
    """Where the .keras file of an MLflow model folder is, relative to it, after checking its
    MLmodel.

    Accepted: the keras flavor as mlflow.keras.save_model writes it for Keras 3 with
    save_exported_model false: <data>/model.keras (mlflow/keras/save.py). Refused: an exported
    SavedModel (loaded by mlflow with tf.saved_model.load, outside Keras safe mode), the old
    tf.keras flavor's .h5 and SavedModel files, and a data path outside the folder."""
    mlmodel = model_dir / MLMODEL_FILE
    try:
        conf = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelIntegrityError(f"model {uri}: cannot read its {MLMODEL_FILE}: {err}") from None
    flavors = conf.get("flavors") if isinstance(conf, dict) else None
    flavor = flavors.get(KERAS_FLAVOR) if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        found = ", ".join(flavors) if isinstance(flavors, dict) else "none"
        raise ModelIntegrityError(
            f"model {uri}: {MLMODEL_FILE} has no {KERAS_FLAVOR} flavor (flavors: {found}); "
            "only Keras models logged with mlflow.keras are loaded"
        )
    exported = flavor.get("save_exported_model")
    if exported is not False:
        what = (
            "an exported TensorFlow SavedModel (save_exported_model: true)"
            if exported
            else f"an old tf.keras flavor (save_format {flavor.get('save_format', 'unknown')})"
        )
        raise ModelIntegrityError(
            f"model {uri}: {MLMODEL_FILE} describes {what}; only .keras files are loaded "
            "(Keras safe mode applies to them alone). Log the model again with "
            "mlflow.keras.log_model(save_exported_model=False), as danq training does"
        )
    data = PurePosixPath(str(flavor.get("data", "data")))
    if data.is_absolute() or ".." in data.parts:
        raise ModelIntegrityError(f"model {uri}: its data path {data} leaves the model folder")
    return str(data / f"model{KERAS_SUFFIX}")


def mlmodel_metadata(model_dir: Path) -> dict[str, Any]:
    """The `metadata` of an MLflow model folder's MLmodel (read after keras_path_of)."""
    conf = yaml.safe_load((model_dir / MLMODEL_FILE).read_text(encoding="utf-8"))
    metadata = conf.get("metadata") if isinstance(conf, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def keras_file_of(model_dir: Path, uri: str) -> Path:
    """The .keras file of a local MLflow model folder (see keras_path_of)."""
    path = model_dir / keras_path_of(model_dir, uri)
    if not path.resolve().is_relative_to(model_dir.resolve()):
        raise ModelIntegrityError(f"model {uri}: {path} leaves the model folder (a link)")
    if not path.is_file():
        raise ModelIntegrityError(f"model {uri}: no {path.relative_to(model_dir)} in the model")
    return path


def _serialized_objects(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        if "class_name" in tree:
            yield tree
        for value in tree.values():
            yield from _serialized_objects(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _serialized_objects(value)


def _is_allowed(obj: dict[str, Any], allowed: set[str]) -> bool:
    """A project class by its registered name, or a Keras built-in (one whose registered name,
    if any, is its class name: a different one would be looked up among registered classes)."""
    registered = obj.get("registered_name")
    if registered is not None and not isinstance(registered, str):
        return False
    if registered in allowed:
        return True
    package = str(obj.get("module") or "keras").split(".")[0]
    return package in _BUILTIN_MODULES and registered in (None, obj["class_name"])


def check_keras_archive(path: Path, uri: str) -> None:
    """Refuse a file that is not a Keras v3 archive, or whose config names a class that is
    neither a Keras built-in nor one of project_custom_objects(): Keras would otherwise look
    such names up in every class registered in the process."""
    allowed = set(project_custom_objects())
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ModelIntegrityError(
            f"model {uri}: {path.name} is not a Keras v3 archive (.keras zip with "
            f"config.json): {err}"
        ) from None
    foreign = sorted(
        {
            f"{obj.get('module')}.{obj['class_name']} ({obj.get('registered_name')!r})"
            for obj in _serialized_objects(config)
            if not _is_allowed(obj, allowed)
        }
    )
    if foreign:
        raise ModelIntegrityError(
            f"model {uri}: holds classes that are neither Keras built-ins nor danq's own "
            f"({', '.join(sorted(allowed))}): {', '.join(foreign)} (module.class (registered "
            "name)); such a model is not loaded"
        )


def _deserialize(path: Path, uri: str) -> keras.Model:
    """Keras' own loader, in safe mode, with the project's custom objects.

    safe_mode=True alone is not enough: Keras lets an ambient setting override the argument,
    so keras.config.enable_unsafe_deserialization() anywhere in the process would turn it off
    (keras/src/saving/serialization_lib.py, deserialize_keras_object: "Enforces
    SafeModeScope"). The scope pins it on for this load."""
    import keras
    from keras.src.saving.serialization_lib import SafeModeScope

    check_keras_archive(path, uri)
    try:
        with SafeModeScope(True):
            return keras.saving.load_model(
                path, compile=False, safe_mode=True, custom_objects=project_custom_objects()
            )
    except ValueError as err:
        if "safe_mode" in str(err):
            reason = str(err).split(". ")[0]
            raise ModelIntegrityError(
                f"model {uri}: refused by Keras safe mode: {reason}. Such layers carry Python "
                "bytecode that runs when the model is loaded; the project loads no such models"
            ) from None
        raise PredictError(f"model {uri}: cannot load: {err}") from None
    except (OSError, TypeError, KeyError) as err:
        raise PredictError(f"model {uri}: cannot load: {err}") from None


def check_sha256(path: Path, uri: str, where: str, expected: str) -> str:
    """The sha256 of path, if it is `expected`; ModelIntegrityError naming both if not."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelIntegrityError(
            f"model {uri}: sha256 mismatch for {where}: {path.name} has sha256 {actual}, "
            f"expected {expected} (recorded when it was logged or registered). The stored "
            "file is not the one that was registered: do not use it; restore the file, or "
            "register the model again from its training run"
        )
    return actual


# --------------------------------------------------------------------------- public API


def record_model_sha256(client: mlflow.MlflowClient, model_uri: str) -> str:
    """Hash the stored .keras file of the logged model at model_uri (runs:/... or
    models:/m-...) and tag the logged model and its source run with it; returns the hex.

    The file is downloaded back from the artifact store: what is hashed is what later loads
    will download."""
    logged = logged_model(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="danq-model-") as tmp:
        digest = sha256_file(
            fetch_model_file(client, logged.artifact_location, model_uri, Path(tmp))
        )
    client.set_logged_model_tags(logged.model_id, {TAG_MODEL_SHA256: digest})
    if logged.source_run_id:
        client.set_tag(logged.source_run_id, TAG_MODEL_SHA256, digest)
    return digest


def verified_sha256(client: mlflow.MlflowClient, model_uri: str) -> str:
    """The sha256 of the logged model at model_uri (runs:/<run>/<name> or models:/m-...),
    checked against the TAG_MODEL_SHA256 that logging recorded; for registration to put on
    the new version. Raises ModelIntegrityError when the tag is missing or differs."""
    record = model_record(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="danq-model-") as tmp:
        path = fetch_model_file(client, record.artifact_uri, model_uri, Path(tmp))
        return check_sha256(path, model_uri, record.where, record.expected)


def load_verified(client: mlflow.MlflowClient, model_uri: str) -> VerifiedModel:
    """The model at an MLflow URI, loaded only once its file matches the sha256 recorded in
    the registry: models:/<name>@<alias> and models:/<name>/<version> need the registered
    version's tag, runs:/<run>/<name> and models:/m-... the logged model's."""
    record = model_record(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="danq-model-") as tmp:
        path = fetch_model_file(client, record.artifact_uri, model_uri, Path(tmp))
        digest = check_sha256(path, model_uri, record.where, record.expected)
        model = _deserialize(path, model_uri)
        metadata = mlmodel_metadata(Path(tmp))
    return VerifiedModel(model, model_uri, record.source, digest, True, metadata)


def load_local(path: Path, expected_sha256: str | None = None) -> VerifiedModel:
    """A local .keras file or MLflow model folder, loaded from a private copy (so the bytes
    hashed are the bytes loaded), in safe mode; checked against expected_sha256 when given.

    A local file has no registry record: its checksum is the caller's to give. Without one
    the file is as trusted as the folder it sits in (a training run's own output)."""
    uri = str(path)
    source = keras_file_of(path, uri) if path.is_dir() else path
    if source.suffix != KERAS_SUFFIX:
        raise ModelIntegrityError(
            f"model {uri}: {source.suffix or 'no'} suffix; only .keras files are loaded "
            "(legacy .h5 models cannot be loaded in Keras safe mode): save it again with "
            "model.save('model.keras')"
        )
    with tempfile.TemporaryDirectory(prefix="danq-model-") as tmp:
        copy = Path(tmp) / source.name
        shutil.copyfile(source, copy)
        digest = (
            check_sha256(copy, uri, "the expected sha256 given", expected_sha256)
            if expected_sha256
            else sha256_file(copy)
        )
        model = _deserialize(copy, uri)
    metadata = mlmodel_metadata(path) if path.is_dir() else {}
    return VerifiedModel(model, uri, uri, digest, bool(expected_sha256), metadata)

"""`danq registry verify`: record the sha256 of a registered version's model file as it is
stored now, for versions registered before danq recorded checksums ("trust on first use").

Why: loading refuses a version without TAG_MODEL_SHA256 (danq.model.integrity), so such a
champion can neither serve nor be re-scored by promotion, and registering it again is no way
out for a version that already is the champion. Recording the checksum of the file stored now
trusts that file; only an operator who knows it is the model they trained can vouch for it,
hence an explicit command and no automatic migration.

The file goes through the checks loading applies (keras flavor, no exported SavedModel, a
.keras file, only Keras built-in and danq classes in it) before it is hashed. A recorded
sha256 is never overwritten: the version's own, or the one its logged model got when it was
logged, must match the file, else ModelIntegrityError and nothing is recorded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from danq.artifacts import TAG_MODEL_SHA256
from danq.errors import ModelIntegrityError, RegistryError
from danq.model import integrity
from danq.promotion.registry import RetryingClient, version_uri

NOTHING_RECORDED = "nothing was recorded (a recorded sha256 is never overwritten)"


@dataclass(frozen=True)
class Verification:
    """What `verify_version` found and did: the file's sha256, where it was already recorded
    (`known_from`: None, the logged model, or the version itself), and what it tagged."""

    name: str
    version: str
    sha256: str
    known_from: str | None
    tagged: tuple[str, ...]

    def lines(self) -> list[str]:
        """What to tell the operator: the checksum and whom it came from."""
        which = f"version {self.version} of {self.name!r}"
        if not self.tagged:
            return [
                f"{which}: sha256 {self.sha256} is already recorded and the stored file "
                "matches it; nothing changed"
            ]
        if self.known_from is None:
            first = (
                f"{which}: recorded sha256 {self.sha256} of the file as stored now; check that "
                "this is the model you trained"
            )
        else:
            first = (
                f"{which}: recorded sha256 {self.sha256}, the one {self.known_from} recorded "
                "when it was logged (the stored file matches it)"
            )
        return [first, f"tagged {TAG_MODEL_SHA256} on: {', '.join(self.tagged)}"]


def _version(client: RetryingClient, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, version)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RegistryError(f"registered model {name!r} has no version {version}") from None


def _logged_model_of(client: RetryingClient, found: Any) -> Any | None:
    """The logged model a version was registered from, None for a version whose source is a
    plain artifact folder. The REST API drops ModelVersion.model_id: the source names it."""
    source = integrity.LOGGED_MODEL_URI.match(found.source or "")
    model_id = found.model_id or (source.group(1) if source else None)
    return client.get_logged_model(model_id) if model_id else None


def _stored_sha256(raw: Any, artifact_uri: str, uri: str, where: str, expected: str | None) -> str:
    """The sha256 of the .keras file at artifact_uri, after loading's format checks; checked
    against `expected` (recorded for `where`) when there is one."""
    with tempfile.TemporaryDirectory(prefix="danq-model-") as tmp:
        path = integrity.fetch_model_file(raw, artifact_uri, uri, Path(tmp))
        integrity.check_keras_archive(path, uri)
        if expected:
            return integrity.check_sha256(path, uri, where, expected)
        return integrity.sha256_file(path)


def _verify(client: RetryingClient, name: str, version: str) -> Verification:
    uri = version_uri(name, version)
    found = _version(client, name, version)
    if found.tags.get(TAG_MODEL_SHA256):
        # What loading checks: the version's tag, and the logged model's if it has one.
        record = client.retrying(integrity.model_record, client.raw, uri)
        digest = client.retrying(
            _stored_sha256, client.raw, record.artifact_uri, uri, record.where, record.expected
        )
        return Verification(name, version, digest, f"version {version}", ())
    logged = _logged_model_of(client, found)
    if logged is None:
        artifact_uri, expected = client.get_model_version_download_uri(name, version), None
        where = f"registered model {name} version {version}"
    else:
        artifact_uri, expected = logged.artifact_location, logged.tags.get(TAG_MODEL_SHA256)
        where = f"logged model {logged.model_id}"
    digest = client.retrying(_stored_sha256, client.raw, artifact_uri, uri, where, expected)
    tagged = [f"registered model {name!r} version {version}"]
    # The logged model first: refused for lack of EDIT on its experiment, nothing has changed.
    if logged is not None and not expected:
        client.set_logged_model_tags(logged.model_id, {TAG_MODEL_SHA256: digest})
        tagged.append(f"logged model {logged.model_id}")
    client.set_model_version_tag(name, version, TAG_MODEL_SHA256, digest)
    known_from = f"its {where}" if expected else None
    return Verification(name, version, digest, known_from, tuple(tagged))


def verify_version(client: RetryingClient, name: str, version: str) -> Verification:
    """Check the stored model file of version `version` of registered model `name` as loading
    does and record its sha256 on the version (and on its logged model when that has none).

    A version that already has the tag is only checked: a match changes nothing, a mismatch
    raises ModelIntegrityError. A version without it takes the sha256 its logged model
    recorded at logging if the file still matches it (ModelIntegrityError if not), else the
    file's sha256 as stored now: the trust-on-first-use step the operator vouches for."""
    try:
        return _verify(client, name, version)
    except ModelIntegrityError as err:
        raise ModelIntegrityError(f"{err}; {NOTHING_RECORDED}") from None

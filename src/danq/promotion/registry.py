"""The MLflow model registry: the client, candidate versions, and reading the aliases.

No stages: one registered model holds every evaluated candidate as a version, and two aliases
say which one serves. `champion` is the blessed version in use; `previous-champion` is the one
it replaced. Moving them (promotion, rollback, under a lock and compare-and-set) is
danq.promotion.moves; the lock is danq.promotion.lock.

Every MLflow call retries on connection errors a bounded number of times, then fails with one
line naming the server; a call the server refuses for lack of a permission fails with the
user, the object and the permission (danq.promotion.permissions). Every version is registered
with the sha256 of its model file, checked against the one recorded when it was logged.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from danq import tracking
from danq.artifacts import TAG_MODEL_SHA256
from danq.config import Params
from danq.errors import RegistryUnavailable
from danq.promotion import permissions
from danq.redaction import redact_uri

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
BACKOFF_S = 0.5

T = TypeVar("T")


_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)


def _connection_error(exc: BaseException) -> BaseException | None:
    """The requests error behind exc (MLflow wraps it without `from`), if exc is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _TRANSIENT):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _one_line(exc: BaseException) -> str:
    """The innermost reason of a connection error, e.g. '... [Errno 111] Connection refused'."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = " ".join(str(reason or exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def report(message: str) -> None:
    """Tell the operator about something repaired or overridden in the registry (stderr)."""
    print(f"registry: {message}", file=sys.stderr, flush=True)


class _NamedRefusals:
    """An MlflowClient whose calls refused by the server (401, 403) raise
    RegistryPermissionError naming the user, the object and the permission it lacks."""

    def __init__(self, inner: Any, tracking_uri: str) -> None:
        self.inner = inner
        self.named_for = tracking_uri

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except MlflowException as err:
                refused = permissions.refusal(err, name, args, kwargs, self.named_for)
                if refused is None:
                    raise
                raise refused from err

        return call


class RetryingClient:
    """An MlflowClient whose every method retries on connection errors, then fails clearly.

    Attempts are max_retries + 1 with backoff 0.5 s, 1 s, 2 s, ... between them; other errors
    (a missing model, a refused request) are raised at once, a refused permission as
    RegistryPermissionError. `client` replaces the MlflowClient of tracking_uri, e.g. a
    wrapper that injects failures in tests. `raw` is the client without retries.
    """

    def __init__(self, tracking_uri: str, max_retries: int, client: Any | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries
        inner = client if client is not None else tracking.client(tracking_uri)
        self.raw = _NamedRefusals(inner, tracking_uri)

    def retrying(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs) under fail_fast_http, retried on connection errors."""
        attempts = self.max_retries + 1
        attempt = 0
        while True:
            try:
                with tracking.fail_fast_http():
                    return fn(*args, **kwargs)
            except Exception as exc:
                cause = _connection_error(exc)
                if cause is None:
                    raise
                attempt += 1
                if attempt == attempts:
                    raise RegistryUnavailable(
                        f"MLflow tracking server at {redact_uri(self.tracking_uri)} "
                        f"unreachable after {attempts} attempts: {_one_line(cause)}"
                    ) from exc
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.raw, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        def with_retries(*args: Any, **kwargs: Any) -> Any:
            return self.retrying(method, *args, **kwargs)

        return with_retries


def connect(params: Params, tracking_uri: str | None = None) -> RetryingClient:
    """A retrying client for tracking_uri (default: params.mlflow's tracking server), which is
    also the registry, with params.promote's retry bound."""
    uri = tracking_uri or tracking.resolve_uri(params.mlflow)
    return RetryingClient(uri, params.promote.max_retries)


def version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def _not_found(err: MlflowException) -> bool:
    return err.error_code == "RESOURCE_DOES_NOT_EXIST"


def alias_versions(model: Any) -> dict[str, str]:
    """Alias -> version of a RegisteredModel, versions as strings: the REST API gives strings,
    a SQL store read directly (sqlite:) ints, and moves compare them with recorded strings."""
    return {alias: str(version) for alias, version in model.aliases.items()}


def aliases(client: RetryingClient, name: str) -> dict[str, str]:
    """Alias -> version of the registered model; empty when the model does not exist yet."""
    try:
        return alias_versions(client.get_registered_model(name))
    except MlflowException as err:
        if _not_found(err):
            return {}
        raise


def current_champion(client: RetryingClient, name: str) -> ModelVersion | None:
    """The version the `champion` alias points at, or None (no model or no champion yet)."""
    version = aliases(client, name).get(CHAMPION)
    return client.get_model_version(name, version) if version else None


def _logged_model_source(raw: Any, model_uri: str) -> tuple[str, str, str]:
    """(source, run_id, model_id) of a runs:/<run_id>/<name> or models:/<model_id> URI: the
    logged model it names (danq.model.integrity.logged_model)."""
    from danq.model.integrity import logged_model

    logged = logged_model(raw, model_uri)
    return f"models:/{logged.model_id}", logged.source_run_id, logged.model_id


def register_candidate(
    client: RetryingClient, name: str, model_uri: str, tags: dict[str, str]
) -> str:
    """Register model_uri as a version of `name` with tags and the sha256 of its model file;
    return the version.

    The sha256 is the logged model file's, checked against the one recorded when it was
    logged (danq.model.integrity.verified_sha256): a file changed since, or a model logged
    without the record, is refused (ModelIntegrityError) and nothing is registered.
    Registering the same logged model again reuses its version and updates the tags, so a
    rerun of promotion (e.g. after a failure) adds no duplicates. The lookup and the create
    retry together, so a create whose answer was lost is found on the next attempt.
    """
    from danq.model.integrity import verified_sha256

    sha256 = client.retrying(verified_sha256, client.raw, model_uri)
    version_tags = {**tags, TAG_MODEL_SHA256: sha256}

    def find_or_create() -> str:
        raw = client.raw
        try:
            raw.create_registered_model(name)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        source, run_id, model_id = _logged_model_source(raw, model_uri)
        existing = [
            v
            for v in raw.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
            if v.source == source
        ]
        if not existing:
            # A SQL-backed registry resolves a models:/m-... source through MLflow's global
            # tracking URI, not the client's: point it at the same server for this call.
            with tracking.using(client.tracking_uri):
                created = raw.create_model_version(
                    name,
                    source,
                    run_id=run_id,
                    tags=version_tags,
                    model_id=model_id,
                    await_creation_for=0,
                )
            return str(created.version)  # an int from a SQL store read directly (sqlite:)
        version = str(max(existing, key=lambda v: int(v.version)).version)
        for key, value in version_tags.items():
            raw.set_model_version_tag(name, version, key, value)
        return version

    return client.retrying(find_or_create)


def model_versions(client: RetryingClient, name: str) -> list[ModelVersion]:
    """Every version of the registered model, newest first; empty when it does not exist."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)

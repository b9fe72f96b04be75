"""The MLflow model registry: candidate versions, the `champion` alias, promotion and rollback.

No stages: one registered model holds every evaluated candidate as a version, and two aliases
say which one serves. `champion` is the blessed version in use; `previous-champion` is the one
it replaced.

Rollback swaps the two: champion <- previous-champion and previous-champion <- the version
that was champion, so a second rollback undoes the first. It is an error when there is no
previous-champion.

Alias moves are all-or-nothing: the aliases are read first, `champion` is always written last,
and on any failure every alias touched is put back as it was read. Every MLflow call retries
on connection errors a bounded number of times, then fails with one line naming the server.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from danq import tracking
from danq.config import Params
from danq.errors import AliasMoveError, RegistryUnavailable

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


class RetryingClient:
    """An MlflowClient whose every method retries on connection errors, then fails clearly.

    Attempts are max_retries + 1 with backoff 0.5 s, 1 s, 2 s, ... between them; other errors
    (a missing model, a refused request) are raised at once. `client` replaces the
    MlflowClient of tracking_uri, e.g. a wrapper that injects failures in tests.
    """

    def __init__(self, tracking_uri: str, max_retries: int, client: Any | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries
        self.raw = client if client is not None else tracking.client(tracking_uri)

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
                        f"MLflow tracking server at {self.tracking_uri} unreachable after "
                        f"{attempts} attempts: {_one_line(cause)}"
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


def aliases(client: RetryingClient, name: str) -> dict[str, str]:
    """Alias -> version of the registered model; empty when the model does not exist yet."""
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException as err:
        if _not_found(err):
            return {}
        raise


def current_champion(client: RetryingClient, name: str) -> ModelVersion | None:
    """The version the `champion` alias points at, or None (no model or no champion yet)."""
    version = aliases(client, name).get(CHAMPION)
    return client.get_model_version(name, version) if version else None


def _logged_model_source(raw: Any, model_uri: str) -> tuple[str, str, str]:
    """(source, run_id, model_id) of a runs:/<run_id>/<name> or models:/<model_id> URI.

    MLflow 3 stores a model logged with log_model(name=...) as a logged model, not as run
    artifacts, so a runs:/ URI is resolved to that logged model.
    """
    if model_uri.startswith("runs:/"):
        run_id, _, artifact_name = model_uri.removeprefix("runs:/").partition("/")
        run = raw.get_run(run_id)
        found = raw.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"name = '{artifact_name}' AND source_run_id = '{run_id}'",
        )
        if not found:
            raise MlflowException(f"{model_uri}: run {run_id} logged no model {artifact_name!r}")
        logged = max(found, key=lambda m: m.creation_timestamp)
    elif model_uri.startswith("models:/m-"):
        logged = raw.get_logged_model(model_uri.removeprefix("models:/"))
    else:
        raise MlflowException(f"{model_uri}: expected runs:/<run_id>/<name> or models:/<model_id>")
    return f"models:/{logged.model_id}", logged.source_run_id, logged.model_id


def register_candidate(
    client: RetryingClient, name: str, model_uri: str, tags: dict[str, str]
) -> str:
    """Register model_uri as a version of `name` with tags; return the version.

    Registering the same logged model again reuses its version and updates the tags, so a
    rerun of promotion (e.g. after a failure) adds no duplicates. The lookup and the create
    retry together, so a create whose answer was lost is found on the next attempt.
    """

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
                    name, source, run_id=run_id, tags=tags, model_id=model_id, await_creation_for=0
                )
            return created.version
        version = max(existing, key=lambda v: int(v.version)).version
        for key, value in tags.items():
            raw.set_model_version_tag(name, version, key, value)
        return version

    return client.retrying(find_or_create)


def _apply_alias_moves(
    client: RetryingClient,
    name: str,
    before: dict[str, str],
    moves: list[tuple[str, str | None]],
) -> dict[str, str]:
    """Set (or, for None, delete) aliases in order; on failure restore those touched."""
    try:
        for alias, version in moves:
            if version is not None:
                client.set_registered_model_alias(name, alias, version)
            elif alias in before:
                client.delete_registered_model_alias(name, alias)
    except Exception as err:
        touched = [alias for alias, _ in moves]
        try:
            now = aliases(client, name)
            for alias in touched:
                if before.get(alias) == now.get(alias):
                    continue
                if alias in before:
                    client.set_registered_model_alias(name, alias, before[alias])
                else:
                    client.delete_registered_model_alias(name, alias)
        except Exception as restore_err:
            raise AliasMoveError(
                f"moving aliases of {name!r} failed ({err}) and restoring them failed too "
                f"({restore_err}); they were {before}"
            ) from err
        raise AliasMoveError(
            f"moving aliases of {name!r} failed, aliases left as they were {before}: {err}"
        ) from err
    return aliases(client, name)


def promote(client: RetryingClient, name: str, version: str) -> dict[str, str]:
    """champion <- version, previous-champion <- the old champion; returns the new aliases.

    A no-op when version already is the champion.
    """
    before = aliases(client, name)
    old = before.get(CHAMPION)
    if old == version:
        return before
    moves: list[tuple[str, str | None]] = [(PREVIOUS_CHAMPION, old)] if old else []
    return _apply_alias_moves(client, name, before, [*moves, (CHAMPION, version)])


def rollback(client: RetryingClient, name: str) -> dict[str, str]:
    """Swap champion and previous-champion (see the module docstring); returns the aliases."""
    before = aliases(client, name)
    previous = before.get(PREVIOUS_CHAMPION)
    if previous is None:
        raise AliasMoveError(
            f"registered model {name!r} has no {PREVIOUS_CHAMPION} to roll back to"
        )
    moves = [(PREVIOUS_CHAMPION, before.get(CHAMPION)), (CHAMPION, previous)]
    return _apply_alias_moves(client, name, before, moves)


def model_versions(client: RetryingClient, name: str) -> list[ModelVersion]:
    """Every version of the registered model, newest first; empty when it does not exist."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)

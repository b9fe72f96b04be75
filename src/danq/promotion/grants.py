"""`danq registry grant`: what the pipeline's MLflow user needs on a server with basic auth.

With the deployed default_permission = READ, any user may create an experiment or a registered
model (and then MANAGEs it), but has only READ on those another user created: if the
experiment or the registered model was created by someone else first, training and promotion
fail with 403. grant() makes the user (when a password is given and it is missing), the
experiment and the registered model (when missing), and gives the user EDIT on both, raising a
lower grant and keeping a higher one. Running it again changes nothing. It needs an admin's
login (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).

EDIT is what training and promotion need (danq.promotion.permissions): runs, logged models and
proxied artifacts in the experiment; versions, tags and aliases of the registered model. Not
MANAGE: no danq command deletes a version, an alias or the model. The registry lock is a
registered model of its own, created by whoever takes it (danq.promotion.lock), so it needs no
grant. The grants use the per-user permission API of MLflow 3.17's auth app
(mlflow/server/auth/client.py: get_user_permission, grant_user_permission, which refuses to
overwrite an existing grant, and revoke_user_permission).
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient
from mlflow.server.auth.permissions import EDIT, PERMISSION_PRIORITY

from danq.errors import RegistryError, RegistryPermissionError
from danq.promotion.permissions import current_user
from danq.promotion.registry import RetryingClient
from danq.redaction import redact_uri

GRANTED = EDIT.name


def _admin_call_refused(err: MlflowException, server: str) -> RegistryError | None:
    """The error for an auth-API call the server refused or does not serve, else None."""
    if err.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        user = current_user() or "anonymous"
        return RegistryPermissionError(
            f"granting needs an MLflow admin's login; MLflow user {user!r} was refused by "
            f"{server} ({err.error_code})"
        )
    if err.error_code == "ENDPOINT_NOT_FOUND":
        return RegistryError(
            f"the MLflow server at {server} runs without authentication (no basic-auth app): "
            "there are no users or permissions to grant"
        )
    return None


def _user(auth: AuthServiceClient, client: RetryingClient, user: str, password: str | None) -> str:
    try:
        client.retrying(auth.get_user, user)
        return f"user {user!r}: exists (password not changed)"
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    if password is None:
        raise RegistryError(
            f"MLflow user {user!r} does not exist at {redact_uri(client.tracking_uri)}: give its "
            "password to create it"
        )
    client.retrying(auth.create_user, user, password)
    return f"user {user!r}: created"


def _experiment(client: RetryingClient, name: str) -> tuple[str, str]:
    """(experiment id, what was done)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name), f"experiment {name!r}: created"
    if found.lifecycle_stage != "active":
        raise RegistryError(
            f"experiment {name!r} (id {found.experiment_id}) is deleted: restore it (or choose "
            "another mlflow.experiment) before granting"
        )
    return found.experiment_id, f"experiment {name!r} (id {found.experiment_id}): exists"


def _registered_model(client: RetryingClient, name: str) -> str:
    try:
        client.create_registered_model(name)
        return f"registered model {name!r}: created"
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return f"registered model {name!r}: exists"


def _permission(
    auth: AuthServiceClient,
    client: RetryingClient,
    user: str,
    resource: tuple[str, str, str],
) -> str:
    """Give user EDIT on (resource type, id, label) unless it has as much or more already."""
    kind, resource_id, label = resource
    had = client.retrying(auth.get_user_permission, user, kind, resource_id).permission
    if PERMISSION_PRIORITY.get(had, 0) >= PERMISSION_PRIORITY[GRANTED]:
        return f"{label}: {user!r} already has {had}"
    try:
        client.retrying(auth.grant_user_permission, user, kind, resource_id, GRANTED)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        # An explicit lower grant (e.g. READ) is in the way: the API does not overwrite one.
        client.retrying(auth.revoke_user_permission, user, kind, resource_id)
        client.retrying(auth.grant_user_permission, user, kind, resource_id, GRANTED)
    return f"{label}: granted {GRANTED} to {user!r} (had {had})"


def grant(
    client: RetryingClient,
    user: str,
    password: str | None,
    experiment: str,
    registered_model: str,
) -> list[str]:
    """Make `user` able to train into `experiment` and promote into `registered_model`;
    returns one line per thing checked or done. `client` must log in as an admin."""
    auth = AuthServiceClient(client.tracking_uri)
    server = redact_uri(client.tracking_uri)
    try:
        lines = [_user(auth, client, user, password)]
        experiment_id, done = _experiment(client, experiment)
        lines += [done, _registered_model(client, registered_model)]
        for resource in (
            ("experiment", experiment_id, f"experiment {experiment!r}"),
            ("registered_model", registered_model, f"registered model {registered_model!r}"),
        ):
            lines.append(_permission(auth, client, user, resource))
    except MlflowException as err:
        refused = _admin_call_refused(err, server)
        if refused is None:
            raise
        raise refused from err
    return lines

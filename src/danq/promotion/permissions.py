"""Which MLflow permission each registry call needs, so that a refusal says what is missing.

The server's basic-auth app checks every request before it runs: BEFORE_REQUEST_VALIDATORS
in mlflow/server/auth/__init__.py (MLflow 3.17) maps each request to a validator, and a
refused one is answered 403 (error code PERMISSION_DENIED) with the bare text "Permission
denied". The levels (mlflow/server/auth/permissions.py): READ reads, EDIT also updates
(can_update), MANAGE also deletes and grants (can_delete, can_manage). What the calls below
need, from those validators:
- reading a registered model, its versions and aliases: READ on the registered model;
- creating a version (CreateModelVersion), setting a tag or an alias, renaming: EDIT on the
  registered model (creating a version also needs READ on its source run);
- deleting an alias, a version tag or the registered model: MANAGE on it;
- creating a registered model or an experiment: no grant while workspaces are off (the
  creator then gets MANAGE on what it created);
- logging to a run (tags, artifacts through the proxied artifact store) or tagging a logged
  model: EDIT on its experiment; reading a run or a logged model: READ on its experiment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow.exceptions import MlflowException

from danq.errors import RegistryPermissionError
from danq.redaction import redact_uri

USER_VARIABLE = "MLFLOW_TRACKING_USERNAME"

_MODEL = "registered model"
_RUN_EXPERIMENT = "the experiment of run"
_LOGGED_EXPERIMENT = "the experiment of logged model"
# method -> (the permission it needs, what the first argument names)
_NEEDS: dict[str, tuple[str, str]] = {
    "get_registered_model": ("READ", _MODEL),
    "get_model_version": ("READ", _MODEL),
    "get_model_version_by_alias": ("READ", _MODEL),
    "get_model_version_download_uri": ("READ", _MODEL),
    "create_model_version": ("EDIT (and READ on the source run)", _MODEL),
    "set_registered_model_alias": ("EDIT", _MODEL),
    "set_registered_model_tag": ("EDIT", _MODEL),
    "delete_registered_model_tag": ("EDIT", _MODEL),
    "set_model_version_tag": ("EDIT", _MODEL),
    "rename_registered_model": ("EDIT", _MODEL),
    "delete_registered_model_alias": ("MANAGE", _MODEL),
    "delete_model_version_tag": ("MANAGE", _MODEL),
    "delete_registered_model": ("MANAGE", _MODEL),
    "get_run": ("READ", _RUN_EXPERIMENT),
    "set_tag": ("EDIT", _RUN_EXPERIMENT),
    "log_artifact": ("EDIT", _RUN_EXPERIMENT),
    "get_logged_model": ("READ", _LOGGED_EXPERIMENT),
    "set_logged_model_tags": ("EDIT", _LOGGED_EXPERIMENT),
}


def current_user() -> str | None:
    """The MLflow login this process uses (read per request by MLflow's REST client)."""
    return os.environ.get(USER_VARIABLE) or None


def _what(method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """(the permission method needs, the object it acts on) in words."""
    first = args[0] if args else next(iter(kwargs.values()), None)
    if method in _NEEDS:
        permission, kind = _NEEDS[method]
        return permission, f"{kind} {first!r}" if kind == _MODEL else f"{kind} {first}"
    if method == "create_registered_model":
        return "the right to create registered models (USE on the workspace)", f"{_MODEL} {first!r}"
    if method == "search_model_versions":
        return "READ", f"the registered model of {first!r}"
    return "a permission", f"the object of {method}"


def refusal(
    err: MlflowException,
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    tracking_uri: str,
) -> RegistryPermissionError | None:
    """The RegistryPermissionError for a call the server refused (401 or 403), else None."""
    user = current_user()
    server = redact_uri(tracking_uri)
    if err.error_code == "UNAUTHENTICATED":
        who = (
            f"did not accept the login of user {user!r}: check MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD"
            if user
            else "requires a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
        return RegistryPermissionError(f"MLflow server at {server} {who} ({method})")
    if err.error_code != "PERMISSION_DENIED":
        return None
    permission, target = _what(method, args, kwargs)
    name = user or "anonymous"
    return RegistryPermissionError(
        f"MLflow user {name!r} lacks {permission} permission on {target} at {server} "
        f"({method} was refused): nothing was changed by this call. An MLflow admin can grant "
        "it (`danq registry grant` gives the pipeline's user what it needs)"
    )

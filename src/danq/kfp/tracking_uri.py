"""The MLflow tracking URI of the pipeline: fixed when the pipeline is compiled, never a run
parameter.

The MLflow steps get MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD from the
mlflow-credentials secret, and MLflow sends them to whatever server the step's tracking URI
names. A URI that a run could set would let anyone allowed to start a run send the pipeline's
MLflow login to a host of their choosing. So the URI is compiled into every MLflow task as a
constant input (`danq pipeline compile --tracking-uri`, default the in-cluster Service of
infra/k8s/mlflow), no run parameter feeds it, and the tasks refuse an `overrides` entry that
would change it (danq.kfp.tasks.task_params).

A URI compiled for a cluster must be http(s) and hold no credentials (they come from the
secret, and a URI ends up in the YAML, the KFP UI and logs). `build_pipeline` itself also
takes a local store (a SQLite URI), which is what kfp.local runs on this machine use; the
compile for a cluster (danq.kfp.pipeline.compile_pipeline) and the conformance check, which
upload and run apply, accept only a cluster URI.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from danq.errors import ConfigError

# The MLflow Service of infra/k8s/mlflow, as pods of the cluster reach it.
CLUSTER_TRACKING_URI = "http://mlflow.mlflow.svc.cluster.local:5000"
# The components' input that carries the URI (components/train.py, evaluate, compare, promote).
TRACKING_URI_INPUT = "mlflow_tracking_uri"
CLUSTER_SCHEMES = ("http", "https")


def redacted(uri: str) -> str:
    """uri as it may be printed or written (danq.redaction.redact_uri)."""
    # Imported here: danq.tracking imports mlflow, which compiling a pipeline does not need.
    from danq.redaction import redact_uri

    return redact_uri(uri)


def has_credentials(uri: str) -> bool:
    """True when uri carries a user, a password or a token (what redaction would hide)."""
    return redacted(uri) != uri


def cluster_uri_problem(uri: str) -> str | None:
    """Why uri cannot be compiled into a pipeline for a cluster, or None when it can."""
    if has_credentials(uri):
        return (
            "it holds credentials; the steps take the MLflow login from the "
            "mlflow-credentials secret, so give the URI without user, password or token"
        )
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in CLUSTER_SCHEMES or not parts.hostname:
        return (
            f"not an {' or '.join(CLUSTER_SCHEMES)} URI of a tracking server: the steps on the "
            "cluster reach MLflow over HTTP, e.g. " + CLUSTER_TRACKING_URI
        )
    return None


def check_cluster_uri(uri: str) -> str:
    """uri, when it may be compiled into a pipeline for a cluster; ConfigError naming it
    (redacted) and what is wrong otherwise."""
    problem = cluster_uri_problem(uri)
    if problem is not None:
        raise ConfigError(f"tracking URI {redacted(uri)}: {problem}")
    return uri


def refuse_credentials(uri: str) -> str:
    """uri, when it holds no credentials (any store, also a local one); ConfigError otherwise:
    whatever is compiled into a pipeline is shown in the KFP UI and its logs."""
    if has_credentials(uri):
        raise ConfigError(
            f"tracking URI {redacted(uri)}: it holds credentials, which a compiled pipeline "
            "would show to everyone who can read it; the steps take the MLflow login from the "
            "mlflow-credentials secret"
        )
    return uri


def tracking_uri_inputs(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(task label, parameter spec) of every task input named TRACKING_URI_INPUT in a compiled
    PipelineSpec: a constant is {"runtimeValue": {"constant": URI}}. Labels are task keys,
    prefixed with their DAG's component when not in the root DAG ("comp-condition-1/promote")."""

    def mapping(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    dags = {"root": mapping(mapping(spec.get("root")).get("dag"))}
    for name, component in mapping(spec.get("components")).items():
        if "dag" in mapping(component):
            dags[name] = mapping(component["dag"])
    for dag, body in dags.items():
        for key, task in mapping(body.get("tasks")).items():
            parameters = mapping(mapping(mapping(task).get("inputs")).get("parameters"))
            if TRACKING_URI_INPUT in parameters:
                label = key if dag == "root" else f"{dag}/{key}"
                yield label, mapping(parameters[TRACKING_URI_INPUT])


def compiled_tracking_uris(spec: Mapping[str, Any]) -> dict[str, str | None]:
    """task label -> the tracking URI compiled into it, None where the task takes it from
    something a run can set (a pipeline parameter or another task's output)."""
    found: dict[str, str | None] = {}
    for label, parameter in tracking_uri_inputs(spec):
        constant = (parameter.get("runtimeValue") or {}).get("constant")
        found[label] = constant if isinstance(constant, str) else None
    return found

"""Readers of the repository's Kubernetes manifests, for the infra tests and the servers they
start with the Deployment's own options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MLFLOW_K8S = REPO / "infra" / "k8s" / "mlflow"
KUBEFLOW_USER_K8S = REPO / "infra" / "k8s" / "kubeflow-user"
# `mlflow server` options that say where the server runs and stores; the rest is behaviour.
PLACEMENT_OPTIONS = (
    "--host",
    "--port",
    "--workers",
    "--backend-store-uri",
    "--artifacts-destination",
)


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def resources(folder: Path) -> list[dict[str, Any]]:
    objects = []
    for name in kustomization(folder).get("resources", []):
        objects += [o for o in yaml.safe_load_all((folder / name).read_text()) if o]
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def deployment_container() -> dict[str, Any]:
    deployment = find(resources(MLFLOW_K8S), "Deployment", "mlflow")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def server_arguments() -> dict[str, str]:
    """The Deployment's `mlflow server` options as {option: value} (flags map to '')."""
    args = deployment_container()["args"]
    assert args[0] == "server"
    return dict((a.split("=", 1) + [""])[:2] for a in args[1:])


def server_behaviour_options(with_auth: bool = False) -> list[str]:
    """The Deployment's options without the placement ones (host, port, stores), for a test
    server. --app-name (basic-auth) only with_auth: it needs the auth configuration and a user
    database, which tests/deployed_registry.py provides."""
    return [
        f"{k}={v}" if v else k
        for k, v in server_arguments().items()
        if k not in PLACEMENT_OPTIONS and (with_auth or k != "--app-name")
    ]


def server_workers() -> int:
    """The Deployment's --workers: concurrent requests are served by that many processes."""
    return int(server_arguments()["--workers"])

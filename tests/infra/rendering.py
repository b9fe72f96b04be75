"""The kustomizations of infra/k8s as the cluster receives them, for the infra tests.

`kubectl kustomize` renders them when kubectl is installed. Without it, `assemble` applies the
parts of kustomize the kustomizations use (namespace, labels, images, JSON 6902 patches) in
Python, so that the hardening tests still run; the generated ConfigMaps and Secrets are left
out. test_hardening checks that both agree wherever kubectl exists.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .manifests import kustomization, resources

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
CLUSTER_SCOPED_KINDS = ("Namespace",)


def read_env(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped)."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def kubectl_render(folder: Path, workdir: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a copy whose secret env files are made from the examples."""
    copy_ = workdir / folder.name
    shutil.copytree(folder, copy_)
    for example in copy_.glob("secrets/*.env.example"):
        values = {k: v or "test-value" for k, v in read_env(example).items()}
        example.with_suffix("").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    out = subprocess.run(
        ["kubectl", "kustomize", str(copy_)], capture_output=True, text=True, check=True
    )
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _apply_operation(document: Any, operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    node = document
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    op = operation["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        else:
            raise ValueError(f"JSON patch operation {op!r} is not implemented here")
    elif op in ("add", "replace"):
        if op == "replace" and last not in node:
            raise KeyError(f"JSON patch replaces a missing {operation['path']}")
        node[last] = copy.deepcopy(operation["value"])
    else:
        raise ValueError(f"JSON patch operation {op!r} is not implemented here")


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata and spec) of a Deployment, StatefulSet or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = pod_template(workload)["spec"]
    return spec


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def assemble(folder: Path) -> list[dict[str, Any]]:
    """The kustomization's resources with its namespace, labels, images and patches applied,
    without the generated ConfigMaps and Secrets."""
    spec = kustomization(folder)
    objects = copy.deepcopy(resources(folder))
    images = {i["name"]: i for i in spec.get("images", [])}
    for obj in objects:
        if "namespace" in spec and obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = spec["namespace"]
        for entry in spec.get("labels", []):
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
        if obj["kind"] in WORKLOAD_KINDS:
            for container in all_containers(pod_spec(obj)):
                name, _, tag = container["image"].partition(":")
                if name in images:
                    image = images[name]
                    tag = image.get("newTag", tag)
                    container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")
    for patch in spec.get("patches", []):
        target = patch["target"]
        (obj,) = [
            o
            for o in objects
            if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
        ]
        for operation in yaml.safe_load(patch["patch"]):
            _apply_operation(obj, operation)
    return objects


def render(folder: Path, workdir: Path) -> list[dict[str, Any]]:
    """The kustomization as kubectl renders it, or assembled in Python without kubectl."""
    if shutil.which("kubectl") is None:
        return assemble(folder)
    return kubectl_render(folder, workdir)

"""The cluster manifests as hardened: every container meets the `restricted` Pod Security
Standard with a read-only root filesystem, every image runs a non-root user, NetworkPolicies let
only the deployment's own connections through, and Terraform refuses a cluster that would ignore
them. The manifests are rendered (tests/infra/rendering.py) as the cluster receives them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from danq.kfp.images import IMAGE_UID

from .manifests import KUBEFLOW_USER_K8S, MLFLOW_K8S, REPO, find, kustomization
from .netpol import NAMESPACE_NAME_LABEL, Address, Pod, allows
from .rendering import (
    WORKLOAD_KINDS,
    all_containers,
    assemble,
    kubectl_render,
    pod_spec,
    pod_template,
    render,
)

DOCKER = REPO / "infra" / "docker"
GKE = REPO / "infra" / "gke"
# The postgres user of the official image (docker-library/postgres 17/bookworm/Dockerfile:
# useradd --uid=999), which owns the image's PostgreSQL folders.
POSTGRES_IMAGE_UID = 999
# What each container writes, besides its mounted data (found by tracing the processes with
# strace, and for PostgreSQL by reading the image's docker-entrypoint.sh): these must be
# writable volumes, since every root filesystem is read-only.
WRITES = {
    "mlflow": ("/tmp",),
    "postgres": ("/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"),
    "dump": ("/backup",),
    "upload": (),
}
# Pod Security Standards, restricted profile (kubernetes.io/docs/concepts/security/
# pod-security-standards/): the volume types it admits.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
PIPELINE_NAMESPACE = kustomization(KUBEFLOW_USER_K8S)["namespace"]
GOOGLE_API = Address("142.250.65.91")  # an address of storage.googleapis.com


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(MLFLOW_K8S, tmp_path_factory.mktemp("render"))


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def mounted_volumes(pod: dict[str, Any], workload: dict[str, Any]) -> dict[str, str]:
    """Volume name -> its type, the StatefulSet's claim templates included."""
    types = {v["name"]: next(k for k in v if k != "name") for v in pod.get("volumes", [])}
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        types[claim["metadata"]["name"]] = "persistentVolumeClaim"
    return types


def test_rendering_without_kubectl_matches_kubectl(tmp_path: Path) -> None:
    """rendering.assemble, which the tests use where kubectl is missing, yields what kubectl
    does for everything but the generated ConfigMaps and Secrets (named with a hash there)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing to compare the Python rendering with")
    for folder in (MLFLOW_K8S, KUBEFLOW_USER_K8S):
        rendered = kubectl_render(folder, tmp_path / folder.name)
        generated = [o for o in rendered if o["kind"] in ("ConfigMap", "Secret")]
        text = json.dumps([o for o in rendered if o not in generated])
        for obj in generated:
            name = obj["metadata"]["name"]
            text = text.replace(f'"{name}"', '"{}"'.format(name.rsplit("-", 1)[0]))
        by_key = {(o["kind"], o["metadata"]["name"]): o for o in json.loads(text)}
        assembled = {(o["kind"], o["metadata"]["name"]): o for o in assemble(folder)}
        assert by_key == assembled, folder


def test_namespace_enforces_the_restricted_pod_security_standard(
    objects: list[dict[str, Any]],
) -> None:
    labels = find(objects, "Namespace", "mlflow")["metadata"].get("labels", {})
    for mode in ("enforce", "audit", "warn"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", mode


def test_every_container_meets_the_restricted_standard_on_a_read_only_root(
    objects: list[dict[str, Any]],
) -> None:
    found = workloads(objects)
    assert set(found) == {"mlflow", "postgres", "postgres-backup"}
    for name, workload in found.items():
        pod = pod_spec(workload)
        assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}, name
        assert pod.get("automountServiceAccountToken") is False, name
        volumes = mounted_volumes(pod, workload)
        assert set(volumes.values()) <= RESTRICTED_VOLUME_TYPES, (name, volumes)
        for container in all_containers(pod):
            where = f"{name}/{container['name']}"
            own = container.get("securityContext", {})
            assert effective(pod, container, "runAsNonRoot") is True, where
            # Explicit ids: the kubelet need not trust the image's USER.
            assert effective(pod, container, "runAsUser") not in (None, 0), where
            assert effective(pod, container, "runAsGroup") not in (None, 0), where
            seccomp = effective(pod, container, "seccompProfile") or {}
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("privileged") is not True, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not own.get("capabilities", {}).get("add"), where
            assert own.get("readOnlyRootFilesystem") is True, where
            assert not any(p.get("hostPort") for p in container.get("ports", [])), where
            writable = {
                m["mountPath"]: volumes[m["name"]]
                for m in container.get("volumeMounts", [])
                if not m.get("readOnly")
            }
            for path in WRITES[container["name"]]:
                assert writable.get(path) in ("emptyDir", "persistentVolumeClaim"), (where, path)
        if "volumeClaimTemplates" in workload["spec"]:
            # The data volume is group-owned by the server's group, so the server can write it.
            security = pod["securityContext"]
            assert security.get("fsGroup") == security["runAsGroup"], name


def dockerfile_user(name: str) -> tuple[int, int, str]:
    """(uid, gid, HOME) of the user a Dockerfile's image runs as, checked to be created there."""
    text = (DOCKER / name).read_text()
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users, f"{name} has no USER: its image runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), f"{name}: USER {users[-1]} is not numeric uid:gid"
    (home,) = re.findall(r"^ENV HOME=(\S+)$", text, flags=re.M)
    useradd = re.search(rf"useradd --uid {uid} --gid {gid} --create-home --home-dir (\S+)", text)
    assert useradd and useradd.group(1) == home, f"{name}: no user {uid} created with HOME {home}"
    assert re.search(rf"groupadd --gid {gid} ", text), f"{name}: no group {gid} created"
    return int(uid), int(gid), home


def test_every_image_runs_as_a_non_root_user_with_a_home() -> None:
    for name in sorted(p.name for p in DOCKER.glob("Dockerfile.*")):
        uid, gid, home = dockerfile_user(name)
        assert uid != 0 and gid != 0, name
        assert home.startswith("/home/"), name
    # The pipeline's steps run as danq.kfp.images.IMAGE_UID (runAsUser in a --non-root compile).
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        assert dockerfile_user(name)[:2] == (IMAGE_UID, IMAGE_UID), name


def test_pods_run_the_users_their_images_are_built_with(objects: list[dict[str, Any]]) -> None:
    uid, gid, _ = dockerfile_user("Dockerfile.mlflow")
    image = kustomization(MLFLOW_K8S)["images"][0]["newName"]
    images = {image: (uid, gid), "postgres": (POSTGRES_IMAGE_UID, POSTGRES_IMAGE_UID)}
    for name, workload in workloads(objects).items():
        pod = pod_spec(workload)
        for container in all_containers(pod):
            ids = (effective(pod, container, "runAsUser"), effective(pod, container, "runAsGroup"))
            assert ids == images[container["image"].split(":")[0]], (name, container["name"])


def policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def pod_of(objects: list[dict[str, Any]], workload: str) -> Pod:
    """A pod of one of the namespace's workloads, as the policies see it."""
    return Pod("mlflow", pod_template(workloads(objects)[workload])["metadata"]["labels"])


def container_port(objects: list[dict[str, Any]], workload: str) -> int:
    (container,) = pod_spec(workloads(objects)[workload])["containers"]
    (port,) = container["ports"]
    return int(port["containerPort"])


def test_postgres_admits_only_mlflow_and_the_backup_job(objects: list[dict[str, Any]]) -> None:
    rules = policies(objects)
    postgres, port = pod_of(objects, "postgres"), container_port(objects, "postgres")
    assert allows(rules, pod_of(objects, "mlflow"), postgres, port)
    assert allows(rules, pod_of(objects, "postgres-backup"), postgres, port)
    assert not allows(rules, pod_of(objects, "mlflow"), postgres, port + 1)
    for stranger in (
        Pod(PIPELINE_NAMESPACE, {"pipelines.kubeflow.org/v2_component": "true"}),
        Pod("mlflow", {"app.kubernetes.io/name": "debug"}),
        Pod("default", {"app.kubernetes.io/name": "mlflow"}),
    ):
        assert not allows(rules, stranger, postgres, port), stranger
    # PostgreSQL itself opens no connection.
    assert not allows(rules, postgres, GOOGLE_API, 443)
    assert not allows(rules, postgres, pod_of(objects, "mlflow"), container_port(objects, "mlflow"))


def test_mlflow_admits_only_the_pipeline_namespace(objects: list[dict[str, Any]]) -> None:
    rules = policies(objects)
    mlflow, port = pod_of(objects, "mlflow"), container_port(objects, "mlflow")
    assert allows(rules, Pod(PIPELINE_NAMESPACE, {"any": "step"}), mlflow, port)
    assert not allows(rules, Pod(PIPELINE_NAMESPACE, {"any": "step"}), mlflow, port + 1)
    for stranger in (
        Pod("default"),
        Pod("kubeflow", {"app": "ml-pipeline"}),
        Pod("mlflow", {"app.kubernetes.io/name": "debug"}),
        pod_of(objects, "postgres-backup"),
    ):
        assert not allows(rules, stranger, mlflow, port), stranger


def test_mlflow_and_the_backup_reach_only_postgres_dns_and_google(
    objects: list[dict[str, Any]],
) -> None:
    rules = policies(objects)
    postgres, db_port = pod_of(objects, "postgres"), container_port(objects, "postgres")
    for name in ("mlflow", "postgres-backup"):
        source = pod_of(objects, name)
        assert allows(rules, source, postgres, db_port), name
        assert allows(rules, source, Address("10.8.0.10"), 53, "UDP"), name
        assert allows(rules, source, GOOGLE_API, 443), name
        assert allows(rules, source, Address("169.254.169.254"), 80), name  # Workload Identity
        assert not allows(rules, source, GOOGLE_API, 80), name
        assert not allows(rules, source, Address("10.4.0.7"), 443), name  # in-cluster services
        assert not allows(rules, source, Pod(PIPELINE_NAMESPACE), 8888), name


def test_mlflow_policy_names_the_pipeline_namespace_of_kubeflow_user(
    objects: list[dict[str, Any]],
) -> None:
    """Site setting 5 of infra/k8s/mlflow and the namespace of infra/k8s/kubeflow-user agree."""
    policy = find(objects, "NetworkPolicy", "mlflow")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    selector = {"matchLabels": {NAMESPACE_NAME_LABEL: PIPELINE_NAMESPACE}}
    assert peer == {"namespaceSelector": selector}


def precondition(text: str) -> str:
    """The condition of the node pool's precondition block in infra/gke/main.tf."""
    match = re.search(r"precondition\s*\{.*?condition\s*=\s*\((.*?)\n\s*\)\n", text, flags=re.S)
    assert match, "infra/gke has no precondition on the cluster's NetworkPolicy enforcement"
    return match.group(1)


def terraform_value(expression: str, workdir: Path) -> str:
    """An expression's value by `terraform console` in an empty folder (no configuration, so
    no providers to install)."""
    done = subprocess.run(
        [str(shutil.which("terraform")), "console"],
        input=" ".join(expression.split()) + "\n",
        capture_output=True,
        text=True,
        cwd=workdir,
        env={"TF_CLI_CONFIG_FILE": "/dev/null", "HOME": str(workdir)},
        check=True,
    )
    return done.stdout.strip()


def test_gke_refuses_a_cluster_that_does_not_enforce_network_policy(tmp_path: Path) -> None:
    text = "".join(p.read_text() for p in sorted(GKE.glob("*.tf")))
    data = re.search(r'data "google_container_cluster" "(\w+)" \{([^}]*)\}', text)
    assert data, "infra/gke does not read the cluster it adds the node pool to"
    assert re.search(r"name\s*=\s*var\.cluster", data.group(2))
    assert re.search(r"location\s*=\s*var\.location", data.group(2))
    condition = precondition(text)
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed: the condition cannot be evaluated")
    reference = f"data.google_container_cluster.{data.group(1)}."
    clusters = {
        # Dataplane V2 enforces NetworkPolicy; GKE reports the Calico addon as disabled there.
        '{datapath_provider = "ADVANCED_DATAPATH", network_policy = [{enabled = false}]}': True,
        '{datapath_provider = "LEGACY_DATAPATH", network_policy = [{enabled = true}]}': True,
        '{datapath_provider = "LEGACY_DATAPATH", network_policy = [{enabled = false}]}': False,
        '{datapath_provider = "", network_policy = []}': False,
    }
    for cluster, enforced in clusters.items():
        expression = f"[for c in [{cluster}] : ({condition.replace(reference, 'c.')})][0]"
        assert terraform_value(expression, tmp_path) == str(enforced).lower(), cluster

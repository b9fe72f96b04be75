"""Infrastructure that cannot run here, still checked: the images pin what pyproject pins, the
kustomize manifests parse, render and reference each other, and the GPU node pool, the MLflow
Service and the secrets are the ones the compiled pipeline selects, tolerates and reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from .manifests import (
    KUBEFLOW_USER_K8S,
    MLFLOW_K8S,
    REPO,
    deployment_container,
    find,
    kustomization,
    resources,
    server_arguments,
)
from .rendering import WORKLOAD_KINDS, all_containers, kubectl_render, pod_spec, read_env

DOCKER = REPO / "infra" / "docker"
GKE = REPO / "infra" / "gke"
PIPELINE_YAML = REPO / "pipelines" / "danq_pipeline.yaml"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# Terraform spells taint effects in the GKE API's enum, Kubernetes in CamelCase.
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}

# --- container images ----------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement(package: str) -> str:
    """pyproject's requirement of a package, e.g. 'tensorflow==2.21.0'."""
    deps = pyproject()["project"]["dependencies"]
    (spec,) = [d for d in deps if re.split(r"[=<>\[]", d)[0] == package]
    return spec


def pinned(package: str) -> str:
    return requirement(package).split("==")[1]


def dev_requirement(package: str) -> str:
    """pyproject's dev-extra requirement of a package, extras dropped, e.g. 'psycopg>=3.2,<4'."""
    deps = pyproject()["project"]["optional-dependencies"]["dev"]
    (spec,) = [d for d in deps if re.split(r"[=<>\[]", d)[0] == package]
    return re.sub(r"\[[^\]]*\]", "", spec)


def base_images(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM (\S+)", (DOCKER / dockerfile).read_text(), flags=re.M)


def pip_requirements(dockerfile: str) -> dict[str, str]:
    """The quoted requirements a Dockerfile pip-installs, by package name (extras dropped)."""
    specs = re.findall(r'"([A-Za-z0-9_.\-\[\]]+[=<>][^"]*)"', (DOCKER / dockerfile).read_text())
    return {re.split(r"[=<>\[]", s)[0]: re.sub(r"\[[^\]]*\]", "", s) for s in specs}


def test_gpu_image_uses_the_pinned_tensorflow() -> None:
    assert base_images("Dockerfile.gpu") == [f"tensorflow/tensorflow:{pinned('tensorflow')}-gpu"]


def test_images_install_this_repository_with_its_pins() -> None:
    found = pyproject()["tool"]["setuptools"]["packages"]["find"]
    # Only danq is installed; components/ and pipelines/ are not site-packages.
    assert found["include"] == ["danq*"]
    python = pyproject()["project"]["requires-python"]
    for name in ("Dockerfile.gpu", "Dockerfile.cpu"):
        text = (DOCKER / name).read_text()
        assert "COPY pyproject.toml" in text, name
        # The package's source, and the copy of the pipeline sources that
        # `danq pipeline compile` finds in the image's working directory.
        for source in (*found["where"], "components", "pipelines"):
            assert f"COPY {source} ./{source}\n" in text, (name, source)
        assert "pip install ." in text, name  # the pins come from pyproject, not the image
        assert "tensorflow-io" not in text
    assert base_images("Dockerfile.cpu") == ["python:3.11-slim"] and "3.11" in python


def test_mlflow_image_runs_the_client_version_with_postgres_and_gcs() -> None:
    installed = pip_requirements("Dockerfile.mlflow")
    assert installed["mlflow"] == requirement("mlflow")
    assert installed["google-cloud-storage"] == requirement("google-cloud-storage")
    # basic-auth (--app-name basic-auth in the Deployment) needs mlflow's "auth" extra.
    assert '"mlflow[auth]==' in (DOCKER / "Dockerfile.mlflow").read_text()
    (image,) = kustomization(MLFLOW_K8S)["images"]
    assert image["name"] == deployment_container()["image"]
    assert image["newTag"] == pinned("mlflow")


def auth_database_uri() -> str:
    (uri,) = re.findall(
        r"^database_uri = (\S+)", (MLFLOW_K8S / "basic_auth.ini").read_text(), flags=re.M
    )
    return uri


def test_mlflow_image_installs_the_driver_sqlalchemy_loads_for_its_database_uris() -> None:
    """The server's stores are postgresql:// URIs; the driver SQLAlchemy imports for them is
    the one the image must install (SQLAlchemy 2.1 loads psycopg 3, not psycopg2), within the
    range the tests' server runs (pyproject's dev extra), binary: the slim image has no libpq."""
    from sqlalchemy.engine import make_url

    installed = pip_requirements("Dockerfile.mlflow")
    for uri in (server_arguments()["--backend-store-uri"], auth_database_uri()):
        module = make_url(uri).get_dialect().import_dbapi().__name__.split(".")[0]
        (distribution,) = packages_distributions()[module]
        assert distribution in installed, (
            f"{uri} loads {module!r} (distribution {distribution}), which Dockerfile.mlflow "
            f"does not install: it installs {sorted(installed)}"
        )
        spec = installed[distribution]
        assert spec == dev_requirement(distribution), (spec, dev_requirement(distribution))
        allowed = SpecifierSet(spec.removeprefix(distribution))
        assert version(distribution) in allowed, (version(distribution), spec)
        assert f'"{distribution}[binary]' in (DOCKER / "Dockerfile.mlflow").read_text()


# --- kustomize manifests -------------------------------------------------------------------


def generated(folder: Path) -> dict[str, set[str]]:
    """Keys of each generated ConfigMap and Secret; a git-ignored env file is read from the
    .example beside it, which must list the same keys."""
    spec = kustomization(folder)
    keys: dict[str, set[str]] = {}
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        names = {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
        names |= {Path(f).name for f in generator.get("files", [])}
        for env in generator.get("envs", []):
            names |= set(read_env(folder / f"{env}.example"))
        keys[generator["name"]] = names
    return keys


def service_uri(service: dict[str, Any], namespace: str) -> str:
    (port,) = service["spec"]["ports"]
    return f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port['port']}"


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def test_every_kustomize_input_exists_and_real_secrets_are_git_ignored() -> None:
    for folder in (MLFLOW_K8S, KUBEFLOW_USER_K8S):
        spec = kustomization(folder)
        for name in spec.get("resources", []):
            assert (folder / name).is_file(), name
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            for name in generator.get("files", []):
                assert (folder / name).is_file(), name
            for env in generator.get("envs", []):
                assert (folder / f"{env}.example").is_file(), env
                ignored = subprocess.run(
                    ["git", "-C", str(REPO), "check-ignore", "-q", str(folder / env)]
                )
                assert ignored.returncode == 0, f"{folder / env} must be git-ignored"
    for obj in resources(MLFLOW_K8S):
        assert obj["apiVersion"] and obj["metadata"]["name"], obj
    assert kustomization(MLFLOW_K8S)["namespace"] == "mlflow"


def test_workloads_reference_what_the_kustomization_defines() -> None:
    objects, keys = resources(MLFLOW_K8S), generated(MLFLOW_K8S)
    for workload in workloads(objects):
        pod = workload["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = find(objects, "Service", workload["metadata"]["name"])
        assert service["spec"]["selector"].items() <= labels.items()
        if account := pod["spec"].get("serviceAccountName"):
            find(objects, "ServiceAccount", account)
        for volume in pod["spec"].get("volumes", []):
            if "configMap" in volume:
                names = {i["key"] for i in volume["configMap"].get("items", [])}
                assert names <= keys[volume["configMap"]["name"]], volume
            if "secret" in volume:
                names = {i["key"] for i in volume["secret"].get("items", [])}
                assert names <= keys[volume["secret"]["secretName"]], volume
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])} | claims
        for container in pod["spec"]["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, port
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                ref = ref.get("secretKeyRef") or ref.get("configMapKeyRef")
                if ref:
                    assert ref["key"] in keys[ref["name"]], env
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, mount
            assert {"requests", "limits"} <= container["resources"].keys(), container["name"]
            for probe in ("readinessProbe", "livenessProbe"):
                check = container[probe]
                assert check.get("exec") or check["httpGet"]["port"] in ports, (probe, check)


def test_mlflow_server_settings_agree_with_the_service_and_database() -> None:
    objects = resources(MLFLOW_K8S)
    options = server_arguments()
    service = find(objects, "Service", "mlflow")
    uri = urlsplit(service_uri(service, "mlflow"))
    allowed = options["--allowed-hosts"].split(",")
    short = ["mlflow", "mlflow.mlflow", "mlflow.mlflow.svc", "mlflow.mlflow.svc.cluster.local"]
    for host in short:
        assert {host, f"{host}:{uri.port}"} <= set(allowed), host
    assert {"localhost", "localhost:*"} <= set(allowed)  # kubectl port-forward
    (port,) = deployment_container()["ports"]
    assert options["--port"] == str(port["containerPort"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert "--serve-artifacts" in options and options["--app-name"] == "basic-auth"

    # $(VAR) in args is expanded by Kubernetes only for variables the container defines.
    defined = {e["name"] for e in deployment_container()["env"]}
    assert set(re.findall(r"\$\((\w+)\)", " ".join(deployment_container()["args"]))) <= defined

    postgres = find(objects, "Service", "postgres")
    databases = {"mlflow"} | set(
        re.findall(r"CREATE DATABASE (\w+)", (MLFLOW_K8S / "postgres-init.sql").read_text())
    )
    for store in (options["--backend-store-uri"], auth_database_uri()):
        parts = urlsplit(store)
        assert parts.scheme == "postgresql" and parts.password is None, store  # PGPASSWORD
        assert parts.hostname == "postgres.mlflow.svc.cluster.local", store
        assert parts.port == postgres["spec"]["ports"][0]["port"], store
        assert parts.path.lstrip("/") in databases, store
    statefulset = find(objects, "StatefulSet", "postgres")
    (db,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in db["env"]}
    assert env["POSTGRES_USER"] == urlsplit(options["--backend-store-uri"]).username
    assert kustomization(MLFLOW_K8S)["configMapGenerator"][0]["literals"][0].startswith(
        "MLFLOW_ARTIFACTS_DESTINATION=gs://"
    )


def test_kustomize_renders_with_generated_names_wired_in(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the generated names are kustomize's")
    objects = kubectl_render(MLFLOW_K8S, tmp_path)
    assert {o["metadata"].get("namespace", "mlflow") for o in objects} == {"mlflow"}
    generated_names = {
        o["metadata"]["name"] for o in objects if o["kind"] in ("Secret", "ConfigMap")
    }
    for workload in [o for o in objects if o["kind"] in WORKLOAD_KINDS]:
        spec = pod_spec(workload)
        volumes = spec.get("volumes", [])
        refs = (
            [
                ref["name"]
                for c in all_containers(spec)
                for e in c.get("env", [])
                for ref in e.get("valueFrom", {}).values()
            ]
            + [v["configMap"]["name"] for v in volumes if "configMap" in v]
            + [v["secret"]["secretName"] for v in volumes if "secret" in v]
        )
        assert refs and set(refs) <= generated_names, workload["metadata"]["name"]
    account = find(objects, "ServiceAccount", "mlflow")
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]
    (container,) = find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f"danq-mlflow:{pinned('mlflow')}")

    (secret,) = kubectl_render(KUBEFLOW_USER_K8S, tmp_path)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "mlflow-credentials"


# --- GKE node pool (Terraform) -------------------------------------------------------------


def terraform_text() -> str:
    return "".join(p.read_text() for p in sorted(GKE.glob("*.tf")))


def terraform_block(text: str, header: str) -> dict[str, str]:
    """`name = "value"` attributes of the first block opened by header (no nested blocks)."""
    match = re.search(re.escape(header) + r"\s*\{([^{}]*)\}", text)
    assert match, header
    return dict(re.findall(r'^\s*(\w+)\s*=\s*"([^"]*)"', match.group(1), flags=re.M))


def gpu_taint() -> dict[str, str]:
    taint = terraform_block(terraform_text(), "taint")
    return {"key": taint["key"], "effect": TAINT_EFFECTS[taint["effect"]]}


def default_accelerator() -> str:
    return terraform_block(terraform_text(), 'variable "accelerator_type"')["default"]


def test_terraform_is_well_formed_and_taints_gpu_nodes() -> None:
    if shutil.which("terraform") is not None:
        check = subprocess.run(
            ["terraform", "fmt", "-check", "-diff", str(GKE)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    assert gpu_taint() == {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
    assert "guest_accelerator" in terraform_text() and default_accelerator() == "nvidia-l4"
    assert 'gpu_driver_version = "LATEST"' in terraform_text()


def test_build_context_holds_what_the_images_copy_and_nothing_else() -> None:
    """.dockerignore excludes everything but what a Dockerfile COPYs (no .venv, data, runs)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for dockerfile in DOCKER.glob("Dockerfile.*"):
        for sources in re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), flags=re.M):
            copied.update(sources.split())
    assert copied == included


# --- the compiled pipeline against this infrastructure ------------------------------------


def compiled_pipeline() -> tuple[dict[str, Any], dict[str, Any]]:
    """The PipelineSpec and the kubernetes platform spec's executors of the compiled YAML."""
    assert PIPELINE_YAML.is_file(), f"{PIPELINE_YAML} is missing: run `danq pipeline compile`"
    spec, platform = yaml.safe_load_all(PIPELINE_YAML.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def gpu_executors(spec: dict[str, Any]) -> list[str]:
    return [
        name
        for name, executor in spec["deploymentSpec"]["executors"].items()
        if executor.get("container", {}).get("resources", {}).get("accelerator")
    ]


def tasks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return [task for dag in dags for task in dag["tasks"].values()]


def test_pipeline_schedules_training_on_the_gpu_pool() -> None:
    from danq.kfp.tasks import gpu_node_selector

    spec, executors = compiled_pipeline()
    gpu = gpu_executors(spec)
    assert gpu, "no step of the pipeline asks for a GPU"
    for name in gpu:
        assert gpu_taint() | {"operator": "Exists"} in executors[name]["tolerations"], name
        selector = executors[name]["nodeSelector"]
        labels = selector.get("labels")
        if labels is None:  # a JSON selector from a task output: follow it to gpu_type
            assert "nodeSelectorJson" in selector, name
            (producer,) = [
                t for t in tasks(spec) if t["componentRef"]["name"] == "comp-gpu-node-selector"
            ]
            source = producer["inputs"]["parameters"]["gpu_type"]["componentInputParameter"]
            default = spec["root"]["inputDefinitions"]["parameters"][source]["defaultValue"]
            labels = gpu_node_selector(default)
        assert labels == {GKE_ACCELERATOR_LABEL: default_accelerator()}, name


def test_pipeline_reads_the_secrets_and_server_this_infrastructure_provides() -> None:
    spec, executors = compiled_pipeline()
    keys = generated(KUBEFLOW_USER_K8S)
    secrets = [s for executor in executors.values() for s in executor.get("secretAsEnv", [])]
    assert secrets, "no step reads a secret"
    for secret in secrets:
        wanted = {k["secretKey"] for k in secret["keyToEnv"]}
        assert wanted <= keys[secret["secretName"]], secret["secretName"]

    # The tracking URI is compiled into every task whose component takes it, as a constant:
    # no run parameter can send the steps' MLflow login to another host.
    from danq.kfp.tracking_uri import TRACKING_URI_INPUT

    assert TRACKING_URI_INPUT not in spec["root"]["inputDefinitions"]["parameters"]
    takes_uri = {
        name
        for name, component in spec["components"].items()
        if TRACKING_URI_INPUT in component.get("inputDefinitions", {}).get("parameters", {})
    }
    given = [
        task["inputs"]["parameters"][TRACKING_URI_INPUT]
        for task in tasks(spec)
        if task["componentRef"]["name"] in takes_uri
    ]
    assert given, "no task takes the MLflow tracking URI"
    service = find(resources(MLFLOW_K8S), "Service", "mlflow")
    uri = service_uri(service, kustomization(MLFLOW_K8S)["namespace"])
    assert all(value == {"runtimeValue": {"constant": uri}} for value in given), given
    assert urlsplit(uri).netloc in server_arguments()["--allowed-hosts"].split(",")

"""The Kubeflow pipeline: its compiled YAML, the `danq pipeline` CLI, and whole local runs.

The committed pipelines/danq_pipeline.yaml is what users upload in the KFP UI: it must
match the source and hold the GPU scheduling, secrets, caching and control flow that only a
cluster would exercise. The local runs use kfp.local.SubprocessRunner on tiny data.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import local

from danq import tracking
from danq.cli.main import main
from danq.config import VARIANTS, MlflowConfig, ModelConfig, PromoteConfig, TrainConfig
from danq.kfp.backend import MIN_BACKEND_VERSION, NON_ROOT_BACKEND
from danq.kfp.images import IMAGE_UID
from danq.kfp.pipeline import (
    check_package,
    compile_pipeline,
    compiled_path,
    repository_root,
    required_backend,
)
from danq.kfp.staging import folder_bytes, input_bytes
from danq.kfp.staging import table as staging_table
from danq.kfp.tracking_uri import CLUSTER_TRACKING_URI, compiled_tracking_uris

from ..infra.manifests import MLFLOW_K8S, find, kustomization, resources
from .local_runs import PIPELINE_MODEL, ResumedRun

EXPECTED_VARIANTS = ["baseline", "random_dropout"]


def documents(path: Path) -> tuple[dict, dict]:
    """The pipeline spec and the Kubernetes platform spec of a compiled YAML."""
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled() -> tuple[dict, dict]:
    return documents(compiled_path())


def dag_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the root DAG and of its sub-DAGs (loop, condition), by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_committed_yaml_is_up_to_date_with_the_source(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert fresh.read_text() == compiled_path().read_text(), (
        "pipelines/danq_pipeline.yaml is out of date: run `danq pipeline compile`"
    )


def test_run_parameters_default_to_the_package_settings(compiled: tuple[dict, dict]) -> None:
    """The pipeline's defaults are danq.config's: a run with no arguments trains and promotes
    as `dvc repro` does without a params.yaml."""
    spec, _ = compiled
    defaults = {
        name: parameter.get("defaultValue")
        for name, parameter in spec["root"]["inputDefinitions"]["parameters"].items()
    }
    assert defaults["max_epochs"] == TrainConfig().max_epochs
    assert defaults["batch_size"] == TrainConfig().batch_size
    assert defaults["model_preset"] == ModelConfig().preset
    assert defaults["registered_model"] == MlflowConfig().registered_model
    assert defaults["min_macro_auroc"] == PromoteConfig().min_macro_auroc
    assert defaults["min_macro_aupr"] == PromoteConfig().min_macro_aupr
    assert defaults["overrides"] == []
    # Compiled without a pipeline root, the committed YAML has no durable checkpoint folder.
    assert (defaults["checkpoint_root"], defaults["resume_key"]) == ("", "")
    assert f">= {MIN_BACKEND_VERSION}" in spec["pipelineInfo"]["description"]
    assert "recompile" in spec["pipelineInfo"]["description"]


GPU_STEPS = {"train", "train-2", "evaluate", "evaluate-2", "compare"}


def test_training_and_scoring_run_on_gpu_nodes_with_resources(compiled: tuple[dict, dict]) -> None:
    spec, k8s = compiled
    tasks = dag_tasks(spec)
    on_gpu = set()
    for name, task in tasks.items():
        label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
        executor = spec["deploymentSpec"]["executors"].get(label, {})
        resources = executor.get("container", {}).get("resources", {})
        if "accelerator" in resources:
            on_gpu.add(name)
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest"):
                assert resources[key]
            assert k8s[label]["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ]
            selector = k8s[label]["nodeSelector"]["nodeSelectorJson"]["taskOutputParameter"]
            assert selector == {"outputParameterKey": "Output", "producerTask": "gpu-node-selector"}
            assert "danq-gpu" in executor["container"]["image"]
        else:
            assert "tolerations" not in k8s.get(label, {}), name
    assert on_gpu == GPU_STEPS
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_count"]["defaultValue"] == 1
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_type"]["defaultValue"] == (
        "nvidia-l4"
    )
    assert tasks["gpu-node-selector"]["inputs"]["parameters"]["gpu_type"] == {
        "componentInputParameter": "gpu_type"
    }


def test_every_step_that_stages_data_has_a_sized_staging_volume_a_non_root_user_can_write(
    compiled: tuple[dict, dict],
) -> None:
    """The launcher's /gcs staging folder (temporary files go there too) is an emptyDir with
    each step's size limit: the images run as non-root and no KFP backend sets fsGroup, so a
    freshly provisioned (root-owned) volume would not be writable."""
    spec, k8s = compiled
    staged = {}
    for label, config in k8s.items():
        assert "genericEphemeralVolume" not in config, label
        for volume in config.get("emptyDirMounts", []):
            staged[label] = volume
            assert volume["mountPath"] == "/gcs"
            assert "medium" not in volume  # on disk, not in the pod's memory
    steps = {"validate", "prepare", "train", "evaluate", "compare", "promote"}
    assert {label.removeprefix("exec-").rsplit("-", 1)[0] for label in staged} >= steps
    assert staged["exec-prepare"]["sizeLimit"] == "40Gi"


def test_mlflow_credentials_come_from_a_kubernetes_secret(compiled: tuple[dict, dict]) -> None:
    _, k8s = compiled
    for executor in ("exec-train", "exec-evaluate", "exec-compare", "exec-promote"):
        (secret,) = k8s[executor]["secretAsEnv"]
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == "mlflow-credentials"
        assert {m["envVar"] for m in secret["keyToEnv"]} == {
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
        }
    # Compiled for Workload Identity: no key file anywhere.
    assert not any("secretAsVolume" in e for e in k8s.values())


def test_one_retried_train_task_per_variant_and_promote_only_when_blessed(
    compiled: tuple[dict, dict],
) -> None:
    spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    root_tasks = spec["root"]["dag"]["tasks"]
    # No ParallelFor: the backend ignores retry policies inside one (#12389, #13897).
    assert not any("parameterIterator" in t or "artifactIterator" in t for t in root_tasks.values())
    trains = {
        t["inputs"]["parameters"]["variant"]["runtimeValue"]["constant"]: t
        for name, t in root_tasks.items()
        if name.startswith("train")
    }
    assert sorted(trains) == EXPECTED_VARIANTS == list(VARIANTS)
    for variant, task in trains.items():
        assert task["retryPolicy"]["maxRetryCount"] == 3
        assert task["taskInfo"]["name"] == f"train {variant}"
        assert task["inputs"]["artifacts"]["shards"]["taskOutputArtifact"] == {
            "outputArtifactKey": "fit_shards",
            "producerTask": "prepare",
        }

    tasks = dag_tasks(spec)
    condition = root_tasks["condition-1"]
    assert "compare-Output" in condition["triggerPolicy"]["condition"]
    assert condition["triggerPolicy"]["condition"].endswith("== true")
    inside = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inside) == {"promote"}
    assert tasks["promote"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["compare"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["validate"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["train"]["cachingOptions"]["enableCache"] is True
    # The gate comes first and ties prepare to the content it checked.
    assert tasks["prepare"]["inputs"]["parameters"]["data_fingerprint"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "validate"}
    }
    for name in ("registered_model", "min_macro_auroc", "data_uri"):
        assert name in params


def test_the_tracking_uri_is_the_mlflow_service_compiled_into_every_mlflow_step(
    compiled: tuple[dict, dict],
) -> None:
    """The steps send the mlflow-credentials login to their tracking URI: no run parameter
    may set it, and the committed YAML's is the Service of infra/k8s/mlflow."""
    spec, _ = compiled
    assert "mlflow_tracking_uri" not in spec["root"]["inputDefinitions"]["parameters"]
    service = find(resources(MLFLOW_K8S), "Service", "mlflow")
    namespace = kustomization(MLFLOW_K8S)["namespace"]
    (port,) = service["spec"]["ports"]
    in_cluster = (
        f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port['port']}"
    )
    assert CLUSTER_TRACKING_URI == in_cluster
    assert compiled_tracking_uris(spec) == {
        task: in_cluster
        for task in (
            "train", "train-2", "evaluate", "evaluate-2", "explain", "explain-2", "compare",
            "comp-condition-1/promote",
        )
    }  # fmt: skip


def test_steps_after_train_never_receive_the_training_split(compiled: tuple[dict, dict]) -> None:
    """Each step gets only what it reads: the launcher copies every input artifact whole."""
    spec, _ = compiled
    received = {
        name: {
            (a.get("taskOutputArtifact") or {}).get("outputArtifactKey")
            or a.get("componentInputArtifact")
            for a in task["inputs"].get("artifacts", {}).values()
        }
        for name, task in dag_tasks(spec).items()
    }
    for step in ("evaluate", "evaluate-2", "explain", "explain-2", "compare", "promote"):
        assert "fit_shards" not in received[step], step
        assert not {"importer", "data"} & received[step], step
    assert received["train"] == {"fit_shards"}
    # Validation decides (compare and promote re-score the champion there); test only reports.
    assert received["evaluate"] == {"model", "valid_shards", "test_shards"}
    assert received["compare"] == {"training", "evaluation", "valid_shards"}
    assert received["explain"] == {"model", "evaluation", "valid_shards", "test_shards"}
    # promote sits in the If group: its inputs are that group's channels.
    promote_inputs = {name.rsplit("-", 1)[-1] for name in received["promote"]}
    assert promote_inputs == {"candidates", "champion_scores", "valid_shards"}


def test_a_non_root_compile_sets_every_steps_user_and_declares_the_backend_honouring_it(
    tmp_path: Path,
) -> None:
    """KFP 2.15.0, the project's minimum, ignores a securityContext: it is a compile option,
    whose YAML declares 2.16.0 and is checked against it."""
    out = compile_pipeline(tmp_path / "non-root.yaml", non_root=True)
    spec, k8s = documents(out)
    containers = {
        label for label, e in spec["deploymentSpec"]["executors"].items() if "container" in e
    }
    assert len(containers) == 11  # every step, the node-selector step too; importers have none
    for label in containers:
        assert k8s[label]["securityContext"] == {
            "runAsUser": str(IMAGE_UID),  # int64 in protobuf's JSON
            "runAsGroup": str(IMAGE_UID),
            "runAsNonRoot": True,
        }, label
    assert NON_ROOT_BACKEND == "2.16.0"
    assert "Needs a KFP backend >= 2.16.0." in spec["pipelineInfo"]["description"]
    assert required_backend(out) == "2.16.0"
    assert check_package(out) == []
    below = check_package(out, MIN_BACKEND_VERSION)
    assert {v.task for v in below} >= {"train", "validate", "comp-condition-1/promote"}
    assert all("kubeflow/pipelines#12832" in v.message for v in below)
    # The default compile sets no user: the steps run as the image's USER on any backend.
    _, default = documents(compiled_path())
    assert not any("securityContext" in config for config in default.values())


def test_upload_and_run_need_a_compiled_pipeline(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")  # never contacted
    missing = tmp_path / "missing.yaml"
    assert main(["pipeline", "upload", "--package", str(missing)]) == 2
    assert f"{missing}: no compiled pipeline there" in capsys.readouterr().err
    assert main(["pipeline", "run", "--package", str(missing), "--data-uri", "gs://b/d"]) == 2
    assert "no compiled pipeline there" in capsys.readouterr().err


def test_compile_works_from_a_subfolder_of_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repository_root()
    monkeypatch.chdir(root / "components")
    assert repository_root() == root
    assert compiled_path() == root / "pipelines" / "danq_pipeline.yaml"
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out)]) == 0
    assert out.read_text() == compiled_path().read_text()


def modules_loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running statement in the checkout."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repository_root(),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_danq_imports_the_pipeline_sources_only_to_compile() -> None:
    """No import cycle: danq loads components/ and pipelines/ only inside compile_pipeline,
    and the components load danq's task bodies only when they run."""
    loaded = modules_loaded_by("import danq.cli.pipeline, danq.kfp.pipeline, danq.kfp.tasks")
    assert not {"components", "pipelines"} & loaded
    loaded = modules_loaded_by("import pipelines.danq_pipeline")
    assert {"components.train", "danq.config"} <= loaded
    assert "danq.kfp.tasks" not in loaded


# --- whole pipeline, locally ----------------------------------------------------------------


@pytest.fixture
def run_locally(
    tiny_overrides: list[str], tiny_train: dict[str, Any]
) -> Callable[[Path, Path, str], None]:
    """Runs the pipeline under kfp.local with tiny settings, artifacts in root/kfp."""

    def run(root: Path, data: Path, uri: str) -> None:
        from pipelines.danq_pipeline import build_pipeline

        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "kfp"))
        # The URI is compiled in: the pipeline is built for this test's store.
        build_pipeline(tracking_uri=uri)(
            data_uri=str(data),
            checkpoint_root=str(root / "checkpoints"),
            registered_model=PIPELINE_MODEL,
            min_macro_auroc=0.0,
            min_macro_aupr=0.0,
            overrides=tiny_overrides,
            **tiny_train,
        )

    return run


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Components run in subprocesses from here: nothing lands in the work tree.
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_whole_pipeline_runs_locally_and_crowns_a_champion(
    resumed_run: ResumedRun, tiny_data: Path
) -> None:
    """The run that ends the shared fixture (its first attempt was killed mid-training)."""
    client = tracking.client(resumed_run.uri)
    aliases = client.get_registered_model(PIPELINE_MODEL).aliases
    assert set(aliases) == {"champion"}
    champion = client.get_model_version(PIPELINE_MODEL, str(aliases["champion"]))
    assert champion.tags["danq.blessed"] == "true"
    runs = client.search_runs([client.get_experiment_by_name("danq").experiment_id])
    assert sorted(r.data.tags["danq.variant"] for r in runs) == EXPECTED_VARIANTS
    assert all("test_macro_auroc" in r.data.metrics for r in runs)
    # Each variant's filter report, logged to its training run by the explain step.
    for run in runs:
        logged = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "explain")}
        assert {"report.html", "summary.json", "filters.meme"} <= logged
    # Lineage: the KFP run, the code's image and the data, on runs and versions alike. The
    # versions name the run that registered them, which also resumed the baseline; a training
    # that had finished in the killed run keeps that run's id.
    versions = client.search_model_versions(f"name='{PIPELINE_MODEL}'")
    (kfp_run,) = {v.tags["kfp.run_id"] for v in versions}
    trained_in = {r.data.tags["danq.variant"]: r.data.tags["kfp.run_id"] for r in runs}
    assert trained_in["baseline"] == kfp_run
    for tags in [r.data.tags for r in runs] + [v.tags for v in versions]:
        assert tags["kfp.run_id"] and "{{" not in tags["kfp.run_id"]
        assert tags["kfp.pipeline"] == "danq"
        assert tags["data.uri"] == str(tiny_data)
        assert tags["data.fingerprint"].startswith("sha256:")
        assert tags["kfp.image"].endswith(":" + tags["kfp.pipeline_version"])

    # What each step received, as the launcher would copy it into the pod.
    spec, _ = documents(compiled_path())
    received = input_bytes(spec, resumed_run.run_dir, {"importer": str(tiny_data)})
    print("\nbytes each step receives (tiny data):\n" + staging_table(received))
    data_bytes = folder_bytes(tiny_data)
    assert set(received["validate"].values()) == set(received["prepare"].values()) == {data_bytes}
    assert set(received) == {
        "validate", "prepare", "gpu-node-selector", "train", "train-2", "evaluate",
        "evaluate-2", "explain", "explain-2", "compare", "promote",
    }  # fmt: skip
    for step in ("train", "train-2", "evaluate", "evaluate-2", "explain", "promote"):
        assert sum(received[step].values()) < data_bytes, step
    # compare gets no data, only results: two training curves (PNG) and the predictions of two
    # splits, which on the tiny data weigh about as much as the data (on DeepSEA: megabytes
    # against 24 GB).
    assert received["compare"]["valid_shards"] == received["evaluate"]["valid_shards"]
    assert sum(received["compare"].values()) < 2 * data_bytes
    valid_shards = received["evaluate"]["valid_shards"]
    assert received["compare"]["valid_shards"] == received["promote"]["valid_shards"]
    assert received["promote"]["valid_shards"] == valid_shards
    assert received["train"]["shards"] > valid_shards  # train and valid: 320 of 400 sequences


@pytest.mark.slow
def test_failing_data_gate_stops_the_run_before_training(
    tiny_data: Path,
    workdir: Path,
    tracking_store: Callable[[Path], str],
    corrupt_labels: Callable[[Path, Path], Path],
    run_locally: Callable[[Path, Path, str], None],
) -> None:
    uri = tracking_store(workdir)
    bad = corrupt_labels(tiny_data, workdir / "bad_data")
    with pytest.raises(RuntimeError, match="Inner task failed: .*validate"):
        run_locally(workdir, bad, uri)
    client = tracking.client(uri)
    assert client.search_runs([client.get_experiment_by_name("danq").experiment_id]) == []
    assert client.search_registered_models() == []
    (run_dir,) = (workdir / "kfp").iterdir()
    assert {p.name for p in run_dir.iterdir()} <= {"validate", "importer", "gpu-node-selector"}
    assert not (workdir / "checkpoints").exists()
    assert not list(run_dir.rglob("model.keras"))

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
from danq.errors import ConfigError
from danq.kfp.pipeline import (
    check_arguments,
    compile_pipeline,
    compiled_path,
    parse_arguments,
    repository_root,
)

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
    assert defaults["variants"] == list(VARIANTS) == EXPECTED_VARIANTS
    assert defaults["max_epochs"] == TrainConfig().max_epochs
    assert defaults["batch_size"] == TrainConfig().batch_size
    assert defaults["model_preset"] == ModelConfig().preset
    assert defaults["registered_model"] == MlflowConfig().registered_model
    assert defaults["min_macro_auroc"] == PromoteConfig().min_macro_auroc
    assert defaults["min_macro_aupr"] == PromoteConfig().min_macro_aupr
    assert defaults["overrides"] == []


def test_train_runs_on_a_gpu_node_with_resources(compiled: tuple[dict, dict]) -> None:
    spec, k8s = compiled
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "gpu_count" in resources["accelerator"]["resourceCount"]
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_count"]["defaultValue"] == 1
    for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest"):
        assert resources[key]
    train = k8s["exec-train"]
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    selector = train["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"]
    assert selector == "pipelinechannel--gpu-node-selector-Output"
    gpu_type = spec["root"]["inputDefinitions"]["parameters"]["gpu_type"]
    assert gpu_type["defaultValue"] == "nvidia-l4"
    selector_task = dag_tasks(spec)["gpu-node-selector"]
    assert selector_task["inputs"]["parameters"]["gpu_type"] == {
        "componentInputParameter": "gpu_type"
    }
    # Only training asks for a GPU.
    for name, executor in spec["deploymentSpec"]["executors"].items():
        if name != "exec-train" and "container" in executor:
            assert "accelerator" not in executor["container"].get("resources", {}), name
            assert "tolerations" not in k8s.get(name, {}), name


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


def test_loop_over_both_variants_and_promote_only_when_blessed(
    compiled: tuple[dict, dict],
) -> None:
    spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["variants"]["defaultValue"] == EXPECTED_VARIANTS
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--variants"
    loop_tasks = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(loop_tasks) == {"train", "evaluate"}

    tasks = dag_tasks(spec)
    condition = spec["root"]["dag"]["tasks"]["condition-2"]
    assert "compare-Output" in condition["triggerPolicy"]["condition"]
    assert condition["triggerPolicy"]["condition"].endswith("== true")
    inside = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inside) == {"promote"}
    assert tasks["promote"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["compare"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["train"]["cachingOptions"]["enableCache"] is True
    # The gate comes first: prepare (and so everything after it) waits for validate.
    assert "validate" in tasks["prepare"]["dependentTasks"]
    for name in ("mlflow_tracking_uri", "registered_model", "min_macro_auroc", "data_uri"):
        assert name in params
    assert params["mlflow_tracking_uri"]["defaultValue"] == (
        "http://mlflow.mlflow.svc.cluster.local:5000"
    )


def test_compile_flags_set_images_and_the_gcs_key_secret(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    code = main(
        [
            "pipeline",
            "compile",
            "--out",
            str(out),
            "--image",
            "registry.example/danq-gpu:1",
            "--cpu-image",
            "registry.example/danq-cpu:1",
            "--gcs-key-secret",
            "danq-gcs-key",
            "--pipeline-root",
            "gs://bucket/kfp",
        ]
    )
    assert code == 0
    spec, k8s = documents(out)
    images = {
        n: e["container"]["image"]
        for n, e in spec["deploymentSpec"]["executors"].items()
        if "container" in e
    }
    assert images.pop("exec-train") == "registry.example/danq-gpu:1"
    assert set(images.values()) == {"registry.example/danq-cpu:1"}
    assert spec["defaultPipelineRoot"] == "gs://bucket/kfp"
    for name in images:
        (volume,) = k8s[name]["secretAsVolume"]
        assert volume["mountPath"] == "/var/secrets/google"
        env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
        assert {
            "name": "GOOGLE_APPLICATION_CREDENTIALS",
            "value": "/var/secrets/google/key.json",
        } in env


def test_run_and_upload_need_an_endpoint(capsys, monkeypatch) -> None:
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["pipeline", "upload"]) == 2
    assert "no KFP endpoint" in capsys.readouterr().err
    # Arguments are checked against the compiled pipeline before anything is contacted.
    assert main(["pipeline", "run", "--data-uri", "gs://b/d", "--arg", "epochs=3"]) == 2
    assert "no parameter epochs" in capsys.readouterr().err
    assert main(["pipeline", "run", "--arg", "max_epochs=3"]) == 2
    assert "required parameter(s) not given: data_uri" in capsys.readouterr().err
    assert parse_arguments(["max_epochs=3", "variants=[baseline]", "gpu_type=nvidia-l4"]) == {
        "max_epochs": 3,
        "variants": ["baseline"],
        "gpu_type": "nvidia-l4",
    }
    with pytest.raises(ConfigError, match="expected name=value"):
        parse_arguments(["max_epochs"])
    with pytest.raises(ConfigError, match="no parameter epochs"):
        check_arguments(compiled_path(), {"data_uri": "gs://b/d", "epochs": 3})
    check_arguments(compiled_path(), {"data_uri": "gs://b/d", "max_epochs": 3})


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
        from pipelines.danq_pipeline import danq_pipeline

        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "kfp"))
        danq_pipeline(
            data_uri=str(data),
            mlflow_tracking_uri=uri,
            registered_model="danq-pipeline-test",
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
    tiny_data: Path,
    workdir: Path,
    tracking_store: Callable[[Path], str],
    run_locally: Callable[[Path, Path, str], None],
) -> None:
    uri = tracking_store(workdir)
    run_locally(workdir, tiny_data, uri)
    client = tracking.client(uri)
    aliases = client.get_registered_model("danq-pipeline-test").aliases
    assert set(aliases) == {"champion"}
    champion = client.get_model_version("danq-pipeline-test", str(aliases["champion"]))
    assert champion.tags["danq.blessed"] == "true"
    runs = client.search_runs([client.get_experiment_by_name("danq").experiment_id])
    assert sorted(r.data.tags["danq.variant"] for r in runs) == EXPECTED_VARIANTS
    assert all("test_macro_auroc" in r.data.metrics for r in runs)


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
    assert not list(run_dir.rglob("model.keras"))

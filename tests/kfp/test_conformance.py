"""The conformance check: each rule broken by a tiny pipeline compiled with kfp, and a clean one.

Where the SDK cannot produce a defect (a producerTask naming no task, Collected artifacts into
a dsl.If), the compiled IR is edited the way the defect would read. No `from __future__ import
annotations`: kfp reads the components' annotations as types.
"""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl, kubernetes
from kfp.dsl import Dataset, Input, Output

from danq.errors import ConfigError
from danq.kfp import backend, conformance
from danq.kfp.backend import FEATURE_BY_KEY, KUBEFLOW_RELEASES, MIN_BACKEND_VERSION
from danq.kfp.conformance import Violation
from danq.kfp.tracking_uri import CLUSTER_TRACKING_URI

IMAGE = "python:3.11-slim"
Json = dict[str, Any]


@dsl.component(base_image=IMAGE)
def make(item: str, out: Output[Dataset]) -> str:
    with open(out.path, "w") as handle:
        handle.write(item)
    return item


@dsl.component(base_image=IMAGE)
def use_list(items: Input[list[Dataset]]) -> bool:
    return len(items) > 0


@dsl.component(base_image=IMAGE)
def use_values(values: list) -> bool:
    return len(values) > 0


@dsl.component(base_image=IMAGE)
def use_one(data: Input[Dataset]) -> bool:
    return bool(data.path)


@dsl.component(base_image=IMAGE)
def flag() -> bool:
    return True


@dsl.component(base_image=IMAGE)
def track(mlflow_tracking_uri: str) -> str:
    return mlflow_tracking_uri


def compile_yaml(tmp_path: Path, pipeline_func: Any) -> Path:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def load(path: Path) -> tuple[Json, Json | None]:
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[0], documents[1] if len(documents) > 1 else None


def found(violations: list[Violation], rule: str | None = None) -> set[tuple[str, str]]:
    return {(v.rule, v.task) for v in violations if rule is None or v.rule == rule}


def key_of(dag: Json, predicate: Callable[[Json], bool]) -> str:
    """The one task key of a DAG whose task matches predicate."""
    (key,) = [k for k, task in dag["tasks"].items() if predicate(task)]
    return key


def is_loop(task: Json) -> bool:
    return "parameterIterator" in task


@dsl.pipeline(name="clean")
def clean_pipeline() -> None:
    ok = flag().set_retry(2)
    data = dsl.importer(artifact_uri="gs://bucket/data", artifact_class=Dataset)
    with dsl.ParallelFor(["a", "b"]) as item:
        made = make(item=item)
    use_list(items=dsl.Collected(made.outputs["out"]))
    with dsl.If(ok.output == True):  # noqa: E712 (a KFP condition, not a Python comparison)
        use_one(data=data.output)
        # Collected parameters reach an If group whole: not a violation.
        use_values(values=dsl.Collected(made.outputs["Output"]))
    secret = use_one(data=data.output)
    kubernetes.use_secret_as_env(
        secret, secret_name="creds", secret_key_to_env={"user": "USER"}, optional=True
    )


def test_a_clean_pipeline_conforms_to_the_minimum_backend(tmp_path: Path) -> None:
    violations = conformance.check_file(compile_yaml(tmp_path, clean_pipeline))
    assert violations == []


@pytest.mark.parametrize(
    "edit, task",
    [
        ("input", "use-list"),
        ("dependency", "use-list"),
        ("output", "loop"),
        ("condition", "condition"),
    ],
)
def test_producer_task_must_name_a_task_key_of_its_dag(
    tmp_path: Path, edit: str, task: str
) -> None:
    spec, platform = load(compile_yaml(tmp_path, clean_pipeline))
    root = spec["root"]["dag"]
    loop_name = root["tasks"][key_of(root, is_loop)]["componentRef"]["name"]
    loop = spec["components"][loop_name]
    condition = key_of(root, lambda t: "triggerPolicy" in t)
    consumer = root["tasks"]["use-list"]
    if edit == "input":
        consumer["inputs"]["artifacts"]["items"]["taskOutputArtifact"]["producerTask"] = "gone"
    elif edit == "dependency":
        consumer["dependentTasks"].append("gone")
    elif edit == "output":
        selector = next(iter(loop["dag"]["outputs"]["artifacts"].values()))
        selector["artifactSelectors"][0]["producerSubtask"] = "gone"
    else:
        policy = root["tasks"][condition]["triggerPolicy"]
        policy["condition"] = "inputs.parameter_values['pipelinechannel--gone'] == true"

    violations = conformance.check_documents(spec, platform)

    expected = {"use-list": "use-list", "loop": loop_name, "condition": condition}[task]
    assert found(violations) == {(conformance.PRODUCER_TASK, expected)}
    assert "gone" in violations[0].message


def test_importer_with_a_display_name_is_reported(tmp_path: Path) -> None:
    @dsl.pipeline(name="importer-name")
    def pipeline() -> None:
        data = dsl.importer(artifact_uri="gs://bucket/data", artifact_class=Dataset)
        data.set_display_name("import data")
        use_one(data=data.output)

    violations = conformance.check_file(compile_yaml(tmp_path, pipeline))

    assert found(violations) == {(conformance.DISPLAY_NAME, "importer")}
    assert "#11173" in violations[0].message
    assert "import data" in violations[0].message


@dsl.pipeline(name="loop-name")
def named_loop_pipeline() -> None:
    with dsl.ParallelFor(["a", "b"], name="variants") as item:
        made = make(item=item)
    use_list(items=dsl.Collected(made.outputs["out"]))


def test_named_parallel_for_is_reported_below_the_backend_that_fixed_it(
    tmp_path: Path,
) -> None:
    path = compile_yaml(tmp_path, named_loop_pipeline)
    spec, _ = load(path)
    loop = key_of(spec["root"]["dag"], is_loop)

    violations = conformance.check_file(path, "2.15.0")

    assert found(violations) == {(conformance.DISPLAY_NAME, loop)}
    assert "#13239" in violations[0].message
    assert conformance.check_file(path, "2.16.0") == []


@dsl.pipeline(name="collected-into-if")
def collected_beside_if_pipeline() -> None:
    ok = flag()
    with dsl.ParallelFor(["a", "b"]) as item:
        made = make(item=item)
    use_list(items=dsl.Collected(made.outputs["out"]))
    with dsl.If(ok.output == True):  # noqa: E712
        flag()


def test_the_sdk_refuses_collected_artifacts_into_an_if() -> None:
    """kubeflow/pipelines#9808: when a later kfp builds this pipeline, test its compiled YAML
    instead of the edited IR below."""
    with pytest.raises(TypeError):

        @dsl.pipeline(name="sdk-refuses")
        def pipeline() -> None:
            ok = flag()
            with dsl.ParallelFor(["a", "b"]) as item:
                made = make(item=item)
            with dsl.If(ok.output == True):  # noqa: E712
                use_list(items=dsl.Collected(made.outputs["out"]))


def test_collected_artifacts_into_an_if_group_are_reported(tmp_path: Path) -> None:
    spec, platform = load(compile_yaml(tmp_path, collected_beside_if_pipeline))
    root = spec["root"]["dag"]
    loop = key_of(root, is_loop)
    condition = key_of(root, lambda t: "triggerPolicy" in t)
    output_key = root["tasks"]["use-list"]["inputs"]["artifacts"]["items"]
    assert conformance.check_documents(spec, platform) == []

    # What the SDK would write for dsl.Collected(made.outputs["out"]) used inside the If.
    group = root["tasks"][condition]
    group["inputs"]["artifacts"] = {"pipelinechannel--collected": copy.deepcopy(output_key)}
    group["dependentTasks"].append(loop)
    violations = conformance.check_documents(spec, platform)

    assert found(violations) == {(conformance.COLLECTED_INTO_IF, condition)}
    assert "If group" in violations[0].message
    assert loop in violations[0].message


def test_collected_artifacts_into_a_sub_pipeline_are_reported(tmp_path: Path) -> None:
    @dsl.pipeline
    def inner(items: Input[list[Dataset]]) -> bool:
        return use_list(items=items).output

    @dsl.pipeline(name="collected-into-sub-pipeline")
    def pipeline() -> None:
        with dsl.ParallelFor(["a", "b"]) as item:
            made = make(item=item)
        inner(items=dsl.Collected(made.outputs["out"]))

    violations = conformance.check_file(compile_yaml(tmp_path, pipeline))

    assert found(violations) == {(conformance.COLLECTED_INTO_IF, "inner")}


def optional_secret(task: Any) -> None:
    kubernetes.use_secret_as_env(task, secret_name="s", secret_key_to_env={"k": "K"}, optional=True)


def node_selector_from_parameter(task: Any) -> None:
    kubernetes.add_node_selector_json(task, {"cloud.google.com/gke-nodepool": "gpu"})


def empty_dir(task: Any) -> None:
    kubernetes.empty_dir_mount(task, volume_name="scratch", mount_path="/scratch")


def security_context(task: Any) -> None:
    kubernetes.set_security_context(task, run_as_user=1000)


@pytest.mark.parametrize(
    "configure, feature",
    [
        (optional_secret, backend.OPTIONAL_ENV_SOURCE),
        (node_selector_from_parameter, backend.NODE_SELECTOR_JSON),
        (empty_dir, backend.EMPTY_DIR),
        (security_context, backend.SECURITY_CONTEXT),
    ],
)
def test_platform_feature_newer_than_the_minimum_backend_is_reported(
    tmp_path: Path, configure: Callable[[Any], None], feature: str
) -> None:
    @dsl.pipeline(name="feature")
    def pipeline() -> None:
        configure(flag())

    path = compile_yaml(tmp_path, pipeline)
    needed = FEATURE_BY_KEY[feature]
    below = backend.parse_version(needed.min_version)
    older = f"{below[0]}.{below[1] - 1}.0"

    violations = conformance.check_file(path, older)

    assert found(violations) == {(conformance.BACKEND_VERSION, "flag")}
    assert needed.title in violations[0].message
    assert needed.min_version in violations[0].message
    assert needed.reference in violations[0].message
    assert conformance.check_file(path, needed.min_version) == []


def test_a_constant_secret_name_does_not_need_name_parameters(tmp_path: Path) -> None:
    """kfp-kubernetes writes a constant name to both secretName and secretNameParameter; only
    a name from a pipeline parameter needs a backend >= 2.5."""

    @dsl.pipeline(name="secret-names")
    def pipeline(name: str = "creds") -> None:
        kubernetes.use_secret_as_env(flag(), secret_name="fixed", secret_key_to_env={"k": "K"})
        kubernetes.use_secret_as_env(flag(), secret_name=name, secret_key_to_env={"k": "K"})

    violations = conformance.check_file(compile_yaml(tmp_path, pipeline), "2.4.1")

    assert found(violations) == {(conformance.BACKEND_VERSION, "flag-2")}
    assert FEATURE_BY_KEY[backend.SECRET_NAME_PARAMETER].title in violations[0].message


def test_image_collected_and_retry_features_are_versioned(tmp_path: Path) -> None:
    @dsl.pipeline(name="ir-features")
    def pipeline(image: str = IMAGE) -> None:
        ok = flag().set_retry(1)
        flag().set_container_image(image)
        with dsl.ParallelFor(["a"]) as item:
            made = make(item=item)
        with dsl.If(ok.output == True):  # noqa: E712
            flag().set_retry(1)
        use_list(items=dsl.Collected(made.outputs["out"]))

    path = compile_yaml(tmp_path, pipeline)
    spec, _ = load(path)
    condition = spec["root"]["dag"]["tasks"][
        key_of(spec["root"]["dag"], lambda t: "triggerPolicy" in t)
    ]["componentRef"]["name"]

    def titles(version: str) -> set[tuple[str, str]]:
        return {
            (v.task, v.message.split(", honoured")[0])
            for v in conformance.check_file(path, version)
        }

    def uses(key: str) -> str:
        return f"uses {FEATURE_BY_KEY[key].title}"

    assert titles("2.4.0") == {
        ("flag", uses(backend.RETRY_ROOT)),
        (f"{condition}/flag-3", uses(backend.RETRY_NESTED)),
        ("use-list", uses(backend.COLLECTED)),
    }
    assert titles("2.5.0") == {
        (f"{condition}/flag-3", uses(backend.RETRY_NESTED)),
        ("use-list", uses(backend.COLLECTED)),
    }
    assert ("flag-2", uses(backend.IMAGE_PARAMETER)) in titles("2.3.0")
    assert titles("2.14.0") == set()


def test_retry_inside_a_parallel_for_is_reported(tmp_path: Path) -> None:
    @dsl.pipeline(name="retry-in-loop")
    def pipeline() -> None:
        with dsl.ParallelFor(["a", "b"]) as item:
            make(item=item).set_retry(3)

    path = compile_yaml(tmp_path, pipeline)
    spec, _ = load(path)
    body = spec["root"]["dag"]["tasks"][key_of(spec["root"]["dag"], is_loop)]["componentRef"]

    violations = conformance.check_file(path, "2.4.1")

    assert found(violations) == {(conformance.RETRY_IN_LOOP, f"{body['name']}/make")}
    assert "#13897" in violations[0].message


def test_parallel_for_over_artifacts_is_reported(tmp_path: Path) -> None:
    @dsl.pipeline(name="artifact-iterator")
    def pipeline(items: Input[list[Dataset]]) -> None:
        with dsl.ParallelFor(items) as item:
            use_one(data=item)

    path = compile_yaml(tmp_path, pipeline)
    spec, _ = load(path)
    loop = key_of(spec["root"]["dag"], lambda t: "artifactIterator" in t)

    violations = conformance.check_file(path)

    assert found(violations) == {(conformance.ARTIFACT_ITERATOR, loop)}


def test_violation_reads_rule_task_message() -> None:
    violation = Violation("display-name", "importer", "drop the display name")
    assert str(violation) == "[display-name] importer: drop the display name"


@pytest.mark.parametrize(
    "text",
    ["", "key: value\n", "a: 1\n---\nb: 2\n---\nc: 3\n", "root: [unclosed\n"],
)
def test_a_file_that_is_not_a_compiled_pipeline_is_a_config_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="params.yaml"):
        conformance.check_file(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent.yaml"):
        conformance.check_file(tmp_path / "absent.yaml")


def test_an_unreadable_minimum_backend_is_a_config_error(tmp_path: Path) -> None:
    path = compile_yaml(tmp_path, clean_pipeline)
    with pytest.raises(ConfigError, match="2.x"):
        conformance.check_file(path, "2.x")


def test_backend_versions_parse_and_the_minimum_is_what_kubeflow_1_11_ships() -> None:
    assert backend.parse_version("2.15.0") == (2, 15, 0)
    assert backend.parse_version("v2.4") == (2, 4, 0)
    assert backend.parse_version("2.4.1") < backend.parse_version("2.14.0")
    assert KUBEFLOW_RELEASES["1.11.0"] == MIN_BACKEND_VERSION
    assert backend.describe_backend("2.5.0") == "KFP backend 2.5.0 (Kubeflow 1.10.1, 1.10.2)"


# --- the project's own rules ----------------------------------------------------------------


def test_a_tracking_uri_that_a_run_can_set_or_that_is_no_cluster_uri_is_reported(
    tmp_path: Path,
) -> None:
    """The MLflow steps send the secret's login to their tracking URI."""

    @dsl.pipeline(name="tracking-uri")
    def pipeline(mlflow_tracking_uri: str = CLUSTER_TRACKING_URI) -> None:
        track(mlflow_tracking_uri=mlflow_tracking_uri)  # a run parameter
        track(mlflow_tracking_uri=CLUSTER_TRACKING_URI)  # compiled in: fine
        track(mlflow_tracking_uri="http://pipeline:s3cret@mlflow.example:5000")
        track(mlflow_tracking_uri="sqlite:///mlflow.db")
        track(mlflow_tracking_uri=track(mlflow_tracking_uri=CLUSTER_TRACKING_URI).output)

    violations = conformance.check_file(compile_yaml(tmp_path, pipeline))

    assert found(violations) == {
        (conformance.TRACKING_URI, task)
        for task in ("root", "track", "track-3", "track-4", "track-6")
    }
    by_task = {v.task: v.message for v in violations}
    assert "pipeline parameter 'mlflow_tracking_uri'" in by_task["root"]
    assert "the input 'mlflow_tracking_uri' of its DAG" in by_task["track"]
    assert "http://pipeline:***@mlflow.example:5000: it holds credentials" in by_task["track-3"]
    assert "s3cret" not in str(violations)
    assert "sqlite:///mlflow.db: not an http or https URI" in by_task["track-4"]
    assert "the output 'Output' of 'track-5'" in by_task["track-6"]


def test_a_non_root_step_writing_a_fresh_volume_is_reported(tmp_path: Path) -> None:
    """No backend sets fsGroup, so a new volume's root-owned file system stays read-only to a
    non-root step; an emptyDir is writable."""

    def ephemeral(task: Any) -> Any:
        return kubernetes.add_ephemeral_volume(
            task,
            volume_name="staging",
            mount_path="/gcs",
            access_modes=["ReadWriteOnce"],
            size="1Gi",
        )

    @dsl.pipeline(name="non-root-volume")
    def pipeline() -> None:
        ephemeral(kubernetes.set_security_context(flag(), run_as_non_root=True))
        ephemeral(kubernetes.set_security_context(flag(), run_as_user=1000))
        ephemeral(kubernetes.set_security_context(flag(), run_as_user=0))
        ephemeral(flag())  # runs as the image's user, which the YAML does not tell
        empty_dir(kubernetes.set_security_context(flag(), run_as_user=1000))

    violations = conformance.check_file(compile_yaml(tmp_path, pipeline), "2.16.0")

    assert found(violations) == {
        (conformance.NON_ROOT_VOLUME, "flag"),
        (conformance.NON_ROOT_VOLUME, "flag-2"),
    }
    assert "'staging' at /gcs" in violations[0].message
    assert "fsGroup" in violations[0].message and "empty_dir_mount" in violations[0].message


def test_a_pipeline_is_checked_against_the_backend_its_description_declares(
    tmp_path: Path,
) -> None:
    @dsl.pipeline(name="declared", description=backend.requirement("2.16.0"))
    def declared() -> None:
        security_context(flag())

    @dsl.pipeline(name="undeclared", description="Says nothing about the backend.")
    def undeclared() -> None:
        security_context(flag())

    declares, silent = compile_yaml(tmp_path, declared), tmp_path / "silent.yaml"
    compiler.Compiler().compile(undeclared, str(silent))

    assert conformance.required_backend(load(declares)[0]) == "2.16.0"
    assert conformance.check_file(declares) == []
    assert found(conformance.check_file(declares, MIN_BACKEND_VERSION)) == {
        (conformance.BACKEND_VERSION, "flag")
    }
    assert conformance.required_backend(load(silent)[0]) == MIN_BACKEND_VERSION
    assert found(conformance.check_file(silent)) == {(conformance.BACKEND_VERSION, "flag")}
    assert backend.declared_requirement("Needs a KFP backend >= 2.5.0. More.") == "2.5.0"
    assert backend.declared_requirement("Needs KFP 2.5.0.") is None

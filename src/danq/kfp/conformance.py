"""The KFP backend's rules, checked on a compiled pipeline YAML.

The kfp local runner accepts pipelines that fail, or silently misbehave, on a real backend: it
ignores platform settings, does not use ML Metadata and resolves inputs its own way. This
module reads the compiled IR the way the backend's Argo compiler and driver do
(kubeflow/pipelines backend/src/v2, tags 2.4.1-2.17.0) and reports what would break there.

A compiled YAML holds two documents: the PipelineSpec, then the platform spec whose
`platforms.kubernetes.deploymentSpec.executors` carries kfp-kubernetes settings per executor.
Tasks are named by their key, prefixed with the component of the DAG they are in when that is
not the root ("comp-for-loop-1/train").

A pipeline is checked against the backend its description declares (danq.kfp.backend
.requirement), else the project's minimum. Two rules are the project's own rather than the
backend's: the MLflow tracking URI must be compiled in (danq.kfp.tracking_uri), and a step
that runs as non-root must not write to a freshly provisioned volume (danq.kfp.backend's notes
on pod security).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from danq.errors import ConfigError
from danq.kfp import backend
from danq.kfp.backend import FEATURE_BY_KEY, MIN_BACKEND_VERSION
from danq.kfp.tracking_uri import (
    TRACKING_URI_INPUT,
    cluster_uri_problem,
    redacted,
    tracking_uri_inputs,
)

Json = dict[str, Any]

PRODUCER_TASK = "producer-task"
DISPLAY_NAME = "display-name"
COLLECTED_INTO_IF = "collected-into-if"
BACKEND_VERSION = "backend-version"
RETRY_IN_LOOP = "retry-in-loop"
ARTIFACT_ITERATOR = "artifact-iterator"
TRACKING_URI = "tracking-uri"
NON_ROOT_VOLUME = "non-root-volume"

ROOT = "root"
_PLACEHOLDER = "{{$"
# The operands of a triggerPolicy.condition: inputs.parameter_values['x'], inputs.artifacts['x'].
_CONDITION_INPUT = re.compile(r"inputs\.(parameter_values|artifacts)\[\s*['\"]([^'\"]+)['\"]")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, which task (or DAG), and what the backend would do."""

    rule: str
    task: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.task}: {self.message}"


@dataclass(frozen=True)
class _Task:
    dag: str
    key: str
    spec: Json

    @property
    def label(self) -> str:
        return self.key if self.dag == ROOT else f"{self.dag}/{self.key}"


@dataclass(frozen=True)
class _Pipeline:
    """The parts of the IR the rules read, indexed once."""

    components: Json
    executors: Json
    platform: Json
    dags: dict[str, Json]
    inputs: dict[str, Json]

    def tasks(self) -> Iterator[_Task]:
        for dag, spec in self.dags.items():
            for key, task in _mapping(spec.get("tasks")).items():
                yield _Task(dag, key, _mapping(task))

    def component(self, task: Json) -> Json:
        return _mapping(self.components.get(_component_name(task)))

    def executor_label(self, task: Json) -> str:
        return str(self.component(task).get("executorLabel", ""))


def _mapping(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _component_name(task: Json) -> str:
    return str(_mapping(task.get("componentRef")).get("name", ""))


def _is_iterator(task: Json) -> bool:
    return "parameterIterator" in task or "artifactIterator" in task


def _display_name(task: Json) -> str | None:
    name = _mapping(task.get("taskInfo")).get("name")
    return name if isinstance(name, str) else None


def _index(spec: Json, platform: Json | None) -> _Pipeline:
    components = _mapping(spec.get("components"))
    dags = {ROOT: _mapping(_mapping(spec.get("root")).get("dag"))}
    inputs = {ROOT: _mapping(_mapping(spec.get("root")).get("inputDefinitions"))}
    for name, component in components.items():
        if isinstance(component, dict) and "dag" in component:
            dags[name] = _mapping(component["dag"])
            inputs[name] = _mapping(component.get("inputDefinitions"))
    kubernetes = _mapping(_mapping(_mapping(platform).get("platforms")).get("kubernetes"))
    return _Pipeline(
        components=components,
        executors=_mapping(_mapping(spec.get("deploymentSpec")).get("executors")),
        platform=_mapping(_mapping(kubernetes.get("deploymentSpec")).get("executors")),
        dags=dags,
        inputs=inputs,
    )


def _loop_components(pipeline: _Pipeline) -> set[str]:
    """Components that run inside a ParallelFor: iterator bodies and every DAG nested in them."""
    inside: set[str] = set()
    pending = [_component_name(t.spec) for t in pipeline.tasks() if _is_iterator(t.spec)]
    while pending:
        name = pending.pop()
        if name in inside:
            continue
        inside.add(name)
        for task in _mapping(pipeline.dags.get(name, {}).get("tasks")).values():
            child = _component_name(_mapping(task))
            if child in pipeline.dags:
                pending.append(child)
    return inside


def _task_references(task: Json) -> Iterator[tuple[str, str]]:
    """(what, producer key) for each producerTask and dependentTask of a task."""
    inputs = _mapping(task.get("inputs"))
    for name, spec in _mapping(inputs.get("artifacts")).items():
        producer = _mapping(_mapping(spec).get("taskOutputArtifact")).get("producerTask")
        if producer is not None:
            yield f"input artifact '{name}' takes producerTask", str(producer)
    for name, spec in _mapping(inputs.get("parameters")).items():
        producer = _mapping(_mapping(spec).get("taskOutputParameter")).get("producerTask")
        if producer is not None:
            yield f"input parameter '{name}' takes producerTask", str(producer)
    for dependency in _items(task.get("dependentTasks")):
        yield "dependentTasks names", str(dependency)


def _output_references(dag: Json) -> Iterator[tuple[str, str]]:
    """(what, producer key) for each producerSubtask of a DAG's outputs."""
    outputs = _mapping(dag.get("outputs"))
    for name, spec in _mapping(outputs.get("artifacts")).items():
        for selector in _items(_mapping(spec).get("artifactSelectors")):
            yield (
                f"output artifact '{name}' takes producerSubtask",
                str(_mapping(selector).get("producerSubtask")),
            )
    for name, spec in _mapping(outputs.get("parameters")).items():
        spec = _mapping(spec)
        selectors = [_mapping(spec.get("valueFromParameter"))]
        selectors += _items(_mapping(spec.get("valueFromOneof")).get("parameterSelectors"))
        for selector in selectors:
            if "producerSubtask" in _mapping(selector):
                yield (
                    f"output parameter '{name}' takes producerSubtask",
                    str(selector["producerSubtask"]),
                )


def _condition_references(task: Json) -> Iterator[str]:
    """Messages for each input a task's triggerPolicy.condition reads but the task lacks."""
    condition = _mapping(task.get("triggerPolicy")).get("condition")
    if not isinstance(condition, str):
        return
    inputs = _mapping(task.get("inputs"))
    for kind, name in _CONDITION_INPUT.findall(condition):
        section = "parameters" if kind == "parameter_values" else "artifacts"
        if name not in _mapping(inputs.get(section)):
            yield f"triggerPolicy.condition reads inputs.{kind}['{name}'], not an input of the task"


def _check_producers(pipeline: _Pipeline) -> list[Violation]:
    """Rule producer-task: the backend resolves an input by the producer's task key within the
    consumer's own DAG; a name that is not a key there fails the run ("cannot find producer
    task") once the consumer starts."""
    found = []
    for dag_name, dag in pipeline.dags.items():
        keys = set(_mapping(dag.get("tasks")))
        known = ", ".join(sorted(keys)) or "none"
        for key, task in _mapping(dag.get("tasks")).items():
            label = _Task(dag_name, key, {}).label
            for what, producer in _task_references(_mapping(task)):
                if producer not in keys:
                    message = f"{what} '{producer}', not a task key of its DAG ({known})"
                    found.append(Violation(PRODUCER_TASK, label, message))
            for message in _condition_references(_mapping(task)):
                found.append(Violation(PRODUCER_TASK, label, message))
        for what, producer in _output_references(dag):
            if producer not in keys:
                message = f"{what} '{producer}', not a task key of this DAG ({known})"
                found.append(Violation(PRODUCER_TASK, dag_name, message))
    return found


def _is_importer(pipeline: _Pipeline, task: Json) -> bool:
    return "importer" in _mapping(pipeline.executors.get(pipeline.executor_label(task)))


def _check_display_names(pipeline: _Pipeline, min_backend: str) -> list[Violation]:
    """Rule display-name: the backend records some executions under taskInfo.name while
    consumers look them up by task key, so a display name that differs breaks them."""
    loop_fix = FEATURE_BY_KEY[backend.ITERATOR_DISPLAY_NAME]
    found = []
    for task in pipeline.tasks():
        name = _display_name(task.spec)
        if name is None or name == task.key:
            continue
        if _is_importer(pipeline, task.spec):
            found.append(
                Violation(
                    DISPLAY_NAME,
                    task.label,
                    f"importer with display name {name!r}: the backend records an importer's "
                    "execution under taskInfo.name (backend/src/v2/component/"
                    "importer_launcher.go) but resolves consumers' producerTask by task key "
                    f'(driver/resolve.go), so every consumer fails with "cannot find producer '
                    f'task {task.key}" (kubeflow/pipelines#11173, open); drop the display name',
                )
            )
        elif _is_iterator(task.spec) and not loop_fix.supported_by(min_backend):
            found.append(
                Violation(
                    DISPLAY_NAME,
                    task.label,
                    f"ParallelFor with display name {name!r}: backends before "
                    f"{loop_fix.min_version} record the loop under taskInfo.name, so resolving "
                    f"its Collected outputs by key '{task.key}' fails (kubeflow/pipelines#13239, "
                    f"fixed by #12808 in {loop_fix.min_version}); drop the name=",
                )
            )
    return found


def _collected_source(pipeline: _Pipeline, dag: str, spec: Json) -> str | None:
    """What feeds an input artifact of a DAG task a list of artifacts, or None."""
    tasks = _mapping(pipeline.dags[dag].get("tasks"))
    output = _mapping(spec.get("taskOutputArtifact"))
    if output:
        producer = str(output.get("producerTask", ""))
        key = str(output.get("outputArtifactKey", ""))
        outputs = _mapping(
            pipeline.component(_mapping(tasks.get(producer))).get("outputDefinitions")
        )
        if _mapping(_mapping(outputs.get("artifacts")).get(key)).get("isArtifactList"):
            return f"the Collected output '{key}' of '{producer}'"
        return None
    parent_input = str(spec.get("componentInputArtifact", ""))
    definition = _mapping(_mapping(pipeline.inputs[dag].get("artifacts")).get(parent_input))
    if definition.get("isArtifactList"):
        return f"the artifact list input '{parent_input}' of its DAG"
    return None


def _group_kind(task: Json) -> str:
    if "triggerPolicy" in task:
        return "If group"
    return "ParallelFor" if _is_iterator(task) else "sub-pipeline"


def _check_collected_into_groups(pipeline: _Pipeline) -> list[Violation]:
    """Rule collected-into-if: a list of artifacts passed into a DAG task (an If group, a
    ParallelFor, a sub-pipeline) reaches the tasks inside as ONE artifact. The driver records
    the group's input artifacts as a list (metadata.GenerateExecutionConfig) but reads them
    back one per name (metadata/client.go GetInputArtifactsByExecutionID, 2.14.0-2.17.0).
    The kfp SDK itself cannot compile Collected artifacts into a dsl.If
    (kubeflow/pipelines#9808). Lists of parameters are passed whole and are not reported."""
    found = []
    for task in pipeline.tasks():
        # An artifact iterator's list is its items: rule artifact-iterator.
        if "dag" not in pipeline.component(task.spec) or "artifactIterator" in task.spec:
            continue
        group = _group_kind(task.spec)
        artifacts = _mapping(_mapping(task.spec.get("inputs")).get("artifacts"))
        for name, spec in artifacts.items():
            source = _collected_source(pipeline, task.dag, _mapping(spec))
            if source is not None:
                found.append(
                    Violation(
                        COLLECTED_INTO_IF,
                        task.label,
                        f"{group} input '{name}' receives {source}: the backend hands the "
                        "tasks inside only one of those artifacts (metadata/client.go "
                        "GetInputArtifactsByExecutionID; the SDK refuses this for dsl.If, "
                        "kubeflow/pipelines#9808); consume the list outside the group",
                    )
                )
    return found


def _has_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _PLACEHOLDER in value


def _names_from_parameter(entry: Json, name_field: str, parameter_field: str) -> bool:
    """True when a kfp-kubernetes name comes only from its *NameParameter: kfp-kubernetes
    writes a constant name to both fields, which backends before 2.5 still read."""
    parameter = _mapping(entry.get(parameter_field))
    if not parameter:
        return False
    constant = _mapping(parameter.get("runtimeValue")).get("constant")
    return not (entry.get(name_field) and constant == entry.get(name_field))


def _platform_features(config: Json) -> Iterator[str]:
    """Feature keys a kfp-kubernetes executor config uses."""
    if "nodeSelectorJson" in _mapping(config.get("nodeSelector")):
        yield backend.NODE_SELECTOR_JSON
    if any("tolerationJson" in _mapping(t) for t in _items(config.get("tolerations"))):
        yield backend.TOLERATION_JSON
    secrets = [*_items(config.get("secretAsEnv")), *_items(config.get("secretAsVolume"))]
    secrets += _items(config.get("imagePullSecret"))
    if any(
        _names_from_parameter(_mapping(s), "secretName", "secretNameParameter") for s in secrets
    ):
        yield backend.SECRET_NAME_PARAMETER
    maps = [*_items(config.get("configMapAsEnv")), *_items(config.get("configMapAsVolume"))]
    if any(
        _names_from_parameter(_mapping(m), "configMapName", "configMapNameParameter") for m in maps
    ):
        yield backend.CONFIG_MAP_NAME_PARAMETER
    envs = [*_items(config.get("secretAsEnv")), *_items(config.get("configMapAsEnv"))]
    if any(_mapping(e).get("optional") is True for e in envs):
        yield backend.OPTIONAL_ENV_SOURCE
    volumes = [*_items(config.get("secretAsVolume")), *_items(config.get("configMapAsVolume"))]
    if any(_mapping(v).get("optional") is True for v in volumes):
        yield backend.OPTIONAL_VOLUME_SOURCE
    for field, key in (
        ("genericEphemeralVolume", backend.EPHEMERAL_VOLUME),
        ("emptyDirMounts", backend.EMPTY_DIR),
        ("nodeAffinity", backend.NODE_AFFINITY),
        ("securityContext", backend.SECURITY_CONTEXT),
    ):
        if config.get(field):
            yield key


def _container_features(executor: Json) -> Iterator[str]:
    """Feature keys an executor's container uses: an image or resources from parameters."""
    container = _mapping(executor.get("container"))
    if _has_placeholder(container.get("image")):
        yield backend.IMAGE_PARAMETER
    resources = _mapping(container.get("resources"))
    values = [*resources.values(), *_mapping(resources.get("accelerator")).values()]
    if any(_has_placeholder(v) for v in values):
        yield backend.RESOURCE_PARAMETER


def _retry_feature(pipeline: _Pipeline, task: _Task, in_loop: set[str]) -> str | None:
    if "retryPolicy" not in task.spec or task.dag in in_loop:
        return None  # retries inside a ParallelFor are rule retry-in-loop
    if task.dag == ROOT and "dag" not in pipeline.component(task.spec):
        return backend.RETRY_ROOT
    return backend.RETRY_NESTED


def _collects(pipeline: _Pipeline, dag: str, references: Iterable[tuple[str, str]]) -> bool:
    tasks = _mapping(pipeline.dags[dag].get("tasks"))
    return any(
        what != "dependentTasks names" and _is_iterator(_mapping(tasks.get(producer)))
        for what, producer in references
    )


def _used_features(pipeline: _Pipeline) -> Iterator[tuple[str, str]]:
    """(feature key, task label) for every use of a feature in the backend table."""
    in_loop = _loop_components(pipeline)
    for task in pipeline.tasks():
        label = pipeline.executor_label(task.spec)
        for key in _container_features(_mapping(pipeline.executors.get(label))):
            yield key, task.label
        for key in _platform_features(_mapping(pipeline.platform.get(label))):
            yield key, task.label
        retry = _retry_feature(pipeline, task, in_loop)
        if retry is not None:
            yield retry, task.label
        if _collects(pipeline, task.dag, _task_references(task.spec)):
            yield backend.COLLECTED, task.label
    for dag, spec in pipeline.dags.items():
        if _collects(pipeline, dag, _output_references(spec)):
            yield backend.COLLECTED, dag


def _check_backend_version(pipeline: _Pipeline, min_backend: str) -> list[Violation]:
    """Rule backend-version: a feature newer than the declared minimum backend, which older
    backends drop silently or refuse."""
    found = []
    seen: set[tuple[str, str]] = set()
    for key, label in _used_features(pipeline):
        feature = FEATURE_BY_KEY[key]
        if (key, label) in seen or feature.supported_by(min_backend):
            continue
        seen.add((key, label))
        message = (
            f"uses {feature.title}, honoured from KFP backend {feature.min_version} "
            f"({feature.reference}, {feature.backend_file}); the declared minimum is "
            f"{backend.describe_backend(min_backend)}"
        )
        found.append(Violation(BACKEND_VERSION, label, message))
    return found


def _check_retry_in_loop(pipeline: _Pipeline) -> list[Violation]:
    """Rule retry-in-loop: the Argo compiler gives the retry policy of a task inside a
    ParallelFor no effect (kubeflow/pipelines#12389, #13897, open through 2.17.0)."""
    in_loop = _loop_components(pipeline)
    return [
        Violation(
            RETRY_IN_LOOP,
            task.label,
            "retry policy inside a ParallelFor: ignored by every KFP backend up to 2.17.0 "
            "(kubeflow/pipelines#12389, #13897); a failed iteration is not retried. Run the "
            "task outside the loop, or retry inside the component",
        )
        for task in pipeline.tasks()
        if task.dag in in_loop and "retryPolicy" in task.spec
    ]


def _check_artifact_iterators(pipeline: _Pipeline) -> list[Violation]:
    """Rule artifact-iterator: no backend release implements ParallelFor over a list of
    artifacts (driver/dag.go: "ArtifactIterator is not implemented", 2.4.1-2.17.0)."""
    return [
        Violation(
            ARTIFACT_ITERATOR,
            task.label,
            "ParallelFor over a list of artifacts: the backend driver fails with "
            '"ArtifactIterator is not implemented" (backend/src/v2/driver/dag.go, up to '
            "2.17.0); iterate over parameters instead",
        )
        for task in pipeline.tasks()
        if "artifactIterator" in task.spec
    ]


def _tracking_uri_source(parameter: Json) -> str:
    """Where a task input comes from, in words, when it is not a constant."""
    if "componentInputParameter" in parameter:
        return f"the input '{parameter['componentInputParameter']}' of its DAG"
    output = _mapping(parameter.get("taskOutputParameter"))
    if output:
        return f"the output '{output.get('outputParameterKey')}' of '{output.get('producerTask')}'"
    return "no constant"


def _check_tracking_uri(spec: Json) -> list[Violation]:
    """Rule tracking-uri: the MLflow steps send the login they get from the
    mlflow-credentials secret to their tracking URI, so the URI must be a constant compiled
    into each task (an http(s) URI without credentials), never something a run can set."""
    fix = "compile the URI in: `danq pipeline compile --tracking-uri URI`"
    found = []
    parameters = _mapping(
        _mapping(_mapping(spec.get("root")).get("inputDefinitions")).get("parameters")
    )
    if TRACKING_URI_INPUT in parameters:
        found.append(
            Violation(
                TRACKING_URI,
                ROOT,
                f"pipeline parameter '{TRACKING_URI_INPUT}': a run could send the MLflow login "
                f"of the mlflow-credentials secret to any host; {fix}",
            )
        )
    for label, given in tracking_uri_inputs(spec):
        parameter = _mapping(given)
        constant = _mapping(parameter.get("runtimeValue")).get("constant")
        if not isinstance(constant, str):
            message = (
                f"takes '{TRACKING_URI_INPUT}' from {_tracking_uri_source(parameter)}, which a "
                f"run can set, so a run could send the MLflow login to any host; {fix}"
            )
        else:
            problem = cluster_uri_problem(constant)
            if problem is None:
                continue
            message = f"tracking URI {redacted(constant)}: {problem}"
        found.append(Violation(TRACKING_URI, label, message))
    return found


def _runs_as_non_root(config: Json) -> bool:
    context = _mapping(config.get("securityContext"))
    # protobuf's JSON writes int64 as a string ('1000').
    user = str(context.get("runAsUser", ""))
    return context.get("runAsNonRoot") is True or (user.isdigit() and int(user) > 0)


def _check_non_root_volumes(pipeline: _Pipeline) -> list[Violation]:
    """Rule non-root-volume: a generic ephemeral volume is freshly provisioned, so its root
    directory belongs to root (mode 0755 on ext4); kubelet hands a volume to another user only
    through the pod's fsGroup, which no KFP backend sets on step pods and no pipeline can."""
    found = []
    for task in pipeline.tasks():
        config = _mapping(pipeline.platform.get(pipeline.executor_label(task.spec)))
        if not _runs_as_non_root(config):
            continue
        for volume in _items(config.get("genericEphemeralVolume")):
            found.append(
                Violation(
                    NON_ROOT_VOLUME,
                    task.label,
                    f"runs as non-root but writes to the generic ephemeral volume "
                    f"'{_mapping(volume).get('volumeName')}' at "
                    f"{_mapping(volume).get('mountPath')}, whose fresh file system is owned by "
                    "root: only the pod's fsGroup would make it writable, and no KFP backend "
                    "up to 2.17.0 sets one on step pods (backend/src/v2/compiler/argocompiler/"
                    "security_context.go sets seccompProfile only) nor lets a pipeline set it "
                    "(kfp.kubernetes.set_security_context has no fs_group); mount an emptyDir "
                    "(kfp.kubernetes.empty_dir_mount) instead",
                )
            )
    return found


def required_backend(spec: Json) -> str:
    """The backend a compiled pipeline declares in its description, else the project's
    minimum (danq.kfp.backend.MIN_BACKEND_VERSION)."""
    description = _mapping(spec.get("pipelineInfo")).get("description")
    declared = backend.declared_requirement(description) if isinstance(description, str) else None
    return declared or MIN_BACKEND_VERSION


def check_documents(
    spec: Json, platform: Json | None, min_backend: str | None = None
) -> list[Violation]:
    """Every violation of the rules in a compiled pipeline: spec is the first YAML document
    (PipelineSpec), platform the second (None when the YAML has none). An empty list means the
    pipeline conforms to KFP backend >= min_backend (default: `required_backend`)."""
    min_backend = min_backend or required_backend(spec)
    backend.parse_version(min_backend)
    pipeline = _index(spec, platform)
    return [
        *_check_producers(pipeline),
        *_check_display_names(pipeline, min_backend),
        *_check_collected_into_groups(pipeline),
        *_check_backend_version(pipeline, min_backend),
        *_check_retry_in_loop(pipeline),
        *_check_artifact_iterators(pipeline),
        *_check_tracking_uri(spec),
        *_check_non_root_volumes(pipeline),
    ]


def load_documents(path: str | os.PathLike[str]) -> tuple[Json, Json | None]:
    """The PipelineSpec and platform spec of a compiled pipeline YAML; ConfigError naming the
    file when it is not one."""
    path = Path(path)
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the compiled pipeline: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not YAML: {error}") from error
    if not documents or len(documents) > 2 or not all(isinstance(d, dict) for d in documents):
        raise ConfigError(
            f"{path}: not a compiled KFP pipeline (expected a PipelineSpec document and an "
            f"optional platform document, found {len(documents)} document(s))"
        )
    spec = documents[0]
    if "dag" not in _mapping(spec.get("root")) or "pipelineInfo" not in spec:
        raise ConfigError(f"{path}: not a compiled KFP pipeline (no root.dag or pipelineInfo)")
    platform = documents[1] if len(documents) == 2 else None
    if platform is not None and "platforms" not in platform:
        raise ConfigError(f"{path}: its second document is not a KFP platform spec")
    return spec, platform


def check_file(path: str | os.PathLike[str], min_backend: str | None = None) -> list[Violation]:
    """check_documents on a compiled pipeline YAML file."""
    spec, platform = load_documents(path)
    return check_documents(spec, platform, min_backend)

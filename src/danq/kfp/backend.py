"""The Kubeflow Pipelines backend the project targets, and what each backend release honours.

The kfp local runner ignores platform settings and does not use ML Metadata, so it accepts
pipelines that a real backend runs wrongly. Older backends mostly drop IR fields they do not
know without a word (since 2.4.1 the driver ignores unknown fields; 2.4.0 fails on them), so
the minimum version a compiled pipeline needs must be checked here, from this table.

Every minimum below was read from the kubeflow/pipelines git history: the release tag that
first contains the change (and, where it matters, the driver or compiler code at that tag).

A compiled pipeline declares the backend it needs in its description ("Needs a KFP backend >=
2.15.0.", `requirement`), which the KFP UI shows to whoever uploads it and which the
conformance check reads (`declared_requirement`): a pipeline compiled with an opt-in feature
of a newer backend (`danq pipeline compile --non-root`) declares that backend.

Pod security (read at tags 2.15.0-2.17.0, backend/src/v2):
- 2.16.0 first honours kfp.kubernetes.set_security_context (#12832): the driver copies
  runAsUser / runAsGroup / runAsNonRoot onto the step's main container and drops ALL
  capabilities (driver/k8s.go); values an administrator set (#12859) win, with a warning.
- 2.16.0 is also the first whose Argo compiler hardens step pods by itself (#12782,
  compiler/argocompiler/security_context.go): main container allowPrivilegeEscalation false,
  capabilities drop ALL, seccomp RuntimeDefault; pod-level seccomp RuntimeDefault only. The
  executor template's own pod securityContext replaces the workflow-level one (Argo's
  workflowpod.go), so nothing at pod level besides seccomp reaches a step.
- Older backends ignore the field without a word: the API server keeps each executor's
  platform config as a google.protobuf.Struct, and the driver decodes it with DiscardUnknown
  (common/util/json.go UnmarshalString). Their step pods get no securityContext but the
  workflow's: a runAsUser only where an administrator set PIPELINE_RUN_AS_USER on the API
  server (compiler/argocompiler/container.go GetPipelineRunAsUser).
- No release up to 2.17.0 sets fsGroup on step pods, and no pipeline can (the SecurityContext
  message has run_as_user, run_as_group and run_as_non_root only), so a freshly provisioned
  volume (a generic ephemeral volume on a PD: ext4 root directory root:root 0755) is not
  writable by a non-root step; emptyDir volumes (mode 0777) are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from danq.errors import ConfigError

# Kubeflow 1.11.0 ships KFP 2.15.0: the oldest platform the project supports.
MIN_BACKEND_VERSION = "2.15.0"

# KFP backend shipped by each Kubeflow release (kubeflow/manifests README at each tag; the
# calendar-versioned 26.03 from its release notes).
KUBEFLOW_RELEASES: Mapping[str, str] = MappingProxyType(
    {
        "1.10.0": "2.4.1",
        "1.10.1": "2.5.0",
        "1.10.2": "2.5.0",
        "1.11.0": "2.15.0",
        "26.03": "2.16.0",
    }
)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


def parse_version(text: str) -> tuple[int, int, int]:
    """ "2.15.0" (or "2.15", "v2.15.0") -> (2, 15, 0), to compare backend versions."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise ConfigError(f"KFP backend version {text!r} is not of the form X.Y.Z (e.g. 2.15.0)")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def describe_backend(version: str) -> str:
    """ "KFP backend 2.15.0 (Kubeflow 1.11.0)", naming the Kubeflow releases that ship it."""
    wanted = parse_version(version)
    shipped = [kf for kf, kfp in KUBEFLOW_RELEASES.items() if parse_version(kfp) == wanted]
    suffix = f" (Kubeflow {', '.join(shipped)})" if shipped else ""
    return f"KFP backend {version}{suffix}"


@dataclass(frozen=True)
class BackendFeature:
    """An IR or platform feature and the first backend release that honours it."""

    key: str
    title: str
    min_version: str
    reference: str
    backend_file: str

    def supported_by(self, backend: str) -> bool:
        return parse_version(backend) >= parse_version(self.min_version)


COLLECTED = "collected"
ITERATOR_DISPLAY_NAME = "iterator-display-name"
NODE_SELECTOR_JSON = "node-selector-json"
TOLERATION_JSON = "toleration-json"
SECRET_NAME_PARAMETER = "secret-name-parameter"
CONFIG_MAP_NAME_PARAMETER = "config-map-name-parameter"
OPTIONAL_ENV_SOURCE = "optional-env-source"
OPTIONAL_VOLUME_SOURCE = "optional-volume-source"
IMAGE_PARAMETER = "image-parameter"
RESOURCE_PARAMETER = "resource-parameter"
RETRY_ROOT = "retry-root"
RETRY_NESTED = "retry-nested"
EPHEMERAL_VOLUME = "ephemeral-volume"
EMPTY_DIR = "empty-dir"
NODE_AFFINITY = "node-affinity"
SECURITY_CONTEXT = "security-context"
SECURITY_DEFAULTS = "security-defaults"

_DRIVER = "backend/src/v2/driver"
_ARGO = "backend/src/v2/compiler/argocompiler"

FEATURES: tuple[BackendFeature, ...] = (
    BackendFeature(
        COLLECTED,
        "dsl.Collected outputs of a ParallelFor",
        "2.14.0",
        "kubeflow/pipelines#11725",
        f"{_DRIVER}/resolve.go (CollectInputs)",
    ),
    BackendFeature(
        ITERATOR_DISPLAY_NAME,
        "a ParallelFor whose display name differs from its task key",
        "2.16.0",
        "kubeflow/pipelines#12808 (fixes #11964, #13239)",
        f"{_ARGO}/dag.go; {_DRIVER}/dag.go falls back to taskInfo.name",
    ),
    BackendFeature(
        NODE_SELECTOR_JSON,
        "node selector from a parameter (nodeSelectorJson)",
        "2.5.0",
        "kubeflow/pipelines#11770",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        TOLERATION_JSON,
        "toleration from a parameter (tolerationJson)",
        "2.5.0",
        "kubeflow/pipelines#11770",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        SECRET_NAME_PARAMETER,
        "secret name from a parameter (secretNameParameter without secretName)",
        "2.5.0",
        "kubeflow/pipelines#11770",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        CONFIG_MAP_NAME_PARAMETER,
        "config map name from a parameter (configMapNameParameter without configMapName)",
        "2.5.0",
        "kubeflow/pipelines#11770",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        OPTIONAL_ENV_SOURCE,
        "optional secret or config map as env (optional: true on secretAsEnv/configMapAsEnv)",
        "2.15.0",
        "kubeflow/pipelines#12216",
        f"{_DRIVER}/k8s.go",
    ),
    BackendFeature(
        OPTIONAL_VOLUME_SOURCE,
        "optional secret or config map volume (optional: true on secretAsVolume/configMapAsVolume)",
        "2.2.0",
        "kubeflow/pipelines#10550",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        IMAGE_PARAMETER,
        "container image from a parameter",
        "2.4.0",
        "kubeflow/pipelines#11404",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        RESOURCE_PARAMETER,
        "resource request, limit or accelerator from a parameter",
        "2.4.0",
        "kubeflow/pipelines#11501",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        RETRY_ROOT,
        "task retry policy (a container task of the root DAG)",
        # #11673 merged after 2.4.0 and was cherry-picked into 2.4.1 (#11716); 2.4.0's Argo
        # compiler has no retry code at all.
        "2.4.1",
        "kubeflow/pipelines#11673",
        f"{_ARGO}/container.go",
    ),
    BackendFeature(
        RETRY_NESTED,
        "retry policy of a task inside an If group or sub-pipeline, or of a sub-pipeline",
        # 2.4.1-2.5.0 look the policy up in the root DAG only.
        "2.14.0",
        "kubeflow/pipelines#11861, #11908",
        f"{_ARGO}/container.go",
    ),
    BackendFeature(
        EPHEMERAL_VOLUME,
        "generic ephemeral volume (kfp.kubernetes.add_ephemeral_volume)",
        "2.2.0",
        "kubeflow/pipelines#10605",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        EMPTY_DIR,
        "emptyDir mount (kfp.kubernetes.empty_dir_mount)",
        "2.3.0",
        "kubeflow/pipelines#10913",
        f"{_DRIVER}/driver.go",
    ),
    BackendFeature(
        NODE_AFFINITY,
        "node affinity (kfp.kubernetes.add_node_affinity)",
        "2.14.0",
        "kubeflow/pipelines#12028",
        f"{_DRIVER}/k8s.go",
    ),
    BackendFeature(
        SECURITY_CONTEXT,
        "container security context (kfp.kubernetes.set_security_context: runAsUser, "
        "runAsGroup, runAsNonRoot)",
        # Older drivers drop the field silently: the step runs as the image's USER.
        "2.16.0",
        "kubeflow/pipelines#12832",
        f"{_DRIVER}/k8s.go",
    ),
    BackendFeature(
        SECURITY_DEFAULTS,
        "the compiler's hardening of step containers (allowPrivilegeEscalation false, "
        "capabilities drop ALL, seccomp RuntimeDefault)",
        "2.16.0",
        "kubeflow/pipelines#12782",
        f"{_ARGO}/security_context.go (applySecurityContextToExecutorTemplate)",
    ),
)

FEATURE_BY_KEY: Mapping[str, BackendFeature] = MappingProxyType({f.key: f for f in FEATURES})

_REQUIREMENT = "Needs a KFP backend >= {version}."
_DECLARED = re.compile(r"Needs a KFP backend >= (v?\d+\.\d+(?:\.\d+)?)\.")


def requirement(version: str) -> str:
    """The sentence of a pipeline's description that declares the backend it needs."""
    parse_version(version)
    return _REQUIREMENT.format(version=version)


def declared_requirement(description: str) -> str | None:
    """The backend version a description declares (`requirement`), or None."""
    match = _DECLARED.search(description)
    return match.group(1) if match else None


def newest(*versions: str) -> str:
    """The highest of these backend versions."""
    return max(versions, key=parse_version)


# The backend a pipeline whose steps run as non-root needs: it honours set_security_context
# and hardens the step containers itself.
NON_ROOT_BACKEND = newest(
    MIN_BACKEND_VERSION,
    FEATURE_BY_KEY[SECURITY_CONTEXT].min_version,
    FEATURE_BY_KEY[SECURITY_DEFAULTS].min_version,
)

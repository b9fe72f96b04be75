"""The Kubeflow pipeline from Python: compile it to YAML, check it, publish it, start runs.

pipelines/danq_pipeline.py and components/ are not installed with the package: they are read
from the repository checkout (or the image's copy of it), found by `repository_root`, and
imported only inside `compile_pipeline`, so importing danq never imports them.

A compile is written only when it passes the conformance check (danq.kfp.conformance): the
local runner accepts pipelines that the real backend rejects, so the backend's rules are
checked here. The MLflow tracking URI is compiled in (danq.kfp.tracking_uri): an http(s) URI
without credentials, the in-cluster Service by default. With `non_root` every step runs as the
images' non-root user with runAsNonRoot, which KFP backends honour from 2.16.0 only: such a
compile declares that backend in its description, and is checked against it.

Upload and run refuse, before anything is contacted, a package that cannot run on a cluster:
placeholder images (the reproducible default compile, danq.kfp.images), no gs:// pipeline root
(training checkpoints, which a retried or rerun train step resumes from, live under it), or a
conformance violation (against the backend the package declares).

`connect` authenticates to multi-user Kubeflow with a bearer token: one given (the CLI's
--token or KFP_TOKEN), else the in-cluster service-account token that kfp reads from
KF_PIPELINES_SA_TOKEN_PATH or its default path, when that file exists. Tokens are passed to
kfp.Client and never printed.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from danq.errors import ConfigError, PipelineError
from danq.kfp.images import DEFAULT_IMAGES, PipelineImages, placeholder_images
from danq.kfp.tracking_uri import CLUSTER_TRACKING_URI, check_cluster_uri, redacted

if TYPE_CHECKING:
    import kfp

    from danq.kfp.conformance import Violation

DEFAULT_NAMESPACE = "kubeflow"
PIPELINE_SOURCE = Path("pipelines") / "danq_pipeline.py"
PIPELINE_MODULE = ".".join(PIPELINE_SOURCE.with_suffix("").parts)  # pipelines.danq_pipeline
COMPONENTS_DIR = "components"
SUCCEEDED = "SUCCEEDED"
DURABLE_ROOT_SCHEME = "gs://"
# The run parameter where train keeps its checkpoints (pipelines/danq_pipeline.py); its default
# is fixed at compile time from the pipeline root.
CHECKPOINT_PARAMETER = "checkpoint_root"
TOKEN_HINT = (
    "multi-user Kubeflow needs a bearer token, e.g. KFP_TOKEN=$(kubectl -n <profile> create "
    "token default-editor --audience=pipelines.kubeflow.org)"
)


def repository_root() -> Path:
    """The checkout (or the image's copy of it) holding pipelines/ and components/.

    Those two folders are not installed with the package: they are looked up from the working
    directory upwards, then beside the package's own source (an editable install)."""
    import danq

    here = Path.cwd().resolve()
    candidates = [here, *here.parents, *Path(danq.__file__).resolve().parents]
    for folder in candidates:
        if (folder / PIPELINE_SOURCE).is_file() and (folder / COMPONENTS_DIR).is_dir():
            return folder
    raise ConfigError(
        f"cannot find {PIPELINE_SOURCE} and {COMPONENTS_DIR}/: run this from the repository "
        "checkout"
    )


def compiled_path() -> Path:
    """pipelines/danq_pipeline.yaml beside the pipeline's source."""
    return repository_root() / PIPELINE_SOURCE.with_suffix(".yaml")


def required_backend(package: str | os.PathLike[str]) -> str:
    """The KFP backend a compiled pipeline declares it needs (else the project's minimum)."""
    from danq.kfp import conformance

    spec, _ = conformance.load_documents(Path(package))
    return conformance.required_backend(spec)


def check_package(
    package: str | os.PathLike[str], min_backend: str | None = None
) -> list[Violation]:
    """The conformance violations of a compiled pipeline against KFP backend >= min_backend
    (default: the backend it declares; none: it conforms)."""
    from danq.kfp import conformance

    return conformance.check_file(Path(package), min_backend)


def write_checked(
    pipeline_func: Any, out: str | os.PathLike[str], min_backend: str | None = None
) -> Path:
    """Compile pipeline_func to out only if the result conforms (check_package, against
    min_backend or the backend the pipeline declares).

    It is compiled to a file beside out, checked, then renamed into place: a compile that
    fails leaves out as it was and no stray file behind."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so the rename is atomic; the compiler wants a .yaml suffix.
    staged = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.yaml")
    try:
        compiler.Compiler().compile(pipeline_func, str(staged))
        violations = check_package(staged, min_backend)
        if violations:
            minimum = min_backend or required_backend(staged)
            raise PipelineError(
                f"{out}: not written: the compiled pipeline breaks {len(violations)} rule(s) "
                f"of KFP backend >= {minimum}:\n" + "\n".join(f"  {v}" for v in violations)
            )
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    return out


def compile_pipeline(
    out: str | os.PathLike[str],
    images: PipelineImages = DEFAULT_IMAGES,
    gcs_key_secret: str | None = None,
    pipeline_root: str | None = None,
    tracking_uri: str = CLUSTER_TRACKING_URI,
    non_root: bool = False,
) -> Path:
    """Compile the pipeline with these compile-time settings to out, if it conforms.

    images: default, the placeholders of the reproducible default compile (the committed
    YAML); danq.kfp.images.pipeline_images gives those of a registry and tag. tracking_uri:
    the MLflow server every step uses, an http(s) URI without credentials (ConfigError
    otherwise). non_root: steps run as the images' non-root user (KFP backend >= 2.16.0)."""
    check_cluster_uri(tracking_uri)
    root = str(repository_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    # Imported by name from the checkout: it is not part of the installed package.
    source = importlib.import_module(PIPELINE_MODULE)
    pipeline = source.build_pipeline(
        gpu_image=images.gpu,
        cpu_image=images.cpu,
        gcs_key_secret=gcs_key_secret,
        pipeline_root=pipeline_root,
        tracking_uri=tracking_uri,
        non_root=non_root,
    )
    return write_checked(pipeline, out)


def existing_package(package: str | os.PathLike[str]) -> Path:
    """The compiled pipeline YAML at package, which must exist."""
    path = Path(package)
    if not path.is_file():
        raise ConfigError(f"{package}: no compiled pipeline there (run `danq pipeline compile`)")
    return path


def _pipeline_spec(package: Path) -> dict[str, Any]:
    """The pipeline spec: the first YAML document (the platform spec follows)."""
    try:
        spec = next(yaml.safe_load_all(package.read_text()))
    except (yaml.YAMLError, StopIteration) as err:
        raise ConfigError(f"{package}: not a compiled pipeline ({err})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{package}: not a compiled pipeline (no pipeline spec)")
    return spec


def default_pipeline_root(package: Path) -> str | None:
    """The pipeline root compiled into package (`defaultPipelineRoot`), if any."""
    root = _pipeline_spec(package).get("defaultPipelineRoot")
    return str(root) if root else None


def ensure_ready_for_cluster(
    package: Path,
    pipeline_root: str | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a package that would fail on the cluster, listing every problem: images no one
    built (the default compile's placeholders), no gs:// pipeline root (pipeline_root, the
    run's, else the compiled one), a checkpoint_root parameter that is not gs:// (the run's
    argument, else its default), or a conformance violation. Contacts nothing."""
    problems = []
    placeholders = placeholder_images(package)
    if placeholders:
        problems.append(
            f"placeholder images, which no cluster can pull: {', '.join(placeholders)}. "
            "Compile for a cluster: build and push the images with "
            "`make images REGISTRY=<registry> PUSH=1`, then run the compile line it prints: "
            "`danq pipeline compile --registry <registry> --tag <tag> "
            "--pipeline-root gs://<bucket>/kfp`"
        )
    root = pipeline_root or default_pipeline_root(package)
    if not (root or "").startswith(DURABLE_ROOT_SCHEME):
        found = f"pipeline root {root}" if root else "no pipeline root"
        problems.append(
            f"{found}, where a gs:// one is needed: training checkpoints, which a retried or "
            "rerun train step resumes from, live under the pipeline root, so it must be "
            "storage every pod shares; compile with `--pipeline-root gs://<bucket>/kfp` "
            "(or give one for the run)"
        )
    else:
        problems.extend(_checkpoint_problems(package, arguments or {}))
    problems.extend(f"conformance: {v}" for v in check_package(package))
    if problems:
        raise PipelineError(
            f"{package}: cannot run on a cluster:\n" + "\n".join(f"- {p}" for p in problems)
        )


def _checkpoint_problems(package: Path, arguments: Mapping[str, Any]) -> list[str]:
    """A run's pipeline root does not move the checkpoints: their default was fixed at
    compile time (empty when compiled without a root)."""
    inputs = _pipeline_spec(package)["root"].get("inputDefinitions", {}).get("parameters", {})
    if CHECKPOINT_PARAMETER not in inputs:
        return []
    value = str(
        arguments.get(CHECKPOINT_PARAMETER, inputs[CHECKPOINT_PARAMETER].get("defaultValue", ""))
    )
    if value.startswith(DURABLE_ROOT_SCHEME):
        return []
    return [
        f"{CHECKPOINT_PARAMETER} {value!r} is not a gs:// location, so a retried or rerun train "
        "step would start from epoch 0; compile with `--pipeline-root gs://<bucket>/kfp` or "
        f"give the run `{CHECKPOINT_PARAMETER}=gs://<bucket>/kfp/checkpoints`"
    ]


def package_version(package: Path) -> str:
    """A version name that changes exactly when the compiled YAML does."""
    return "sha256-" + hashlib.sha256(package.read_bytes()).hexdigest()[:12]


def parse_arguments(items: Sequence[str]) -> dict[str, Any]:
    """`name=value` pipeline arguments, values read as YAML (numbers, lists, true/false)."""
    arguments: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"pipeline argument {item!r}: expected name=value")
        try:
            arguments[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"pipeline argument {name}: not a valid value: {err}") from None
    return arguments


def check_arguments(package: Path, arguments: Mapping[str, Any]) -> None:
    """Every argument names an input of the compiled pipeline, and required ones are given."""
    inputs = _pipeline_spec(package)["root"]["inputDefinitions"]["parameters"]
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise ConfigError(
            f"{package}: the pipeline has no parameter {', '.join(unknown)} "
            f"(it has: {', '.join(sorted(inputs))})"
        )
    missing = [n for n, d in inputs.items() if not d.get("isOptional") and n not in arguments]
    if missing:
        raise ConfigError(f"{package}: required parameter(s) not given: {', '.join(missing)}")


@dataclass(frozen=True)
class Credentials:
    """How `connect` authenticates: a bearer token, or a token file kfp rereads on every
    request (the kubelet rotates projected service-account tokens), or nothing."""

    source: str  # for messages: where the token comes from, never the token
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None


def service_account_token_file() -> Path | None:
    """The in-cluster service-account token kfp reads: KF_PIPELINES_SA_TOKEN_PATH, else
    kfp's default path, when that file exists. A path set explicitly must exist."""
    from kfp import client

    configured = os.environ.get(client.KF_PIPELINES_SA_TOKEN_ENV)
    path = Path(configured or client.KF_PIPELINES_SA_TOKEN_PATH)
    if not path.is_file():
        if configured:
            raise ConfigError(
                f"{client.KF_PIPELINES_SA_TOKEN_ENV}={configured}: no token file there"
            )
        return None
    if not path.read_text().strip():
        raise ConfigError(f"{path}: the service-account token file is empty")
    return path


def credentials(token: str | None = None, source: str = "the given token") -> Credentials:
    """token when given, else the in-cluster service-account token file, else none."""
    if token:
        return Credentials(source=source, token=token)
    path = service_account_token_file()
    if path is not None:
        return Credentials(source=f"the service-account token {path}", token_file=path)
    return Credentials(source="no token")


@contextmanager
def _api_errors() -> Iterator[None]:
    """KFP API failures as PipelineError: status and reason only (a body could echo a
    header), with the token hint when the API refused the caller."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as err:
        hint = f": {TOKEN_HINT}" if err.status in (401, 403) else ""
        raise PipelineError(f"the KFP API answered {err.status} {err.reason}{hint}") from None
    except urllib3.exceptions.HTTPError as err:
        raise PipelineError(f"cannot reach the KFP API: {err}") from None


def connect(
    host: str, namespace: str = DEFAULT_NAMESPACE, auth: Credentials | None = None
) -> kfp.Client:
    """A client of the KFP API at host, acting in namespace, authenticated by auth (default:
    `credentials()`, the service-account token when there is one)."""
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    auth = auth or credentials()
    options: dict[str, Any] = {}
    if auth.token:
        options["existing_token"] = auth.token
    elif auth.token_file:
        options["credentials"] = ServiceAccountTokenVolumeCredentials(str(auth.token_file))
    try:
        with _api_errors():
            return kfp.Client(host=host, namespace=namespace, **options)
    except TimeoutError as err:  # kfp's health check gave up, also when refused
        raise PipelineError(
            f"the KFP API at {redacted(host)} did not answer its health check ({err}); if it "
            f"refused the caller ({auth.source}): {TOKEN_HINT}"
        ) from None


@dataclass(frozen=True)
class Upload:
    pipeline_id: str
    version: str | None  # None: the pipeline was new, created with this package


def upload(
    client: kfp.Client, package: Path, name: str, description: str, version: str | None = None
) -> Upload:
    """Publish package as pipeline `name`, or as a new version of it when the name exists
    (version: default, the package's hash). The package must be ready for a cluster."""
    ensure_ready_for_cluster(package)
    with _api_errors():
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            created = client.upload_pipeline(
                str(package), pipeline_name=name, description=description
            )
            return Upload(pipeline_id=created.pipeline_id, version=None)
        version = version or package_version(package)
        client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id
        )
    return Upload(pipeline_id=pipeline_id, version=version)


def start_run(
    client: kfp.Client,
    package: Path,
    arguments: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
    pipeline_root: str | None = None,
    caching: bool | None = None,
) -> str:
    """Start a run of package after checking it and its arguments; returns the run's id.
    caching None: each task's own setting."""
    ensure_ready_for_cluster(package, pipeline_root, arguments)
    check_arguments(package, arguments)
    with _api_errors():
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments=dict(arguments),
            run_name=run_name,
            experiment_name=experiment,
            pipeline_root=pipeline_root,
            enable_caching=caching,
        )
    return str(run.run_id)


def wait_for_run(client: kfp.Client, run_id: str, timeout_s: int) -> str:
    """The state the run finished in (SUCCEEDED, FAILED, ...)."""
    try:
        with _api_errors():
            finished = client.wait_for_run_completion(run_id, timeout=timeout_s)
    except TimeoutError:
        raise PipelineError(f"run {run_id}: not finished after {timeout_s} s") from None
    return str(finished.state)

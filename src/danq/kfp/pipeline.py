"""The Kubeflow pipeline from Python: compile it to YAML, publish the YAML, start runs.

pipelines/danq_pipeline.py and components/ are not installed with the package: they are read
from the repository checkout (or the image's copy of it), found by `repository_root`, and
imported only inside `compile_pipeline`, so importing danq never imports them. The endpoint
functions take a kfp.Client from `connect`, which finds credentials itself (kubeconfig
port-forward, IAP, in-cluster).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from danq.errors import ConfigError, PipelineError

if TYPE_CHECKING:
    import kfp

DEFAULT_NAMESPACE = "kubeflow"
PIPELINE_SOURCE = Path("pipelines") / "danq_pipeline.py"
PIPELINE_MODULE = ".".join(PIPELINE_SOURCE.with_suffix("").parts)  # pipelines.danq_pipeline
COMPONENTS_DIR = "components"
SUCCEEDED = "SUCCEEDED"


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


def compile_pipeline(
    out: str | os.PathLike[str],
    gpu_image: str | None = None,
    cpu_image: str | None = None,
    gcs_key_secret: str | None = None,
    pipeline_root: str | None = None,
) -> Path:
    """Compile the pipeline with these compile-time settings (defaults: components')."""
    from kfp import compiler

    root = str(repository_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    # Imported by name from the checkout: they are not part of the installed package.
    components = importlib.import_module(COMPONENTS_DIR)
    source = importlib.import_module(PIPELINE_MODULE)
    pipeline = source.build_pipeline(
        gpu_image=gpu_image or components.DEFAULT_GPU_IMAGE,
        cpu_image=cpu_image or components.DEFAULT_CPU_IMAGE,
        gcs_key_secret=gcs_key_secret,
        pipeline_root=pipeline_root,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(out))
    return out


def existing_package(package: str | os.PathLike[str]) -> Path:
    """The compiled pipeline YAML at package, which must exist."""
    path = Path(package)
    if not path.is_file():
        raise ConfigError(f"{package}: no compiled pipeline there (run `danq pipeline compile`)")
    return path


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
    spec = next(yaml.safe_load_all(package.read_text()))  # then the platform spec
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise ConfigError(
            f"{package}: the pipeline has no parameter {', '.join(unknown)} "
            f"(it has: {', '.join(sorted(inputs))})"
        )
    missing = [n for n, d in inputs.items() if not d.get("isOptional") and n not in arguments]
    if missing:
        raise ConfigError(f"{package}: required parameter(s) not given: {', '.join(missing)}")


def connect(host: str, namespace: str = DEFAULT_NAMESPACE) -> kfp.Client:
    """A client of the KFP API at host, acting in namespace."""
    import kfp

    return kfp.Client(host=host, namespace=namespace)


@dataclass(frozen=True)
class Upload:
    pipeline_id: str
    version: str | None  # None: the pipeline was new, created with this package


def upload(
    client: kfp.Client, package: Path, name: str, description: str, version: str | None = None
) -> Upload:
    """Publish package as pipeline `name`, or as a new version of it when the name exists
    (version: default, the package's hash)."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        created = client.upload_pipeline(str(package), pipeline_name=name, description=description)
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
    """Start a run of package after checking its arguments; returns the run's id.
    caching None: each task's own setting."""
    check_arguments(package, arguments)
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
        finished = client.wait_for_run_completion(run_id, timeout=timeout_s)
    except TimeoutError:
        raise PipelineError(f"run {run_id}: not finished after {timeout_s} s") from None
    return str(finished.state)

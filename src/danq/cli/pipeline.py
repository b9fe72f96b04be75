"""`danq pipeline compile | upload | run`: the Kubeflow pipeline from the command line.

compile writes pipelines/danq_pipeline.yaml (the file to upload in the KFP UI); upload
publishes it as a pipeline (a new version when the name exists); run starts a run on a KFP
endpoint. The endpoint comes from --host / KFP_HOST and the namespace from --namespace /
KFP_NAMESPACE; kfp.Client finds credentials itself (kubeconfig port-forward, IAP, in-cluster).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from danq.config import ConfigError, Params

DEFAULT_NAMESPACE = "kubeflow"


PIPELINE_SOURCE = Path("pipelines") / "danq_pipeline.py"


def repository_root() -> Path:
    """The checkout (or the image's copy of it) holding pipelines/ and components/.

    Those two folders are not installed with the package: they are looked up from the working
    directory upwards, then beside the package's own source (an editable install)."""
    import danq

    here = Path.cwd().resolve()
    candidates = [here, *here.parents, *Path(danq.__file__).resolve().parents]
    for folder in candidates:
        if (folder / PIPELINE_SOURCE).is_file() and (folder / "components").is_dir():
            return folder
    raise ConfigError(
        f"cannot find {PIPELINE_SOURCE} and components/: run this from the repository checkout"
    )


def _import_pipeline_sources() -> Path:
    root = repository_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


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

    _import_pipeline_sources()
    from components import DEFAULT_CPU_IMAGE, DEFAULT_GPU_IMAGE
    from pipelines.danq_pipeline import build_pipeline

    pipeline = build_pipeline(
        gpu_image=gpu_image or DEFAULT_GPU_IMAGE,
        cpu_image=cpu_image or DEFAULT_CPU_IMAGE,
        gcs_key_secret=gcs_key_secret,
        pipeline_root=pipeline_root,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(out))
    return out


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """`name=value` pipeline arguments, values read as YAML (numbers, lists, true/false)."""
    arguments: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--arg {item!r}: expected name=value")
        try:
            arguments[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--arg {name}: not a valid value: {err}") from None
    return arguments


def check_arguments(package: Path, arguments: dict[str, Any]) -> None:
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


def client(args: argparse.Namespace):
    import kfp

    host = args.host or os.environ.get("KFP_HOST")
    if not host:
        raise ConfigError("no KFP endpoint: pass --host or set KFP_HOST")
    namespace = args.namespace or os.environ.get("KFP_NAMESPACE") or DEFAULT_NAMESPACE
    return kfp.Client(host=host, namespace=namespace)


def package_version(package: Path) -> str:
    """A version name that changes exactly when the compiled YAML does."""
    return "sha256-" + hashlib.sha256(package.read_bytes()).hexdigest()[:12]


def cmd_compile(args: argparse.Namespace) -> int:
    out = compile_pipeline(
        args.out,
        gpu_image=args.image or os.environ.get("DANQ_IMAGE"),
        cpu_image=args.cpu_image or os.environ.get("DANQ_CPU_IMAGE"),
        gcs_key_secret=args.gcs_key_secret,
        pipeline_root=args.pipeline_root,
    )
    print(f"compiled pipeline -> {out}")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    package = _existing(args.package)
    kfp_client = client(args)
    version = args.version or package_version(package)
    pipeline_id = kfp_client.get_pipeline_id(args.name)
    if pipeline_id is None:
        created = kfp_client.upload_pipeline(
            str(package), pipeline_name=args.name, description=args.description
        )
        pipeline_id = created.pipeline_id
        print(f"uploaded new pipeline {args.name} ({pipeline_id})")
    else:
        kfp_client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id
        )
        print(f"uploaded version {version} of pipeline {args.name} ({pipeline_id})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    package = _existing(args.package)
    arguments = parse_arguments(args.arg)
    if args.data_uri:
        arguments["data_uri"] = args.data_uri
    check_arguments(package, arguments)
    kfp_client = client(args)
    run = kfp_client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=args.run_name,
        experiment_name=args.experiment,
        pipeline_root=args.pipeline_root,
        enable_caching=None if args.caching == "default" else args.caching == "on",
    )
    print(f"started run {run.run_id} in experiment {args.experiment}")
    if not args.wait:
        return 0
    finished = kfp_client.wait_for_run_completion(run.run_id, timeout=args.timeout)
    state = str(finished.state)
    print(f"run {run.run_id}: {state}")
    return 0 if state == "SUCCEEDED" else 1


def _existing(package: str) -> Path:
    path = Path(package)
    if not path.is_file():
        raise ConfigError(f"{package}: no compiled pipeline there (run `danq pipeline compile`)")
    return path


def _add_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST)")
    parser.add_argument(
        "--namespace", help=f"KFP namespace (default: $KFP_NAMESPACE, else {DEFAULT_NAMESPACE})"
    )
    parser.add_argument(
        "--package",
        default=str(compiled_path()),
        help="compiled pipeline YAML (default: %(default)s)",
    )


def add_commands(pipeline: argparse.ArgumentParser) -> None:
    """The `danq pipeline` subcommands."""
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    compile_ = commands.add_parser(
        "compile",
        help="compile the Kubeflow pipeline to YAML (upload it in the KFP UI)",
        description="Compile pipelines/danq_pipeline.py. Images, the GCS key secret and the "
        "pipeline root are fixed at compile time; everything else is a run parameter.",
    )
    compile_.add_argument(
        "--out", default=str(compiled_path()), help="output YAML (default: %(default)s)"
    )
    compile_.add_argument(
        "--image", help="GPU image for train (default: $DANQ_IMAGE, else built-in)"
    )
    compile_.add_argument(
        "--cpu-image", help="image of the other steps (default: $DANQ_CPU_IMAGE, else built-in)"
    )
    compile_.add_argument(
        "--gcs-key-secret",
        help="Kubernetes secret with key.json for GCS, mounted at /var/secrets/google "
        "(default: none, Workload Identity)",
    )
    compile_.add_argument("--pipeline-root", help="default pipeline root, e.g. gs://bucket/kfp")
    compile_.set_defaults(pipeline_handler=cmd_compile)

    upload = commands.add_parser(
        "upload", help="publish the compiled YAML as a pipeline (a new version if it exists)"
    )
    _add_endpoint(upload)
    upload.add_argument("--name", default="danq", help="pipeline name (default: %(default)s)")
    upload.add_argument("--version", help="version name (default: hash of the YAML)")
    upload.add_argument(
        "--description", default="DanQ vs random-dropout DanQ: train, evaluate, promote"
    )
    upload.set_defaults(pipeline_handler=cmd_upload)

    run = commands.add_parser("run", help="start a run of the compiled pipeline")
    _add_endpoint(run)
    run.add_argument("--data-uri", help="DeepSEA-format folder, e.g. gs://bucket/deepsea")
    run.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, e.g. --arg max_epochs=5 --arg gpu_type=nvidia-tesla-t4",
    )
    run.add_argument("--experiment", default="danq", help="KFP experiment (default: %(default)s)")
    run.add_argument("--run-name", help="run name (default: KFP's)")
    run.add_argument("--pipeline-root", help="where artifacts go, e.g. gs://bucket/kfp")
    run.add_argument("--caching", choices=("default", "on", "off"), default="default")
    run.add_argument("--wait", action="store_true", help="wait; exit 1 unless the run succeeds")
    run.add_argument("--timeout", type=int, default=24 * 3600, help="--wait limit in seconds")
    run.set_defaults(pipeline_handler=cmd_run)


def run(args: argparse.Namespace) -> int:
    try:
        return args.pipeline_handler(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def cmd_pipeline(args: argparse.Namespace, params: Params) -> int:
    return run(args)


def register(commands: argparse._SubParsersAction) -> None:
    pipeline = commands.add_parser(
        "pipeline", help="the Kubeflow pipeline: compile to YAML, upload, run on a KFP endpoint"
    )
    add_commands(pipeline)
    pipeline.set_defaults(handler=cmd_pipeline)

"""`danq pipeline compile | upload | run`: the Kubeflow pipeline from the command line.

compile writes pipelines/danq_pipeline.yaml (the file to upload in the KFP UI); upload
publishes it as a pipeline (a new version when the name exists); run starts a run on a KFP
endpoint. The endpoint comes from --host / KFP_HOST and the namespace from --namespace /
KFP_NAMESPACE; kfp.Client finds credentials itself (kubeconfig port-forward, IAP, in-cluster).
The work is done by danq.kfp.pipeline.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from danq.config import Params
from danq.errors import ConfigError

if TYPE_CHECKING:
    import kfp

COMPILED_HELP = "pipelines/danq_pipeline.yaml of the checkout"


def _package(args: argparse.Namespace) -> Path:
    from danq.kfp import pipeline

    return pipeline.existing_package(args.package or pipeline.compiled_path())


def _connect(args: argparse.Namespace) -> kfp.Client:
    from danq.kfp import pipeline

    host = args.host or os.environ.get("KFP_HOST")
    if not host:
        raise ConfigError("no KFP endpoint: pass --host or set KFP_HOST")
    namespace = args.namespace or os.environ.get("KFP_NAMESPACE") or pipeline.DEFAULT_NAMESPACE
    return pipeline.connect(host, namespace)


def cmd_compile(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import pipeline

    out = pipeline.compile_pipeline(
        args.out or pipeline.compiled_path(),
        gpu_image=args.image or os.environ.get("DANQ_IMAGE"),
        cpu_image=args.cpu_image or os.environ.get("DANQ_CPU_IMAGE"),
        gcs_key_secret=args.gcs_key_secret,
        pipeline_root=args.pipeline_root,
    )
    print(f"compiled pipeline -> {out}")
    return 0


def cmd_upload(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import pipeline

    package = _package(args)
    done = pipeline.upload(
        _connect(args), package, args.name, args.description, version=args.version
    )
    if done.version is None:
        print(f"uploaded new pipeline {args.name} ({done.pipeline_id})")
    else:
        print(f"uploaded version {done.version} of pipeline {args.name} ({done.pipeline_id})")
    return 0


def cmd_run(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import pipeline

    package = _package(args)
    arguments = pipeline.parse_arguments(args.arg)
    if args.data_uri:
        arguments["data_uri"] = args.data_uri
    pipeline.check_arguments(package, arguments)  # before anything is contacted
    client = _connect(args)
    run_id = pipeline.start_run(
        client,
        package,
        arguments,
        experiment=args.experiment,
        run_name=args.run_name,
        pipeline_root=args.pipeline_root,
        caching=None if args.caching == "default" else args.caching == "on",
    )
    print(f"started run {run_id} in experiment {args.experiment}")
    if not args.wait:
        return 0
    state = pipeline.wait_for_run(client, run_id, args.timeout)
    print(f"run {run_id}: {state}")
    return 0 if state == pipeline.SUCCEEDED else 1


def _add_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST)")
    parser.add_argument(
        "--namespace",
        help="KFP namespace (default: $KFP_NAMESPACE, else KFP's single-user namespace, kubeflow)",
    )
    parser.add_argument("--package", help=f"compiled pipeline YAML (default: {COMPILED_HELP})")


def _add_compile(commands: argparse._SubParsersAction) -> None:

    compile_ = commands.add_parser(
        "compile",
        help="compile the Kubeflow pipeline to YAML (upload it in the KFP UI)",
        description="Compile pipelines/danq_pipeline.py. Images, the GCS key secret and the "
        "pipeline root are fixed at compile time; everything else is a run parameter.",
    )
    compile_.add_argument("--out", help=f"output YAML (default: {COMPILED_HELP})")
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
    compile_.set_defaults(handler=cmd_compile)


def _add_upload(commands: argparse._SubParsersAction) -> None:
    upload = commands.add_parser(
        "upload", help="publish the compiled YAML as a pipeline (a new version if it exists)"
    )
    _add_endpoint(upload)
    upload.add_argument("--name", default="danq", help="pipeline name (default: %(default)s)")
    upload.add_argument("--version", help="version name (default: hash of the YAML)")
    upload.add_argument(
        "--description", default="DanQ vs random-dropout DanQ: train, evaluate, promote"
    )
    upload.set_defaults(handler=cmd_upload)


def _add_run(commands: argparse._SubParsersAction) -> None:
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
    run.set_defaults(handler=cmd_run)


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser(
        "pipeline", help="the Kubeflow pipeline: compile to YAML, upload, run on a KFP endpoint"
    )
    subcommands = group.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    _add_compile(subcommands)
    _add_upload(subcommands)
    _add_run(subcommands)

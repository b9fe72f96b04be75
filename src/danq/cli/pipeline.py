"""`danq pipeline compile | check | images | upload | run`: the Kubeflow pipeline from the
command line.

compile writes pipelines/danq_pipeline.yaml, or --out, only when it passes the conformance
check. Its images come from --registry / DANQ_REGISTRY and --tag / DANQ_IMAGE_TAG (default
with a registry: the commit tag of the checkout); with neither, the placeholders of the
reproducible default compile, which upload and run refuse. The MLflow tracking URI is
compiled in (--tracking-uri, default the in-cluster Service; http(s), no credentials): no run
can change it. --non-root runs every step as the images' non-root user with runAsNonRoot,
for KFP backends >= 2.16.0, which the YAML then declares. check prints the conformance
violations of a compiled YAML, against the backend it declares unless --min-backend. images
prints the build plan of scripts/build_images.sh (`make images`): the tag, the commit, each
Dockerfile and its references, so the script and compile compute tags in one place
(danq.kfp.images).

upload publishes a compiled YAML as a pipeline (a new version when the name exists); run starts
a run. Both first refuse a package that cannot run on a cluster (placeholder images, no gs://
pipeline root, a conformance violation), then connect to --host / KFP_HOST in --namespace /
KFP_NAMESPACE with a bearer token from --token, else KFP_TOKEN, else the in-cluster
service-account token. The token is never printed, and URIs are printed redacted
(danq.redaction.redact_uri). The work is done by danq.kfp.pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def _host(args: argparse.Namespace) -> str:
    host: str | None = args.host or os.environ.get("KFP_HOST")
    if not host:
        raise ConfigError("no KFP endpoint: pass --host or set KFP_HOST")
    return host


def _connect(args: argparse.Namespace, host: str) -> kfp.Client:
    from danq.kfp import pipeline
    from danq.kfp.tracking_uri import redacted

    namespace = args.namespace or os.environ.get("KFP_NAMESPACE") or pipeline.DEFAULT_NAMESPACE
    if args.token:
        auth = pipeline.credentials(args.token, source="--token")
    else:
        auth = pipeline.credentials(os.environ.get("KFP_TOKEN"), source="KFP_TOKEN")
    print(f"KFP API {redacted(host)}, namespace {namespace}, authenticated by {auth.source}")
    return pipeline.connect(host, namespace, auth)


def cmd_compile(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import images, pipeline
    from danq.kfp.tracking_uri import CLUSTER_TRACKING_URI, redacted

    tracking_uri = args.tracking_uri or CLUSTER_TRACKING_URI
    chosen = images.pipeline_images(
        pipeline.repository_root(),
        registry=args.registry or os.environ.get("DANQ_REGISTRY"),
        tag=args.tag or os.environ.get("DANQ_IMAGE_TAG"),
    )
    out = pipeline.compile_pipeline(
        args.out or pipeline.compiled_path(),
        images=chosen,
        gcs_key_secret=args.gcs_key_secret,
        pipeline_root=args.pipeline_root,
        tracking_uri=tracking_uri,
        non_root=args.non_root,
    )
    print(f"compiled pipeline -> {out}, for KFP backend >= {pipeline.required_backend(out)}")
    print(f"images: {chosen.gpu} (steps on GPU nodes), {chosen.cpu} (the others)")
    print(f"MLflow tracking URI (compiled in, no run can change it): {redacted(tracking_uri)}")
    if args.non_root:
        print(f"steps run as uid/gid {images.IMAGE_UID} with runAsNonRoot")
    if chosen == images.DEFAULT_IMAGES:
        print(
            "placeholder images: upload and run refuse this YAML; for a cluster, "
            "`make images REGISTRY=<registry> PUSH=1` prints the compile line to use"
        )
    return 0


def cmd_check(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import pipeline

    package = pipeline.existing_package(args.yaml or pipeline.compiled_path())
    minimum = args.min_backend or pipeline.required_backend(package)
    violations = pipeline.check_package(package, minimum)
    for violation in violations:
        print(violation)
    if violations:
        print(
            f"{package}: {len(violations)} violation(s) of KFP backend >= {minimum}",
            file=sys.stderr,
        )
        return 1
    print(f"{package} conforms to KFP backend >= {minimum}")
    return 0


def cmd_images(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import images

    registry = args.registry or os.environ.get("DANQ_REGISTRY")
    if not registry:
        raise ConfigError("no image registry: pass --registry or set DANQ_REGISTRY")
    plan = images.build_plan(
        Path(args.root).resolve(), registry, args.tag or os.environ.get("DANQ_IMAGE_TAG")
    )
    # One record a line, read by scripts/build_images.sh.
    print(f"tag {plan.tag}")
    if plan.revision:
        print(f"revision {plan.revision}")
    for build in plan.builds:
        print(f"image {build.kind} {build.dockerfile} {' '.join(build.refs)}")
    return 0


def cmd_upload(args: argparse.Namespace, params: Params) -> int:
    from danq.kfp import pipeline

    package = _package(args)
    pipeline.ensure_ready_for_cluster(package)  # before anything is contacted
    client = _connect(args, _host(args))
    done = pipeline.upload(client, package, args.name, args.description, version=args.version)
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
    # Before anything is contacted.
    pipeline.ensure_ready_for_cluster(package, args.pipeline_root, arguments)
    pipeline.check_arguments(package, arguments)
    client = _connect(args, _host(args))
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
        help="KFP namespace, your profile's on multi-user Kubeflow (default: $KFP_NAMESPACE, "
        "else KFP's single-user namespace, kubeflow)",
    )
    parser.add_argument(
        "--token",
        help="bearer token for multi-user Kubeflow (default: $KFP_TOKEN, which keeps it out "
        "of the shell history; else the in-cluster service-account token at "
        "$KF_PIPELINES_SA_TOKEN_PATH or /var/run/secrets/kubeflow/pipelines/token)",
    )
    parser.add_argument("--package", help=f"compiled pipeline YAML (default: {COMPILED_HELP})")


def _add_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        help="where the images are pushed, e.g. us-docker.pkg.dev/PROJECT/danq "
        "(default: $DANQ_REGISTRY)",
    )
    parser.add_argument(
        "--tag",
        help="image tag (default: $DANQ_IMAGE_TAG, else git-<commit> of a clean checkout)",
    )


def _add_compile(commands: argparse._SubParsersAction) -> None:
    compile_ = commands.add_parser(
        "compile",
        help="compile the Kubeflow pipeline to YAML, if it passes the conformance check",
        description="Compile pipelines/danq_pipeline.py. Images, the GCS key secret, the "
        "pipeline root, the MLflow tracking URI and the steps' user are fixed at compile time; "
        "everything else is a run parameter. Without a registry the images are placeholders "
        "(the committed YAML), which upload and run refuse.",
    )
    compile_.add_argument("--out", help=f"output YAML (default: {COMPILED_HELP})")
    _add_images(compile_)
    compile_.add_argument(
        "--gcs-key-secret",
        help="Kubernetes secret with key.json for GCS, mounted at /var/secrets/google "
        "(default: none, Workload Identity)",
    )
    compile_.add_argument("--pipeline-root", help="default pipeline root, e.g. gs://bucket/kfp")
    compile_.add_argument(
        "--tracking-uri",
        help="MLflow tracking server of every step, an http(s) URI without credentials (the "
        "login comes from the mlflow-credentials secret); compiled in, so no run can send the "
        "login elsewhere (default: http://mlflow.mlflow.svc.cluster.local:5000, the Service of "
        "infra/k8s/mlflow: danq.kfp.tracking_uri.CLUSTER_TRACKING_URI)",
    )
    compile_.add_argument(
        "--non-root",
        action="store_true",
        help="run every step as the images' non-root user (danq.kfp.images.IMAGE_UID) with "
        "runAsNonRoot; needs a KFP backend that honours it (danq.kfp.backend.NON_ROOT_BACKEND, "
        "2.16.0), which the YAML then declares (older backends ignore the setting)",
    )
    compile_.set_defaults(handler=cmd_compile)


def _add_check(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check",
        help="check a compiled YAML against the KFP backend's rules; exit 1 on a violation",
    )
    check.add_argument("yaml", nargs="?", help=f"compiled pipeline (default: {COMPILED_HELP})")
    check.add_argument(
        "--min-backend",
        metavar="VERSION",
        help="KFP backend version to check against (default: the one the YAML's description "
        "declares, else the project's minimum, danq.kfp.backend.MIN_BACKEND_VERSION)",
    )
    check.set_defaults(handler=cmd_check)


def _add_image_plan(commands: argparse._SubParsersAction) -> None:
    plan = commands.add_parser(
        "images",
        help="print the image build plan of `make images`: tag, commit, Dockerfiles, references",
    )
    _add_images(plan)
    plan.add_argument("--root", default=".", help="checkout to build from (default: .)")
    plan.set_defaults(handler=cmd_images)


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
    run.add_argument(
        "--pipeline-root",
        help="where artifacts and checkpoints go, a gs:// location (default: the compiled one)",
    )
    run.add_argument("--caching", choices=("default", "on", "off"), default="default")
    run.add_argument("--wait", action="store_true", help="wait; exit 1 unless the run succeeds")
    run.add_argument("--timeout", type=int, default=24 * 3600, help="--wait limit in seconds")
    run.set_defaults(handler=cmd_run)


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser(
        "pipeline",
        help="the Kubeflow pipeline: compile, check, build images, upload, run on a KFP endpoint",
    )
    subcommands = group.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    _add_compile(subcommands)
    _add_check(subcommands)
    _add_image_plan(subcommands)
    _add_upload(subcommands)
    _add_run(subcommands)

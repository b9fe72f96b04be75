"""The client side of the Kubeflow pipeline: compile for a cluster, check, and upload / run
with authentication, refusing packages that cannot run on a cluster before contacting it.

Upload and run talk to a real HTTP server on 127.0.0.1 that answers the KFP v2beta1 REST calls
the kfp client makes (healthz, list and upload pipelines, list experiments, create a run) and
records every request with its headers, so the tests see the exact Authorization header that
reaches a server, or that no request was made at all.
"""

# No `from __future__ import annotations`: kfp reads the component signatures below.
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp.client
import pytest
import yaml
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input

from danq.cli.main import main
from danq.errors import ConfigError, PipelineError
from danq.kfp import images
from danq.kfp.backend import MIN_BACKEND_VERSION
from danq.kfp.images import DEFAULT_IMAGES, PipelineImages
from danq.kfp.pipeline import (
    check_arguments,
    check_package,
    compile_pipeline,
    compiled_path,
    credentials,
    parse_arguments,
    repository_root,
    write_checked,
)
from danq.kfp.tracking_uri import compiled_tracking_uris

REGISTRY = "registry.example/team/danq"
BUILT = PipelineImages(gpu=f"{REGISTRY}/danq-gpu:v1", cpu=f"{REGISTRY}/danq-cpu:v1")
ROOT = "gs://bucket/kfp"
PROFILE = "kubeflow-user-example-com"
ENVIRONMENT = (
    "KFP_HOST",
    "KFP_NAMESPACE",
    "KFP_TOKEN",
    "KF_PIPELINES_SA_TOKEN_PATH",
    "DANQ_REGISTRY",
    "DANQ_IMAGE_TAG",
)


@pytest.fixture(autouse=True)
def no_ambient_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint, token or registry from the machine running the tests; kfp's default
    service-account token path points at a file that does not exist."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp.client, "KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))


# --- tiny pipelines --------------------------------------------------------------------------


def echo(text: str) -> str:
    return text


def consume(data: Input[Dataset]) -> str:
    return data.uri


def tiny_pipeline(image: str, pipeline_root: str | None) -> Any:
    """One step on image, with a required data_uri, an optional max_epochs, and a
    checkpoint_root whose default comes from the pipeline root, as danq_pipeline's does."""
    step = dsl.component(echo, base_image=image, install_kfp_package=False)
    checkpoints = f"{pipeline_root}/checkpoints" if pipeline_root else ""

    @dsl.pipeline(name="tiny", pipeline_root=pipeline_root)
    def tiny(data_uri: str, max_epochs: int = 3, checkpoint_root: str = checkpoints):
        step(text=data_uri)

    return tiny


def importer_with_display_name(image: str, pipeline_root: str | None) -> Any:
    """Breaks a backend rule: consumers look an importer up by its key, the backend records it
    under its display name."""
    step = dsl.component(consume, base_image=image, install_kfp_package=False)

    @dsl.pipeline(name="bad", pipeline_root=pipeline_root)
    def bad(data_uri: str):
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset)
        data.set_display_name("import data")
        step(data=data.output)

    return bad


@pytest.fixture
def ready(tmp_path: Path) -> Path:
    """A package a cluster can run: built images, a gs:// root, conforming."""
    return write_checked(tiny_pipeline(BUILT.cpu, ROOT), tmp_path / "ready.yaml")


@pytest.fixture
def placeholder(tmp_path: Path) -> Path:
    return write_checked(tiny_pipeline(DEFAULT_IMAGES.cpu, ROOT), tmp_path / "placeholder.yaml")


@pytest.fixture
def rootless(tmp_path: Path) -> Path:
    return write_checked(tiny_pipeline(BUILT.cpu, None), tmp_path / "rootless.yaml")


@pytest.fixture
def nonconforming(tmp_path: Path) -> Path:
    out = tmp_path / "nonconforming.yaml"
    compiler.Compiler().compile(importer_with_display_name(BUILT.cpu, ROOT), str(out))
    return out


# --- a KFP API on 127.0.0.1 ------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeKfp(ThreadingHTTPServer):
    """Answers the calls of kfp.Client's upload and run; with `token` set, refuses (401)
    every request without `Authorization: Bearer <token>`, as multi-user Kubeflow does."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), KfpHandler)
        self.requests: list[Request] = []
        self.pipelines: dict[str, str] = {}  # display name -> id
        self.token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def authorizations(self) -> set[str | None]:
        return {r.headers.get("authorization") for r in self.requests}

    def answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthorized", "code": 16}
        name = request.query.get("name", [""])[0]
        match request.method, request.path:
            case "GET", "/apis/v2beta1/healthz":
                return 200, {"multi_user": False}
            case "GET", "/apis/v2beta1/pipelines":
                (wanted,) = json.loads(request.query["filter"][0])["predicates"]
                found = wanted["stringValue"] in self.pipelines
                pipeline = {"pipeline_id": self.pipelines.get(wanted["stringValue"])}
                return 200, {"pipelines": [pipeline], "total_size": 1} if found else {}
            case "POST", "/apis/v2beta1/pipelines/upload":
                self.pipelines[name] = f"pipeline-{len(self.pipelines) + 1}"
                return 200, {"pipeline_id": self.pipelines[name], "display_name": name}
            case "POST", "/apis/v2beta1/pipelines/upload_version":
                pipeline_id = request.query["pipelineid"][0]
                return 200, {"pipeline_id": pipeline_id, "pipeline_version_id": "version-1"}
            case "GET", "/apis/v2beta1/experiments":
                return 200, {"experiments": [{"experiment_id": "experiment-1"}], "total_size": 1}
            case "POST", "/apis/v2beta1/runs":
                return 200, {"run_id": "run-1", "display_name": "tiny"}
        return 404, {"error": f"no {request.method} {request.path} here"}


class KfpHandler(BaseHTTPRequestHandler):
    server: FakeKfp

    def handle_one(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        self.server.requests.append(request)
        status, payload = self.server.answer(request)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = handle_one

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_api() -> Iterator[FakeKfp]:
    server = FakeKfp()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def said(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    return out + err


# --- compile -------------------------------------------------------------------------------


def executors(package: Path) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Each container executor's image, the pipeline spec and the Kubernetes executors."""
    spec, platform = yaml.safe_load_all(package.read_text())
    found = {
        name: e["container"]["image"]
        for name, e in spec["deploymentSpec"]["executors"].items()
        if "container" in e
    }
    return found, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compile_for_a_cluster_sets_registry_tag_root_and_the_gcs_key_secret(
    tmp_path: Path,
) -> None:
    out = tmp_path / "p.yaml"
    flags = ["--registry", REGISTRY, "--tag", "v1", "--pipeline-root", ROOT]
    assert main(["pipeline", "compile", "--out", str(out), *flags, "--gcs-key-secret", "key"]) == 0
    found, spec, k8s = executors(out)
    assert found["exec-train"] == BUILT.gpu
    assert found["exec-validate"] == BUILT.cpu
    assert set(found.values()) == {BUILT.gpu, BUILT.cpu}
    assert spec["defaultPipelineRoot"] == ROOT
    mounted = [name for name in found if "secretAsVolume" in k8s.get(name, {})]
    assert {"exec-validate", "exec-train"} <= set(mounted)
    for name in mounted:
        (volume,) = k8s[name]["secretAsVolume"]
        assert volume["secretName"] == "key" and volume["mountPath"] == "/var/secrets/google"
        env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
        assert {
            "name": "GOOGLE_APPLICATION_CREDENTIALS",
            "value": "/var/secrets/google/key.json",
        } in env
    assert images.placeholder_images(out) == []


def test_compile_takes_registry_and_tag_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DANQ_REGISTRY", REGISTRY)
    monkeypatch.setenv("DANQ_IMAGE_TAG", "v1")
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out)]) == 0
    assert set(executors(out)[0].values()) == {BUILT.gpu, BUILT.cpu}
    # Flags win over the environment.
    assert main(["pipeline", "compile", "--out", str(out), "--tag", "v2"]) == 0
    assert executors(out)[0]["exec-train"] == f"{REGISTRY}/danq-gpu:v2"


def test_compile_with_a_registry_defaults_to_the_commit_tag(tmp_path: Path, capsys) -> None:
    """On a clean checkout the images carry its commit; a dirty one is refused (exit 2)."""
    root = repository_root()
    out = tmp_path / "p.yaml"
    code = main(["pipeline", "compile", "--out", str(out), "--registry", REGISTRY])
    if images.dirty_paths(root):
        assert code == 2
        assert "uncommitted changes" in said(capsys)
        assert not out.exists()
    else:
        assert code == 0
        assert executors(out)[0]["exec-train"] == f"{REGISTRY}/danq-gpu:{images.commit_tag(root)}"


def test_compile_refuses_a_tag_without_a_registry_and_the_old_image_flags(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--tag", "v1"]) == 2
    assert "given without an image registry" in said(capsys)
    with pytest.raises(SystemExit) as exited:
        main(["pipeline", "compile", "--out", str(out), "--image", "x/danq-gpu:1"])
    assert exited.value.code == 2
    assert not out.exists()


def test_default_compile_is_reproducible_and_says_its_images_are_placeholders(
    tmp_path: Path, capsys
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert compile_pipeline(first) == first
    assert main(["pipeline", "compile", "--out", str(second)]) == 0
    assert "placeholder images: upload and run refuse this YAML" in said(capsys)
    assert first.read_bytes() == second.read_bytes()
    assert images.placeholder_images(first) == sorted({DEFAULT_IMAGES.gpu, DEFAULT_IMAGES.cpu})


def test_compile_bakes_in_the_tracking_uri_given(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.yaml"
    uri = "https://mlflow.example.org"
    assert main(["pipeline", "compile", "--out", str(out), "--tracking-uri", uri]) == 0
    assert f"MLflow tracking URI (compiled in, no run can change it): {uri}" in said(capsys)
    _, spec, _ = executors(out)
    assert set(compiled_tracking_uris(spec).values()) == {uri}
    assert check_package(out) == []


@pytest.mark.parametrize(
    "uri, shown, problem",
    [
        (
            "http://pipeline:s3cret@mlflow.mlflow.svc.cluster.local:5000",
            "http://pipeline:***@mlflow.mlflow.svc.cluster.local:5000",
            "it holds credentials",
        ),
        (
            "https://mlflow.example.org/?token=s3cret",
            "https://mlflow.example.org/?token=***",
            "it holds credentials",
        ),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db", "not an http or https URI"),
        ("mlflow.example.org:5000", "mlflow.example.org:5000", "not an http or https URI"),
    ],
)
def test_compile_refuses_a_tracking_uri_with_credentials_or_not_http(
    tmp_path: Path, capsys, uri: str, shown: str, problem: str
) -> None:
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--tracking-uri", uri]) == 2
    message = said(capsys)
    assert f"tracking URI {shown}: {problem}" in message
    assert "s3cret" not in message
    assert not out.exists()


def test_a_non_root_compile_is_checked_against_the_backend_it_declares(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--non-root"]) == 0
    printed = said(capsys)
    assert "for KFP backend >= 2.16.0" in printed and "uid/gid 1000 with runAsNonRoot" in printed
    assert main(["pipeline", "check", str(out)]) == 0
    assert said(capsys).strip() == f"{out} conforms to KFP backend >= 2.16.0"
    assert main(["pipeline", "check", str(out), "--min-backend", MIN_BACKEND_VERSION]) == 1
    assert "#12832" in said(capsys)


def test_a_nonconforming_compile_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "p.yaml"
    out.parent.mkdir()
    out.write_text("the previous compile\n")
    with pytest.raises(PipelineError) as refused:
        write_checked(importer_with_display_name(BUILT.cpu, ROOT), out)
    message = str(refused.value)
    assert f"{out}: not written" in message and f">= {MIN_BACKEND_VERSION}" in message
    assert "importer" in message and "[display-name]" in message
    assert out.read_text() == "the previous compile\n"
    assert [p.name for p in out.parent.iterdir()] == ["p.yaml"]


# --- check -----------------------------------------------------------------------------------


def test_check_prints_each_violation_and_exits_1(nonconforming: Path, capsys) -> None:
    assert main(["pipeline", "check", str(nonconforming)]) == 1
    out, err = capsys.readouterr()
    assert "[display-name]" in out and "importer" in out
    assert f"violation(s) of KFP backend >= {MIN_BACKEND_VERSION}" in err


def test_check_passes_a_conforming_yaml_for_the_version_asked(ready: Path, capsys) -> None:
    assert main(["pipeline", "check", str(ready)]) == 0
    assert said(capsys).strip() == f"{ready} conforms to KFP backend >= {MIN_BACKEND_VERSION}"
    assert main(["pipeline", "check", str(ready), "--min-backend", "2.16.0"]) == 0
    assert said(capsys).strip().endswith("conforms to KFP backend >= 2.16.0")
    assert main(["pipeline", "check", str(ready), "--min-backend", "two"]) == 2
    assert "not of the form X.Y.Z" in said(capsys)


def test_check_defaults_to_the_committed_yaml(capsys) -> None:
    assert main(["pipeline", "check"]) == 0
    assert said(capsys).strip() == (
        f"{compiled_path()} conforms to KFP backend >= {MIN_BACKEND_VERSION}"
    )


# --- refusals before anything is contacted ---------------------------------------------------


def test_upload_refuses_placeholder_images_before_any_request(
    placeholder: Path, kfp_api: FakeKfp, capsys
) -> None:
    code = main(["pipeline", "upload", "--host", kfp_api.url, "--package", str(placeholder)])
    assert code == 1
    message = said(capsys)
    assert f"placeholder images, which no cluster can pull: {DEFAULT_IMAGES.cpu}" in message
    assert "make images REGISTRY=<registry> PUSH=1" in message
    assert "danq pipeline compile --registry <registry> --tag <tag>" in message
    assert kfp_api.requests == []


def test_upload_refuses_the_committed_default_compile(kfp_api: FakeKfp, capsys) -> None:
    assert main(["pipeline", "upload", "--host", kfp_api.url]) == 1
    message = said(capsys)
    assert f"{compiled_path()}: cannot run on a cluster" in message
    assert "placeholder images" in message and "make images REGISTRY=" in message
    assert kfp_api.requests == []


def test_upload_and_run_need_a_gs_pipeline_root(rootless: Path, kfp_api: FakeKfp, capsys) -> None:
    common = ["--host", kfp_api.url, "--package", str(rootless)]
    assert main(["pipeline", "upload", *common]) == 1
    message = said(capsys)
    assert "no pipeline root, where a gs:// one is needed" in message
    assert "checkpoints" in message
    run = ["pipeline", "run", *common, "--data-uri", "gs://b/d"]
    assert main([*run, "--pipeline-root", "/tmp/kfp"]) == 1
    assert "pipeline root /tmp/kfp, where a gs:// one is needed" in said(capsys)
    assert kfp_api.requests == []
    # The run's own root moves the artifacts, not the checkpoints: their default was fixed
    # when the package was compiled without a root.
    run = [*run, "--pipeline-root", "gs://other/kfp", "--token", "t"]
    assert main(run) == 1
    assert "checkpoint_root '' is not a gs:// location" in said(capsys)
    assert kfp_api.requests == []
    assert main([*run, "--arg", "checkpoint_root=gs://other/kfp/checkpoints"]) == 0
    (created,) = [r for r in kfp_api.requests if r.path == "/apis/v2beta1/runs"]
    config = json.loads(created.body)["runtime_config"]
    assert config["pipeline_root"] == "gs://other/kfp"
    assert config["parameters"]["checkpoint_root"] == "gs://other/kfp/checkpoints"


def test_upload_and_run_refuse_a_nonconforming_package(
    nonconforming: Path, kfp_api: FakeKfp, capsys
) -> None:
    common = ["--host", kfp_api.url, "--package", str(nonconforming)]
    assert main(["pipeline", "upload", *common]) == 1
    assert "- conformance: [display-name]" in said(capsys)
    assert main(["pipeline", "run", *common, "--data-uri", "gs://b/d"]) == 1
    assert "- conformance: [display-name]" in said(capsys)
    assert kfp_api.requests == []


def test_run_and_upload_need_an_endpoint_and_known_arguments(ready: Path, capsys) -> None:
    assert main(["pipeline", "upload", "--package", str(ready)]) == 2
    assert "no KFP endpoint" in said(capsys)
    run = ["pipeline", "run", "--package", str(ready)]
    assert main([*run, "--data-uri", "gs://b/d", "--arg", "epochs=3"]) == 2
    assert "no parameter epochs" in said(capsys)
    assert main([*run, "--arg", "max_epochs=3"]) == 2
    assert "required parameter(s) not given: data_uri" in said(capsys)
    assert parse_arguments(["max_epochs=3", "variants=[baseline]", "gpu_type=nvidia-l4"]) == {
        "max_epochs": 3,
        "variants": ["baseline"],
        "gpu_type": "nvidia-l4",
    }
    with pytest.raises(ConfigError, match="expected name=value"):
        parse_arguments(["max_epochs"])
    with pytest.raises(ConfigError, match="no parameter epochs"):
        check_arguments(ready, {"data_uri": "gs://b/d", "epochs": 3})
    check_arguments(ready, {"data_uri": "gs://b/d", "max_epochs": 3})


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["flag", "KFP_TOKEN", "token file"])
def test_upload_sends_the_bearer_token_of_the_first_source_given(
    source: str,
    ready: Path,
    kfp_api: FakeKfp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    caplog,
) -> None:
    """--token, else KFP_TOKEN, else the service-account token file: lower sources are set
    too, and must lose."""
    token_file = tmp_path / "sa-token"
    token_file.write_text("token-from-file\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    flags = []
    if source in ("flag", "KFP_TOKEN"):
        monkeypatch.setenv("KFP_TOKEN", "token-from-env")
    if source == "flag":
        flags = ["--token", "token-from-flag"]
    expected = {"flag": "token-from-flag", "KFP_TOKEN": "token-from-env"}.get(
        source, "token-from-file"
    )
    kfp_api.token = expected
    upload = ["pipeline", "upload", "--host", kfp_api.url, "--package", str(ready), *flags]
    assert main(upload) == 0
    assert main(upload) == 0  # the name exists now: a new version
    assert kfp_api.authorizations() == {f"Bearer {expected}"}
    paths = [r.path for r in kfp_api.requests if r.method == "POST"]
    assert paths == ["/apis/v2beta1/pipelines/upload", "/apis/v2beta1/pipelines/upload_version"]
    out = said(capsys)
    assert "uploaded new pipeline danq (pipeline-1)" in out
    assert "uploaded version sha256-" in out
    described = {"flag": "--token", "KFP_TOKEN": "KFP_TOKEN"}.get(source, str(token_file))
    assert f"authenticated by {described}" in out or f"token {described}" in out
    for token in ("token-from-flag", "token-from-env", "token-from-file"):
        assert token not in out and token not in caplog.text


def test_run_sends_the_token_with_every_call(
    ready: Path, kfp_api: FakeKfp, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "run-token")
    kfp_api.token = "run-token"
    run = ["pipeline", "run", "--host", kfp_api.url, "--package", str(ready)]
    assert main([*run, "--data-uri", "gs://b/d", "--arg", "max_epochs=2"]) == 0
    assert "started run run-1 in experiment danq" in said(capsys)
    assert kfp_api.authorizations() == {"Bearer run-token"}
    (created,) = [r for r in kfp_api.requests if r.path == "/apis/v2beta1/runs"]
    parameters = json.loads(created.body)["runtime_config"]["parameters"]
    assert parameters == {"data_uri": "gs://b/d", "max_epochs": 2}


def test_without_a_token_multi_user_kubeflow_refuses_with_a_hint(
    ready: Path, kfp_api: FakeKfp, capsys
) -> None:
    kfp_api.token = "needed"
    upload = ["pipeline", "upload", "--host", kfp_api.url, "--namespace", PROFILE]
    assert main([*upload, "--package", str(ready)]) == 1
    message = said(capsys)
    assert "authenticated by no token" in message
    assert "the KFP API answered 401 Unauthorized: multi-user Kubeflow needs a bearer token" in (
        message
    )
    assert kfp_api.authorizations() == {None}


def test_a_missing_or_empty_token_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert credentials().source == "no token"  # kfp's default path does not exist here
    missing = tmp_path / "missing"
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(missing))
    with pytest.raises(ConfigError, match=f"KF_PIPELINES_SA_TOKEN_PATH={missing}: no token"):
        credentials()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(empty))
    with pytest.raises(ConfigError, match="token file is empty"):
        credentials()
    assert credentials("s3cret").token == "s3cret"
    assert "s3cret" not in repr(credentials("s3cret"))

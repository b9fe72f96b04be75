"""The project's images: references, commit tags, placeholders, and scripts/build_images.sh.

Tags come from a real git repository made in a temporary folder. The build script runs for
real with a stand-in `docker` on PATH that records its arguments (there is no Docker engine
here): the test reads back the exact build and push commands and the printed compile line.
"""

# No `from __future__ import annotations`: kfp reads the component signatures below.
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

import components
from danq.cli.main import main
from danq.errors import ConfigError
from danq.kfp import images
from danq.kfp.images import (
    DEFAULT_IMAGES,
    PLACEHOLDER_REGISTRY,
    UNBUILT_TAG,
    PipelineImages,
    build_plan,
    commit_tag,
    image_ref,
    pinned_version,
    pipeline_images,
    placeholder_images,
    resolve_tag,
)

CHECKOUT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REGISTRY = "registry.example/team/danq"
GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *GIT_IDENTITY, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed git checkout holding the build script, the Dockerfiles and pyproject."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "checkout"
    for relative in ("scripts/build_images.sh", "pyproject.toml", *map(str, dockerfiles())):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CHECKOUT / relative, root / relative)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "images")
    return root


def dockerfiles() -> list[Path]:
    return [image.dockerfile for image in images.IMAGES.values()]


def test_three_images_each_with_its_dockerfile() -> None:
    assert {kind: i.name for kind, i in images.IMAGES.items()} == {
        "gpu": "danq-gpu",
        "cpu": "danq-cpu",
        "mlflow": "danq-mlflow",
    }
    for path in dockerfiles():
        assert (CHECKOUT / path).is_file(), path
    assert image_ref(REGISTRY, "gpu", "git-0123456789ab") == f"{REGISTRY}/danq-gpu:git-0123456789ab"
    assert image_ref("localhost:5000/danq", "cpu", "v1") == "localhost:5000/danq/danq-cpu:v1"


@pytest.mark.parametrize(
    ("registry", "kind", "tag", "message"),
    [
        (REGISTRY, "tpu", "v1", "image 'tpu': unknown"),
        (REGISTRY, "gpu", "-v1", "not a valid tag"),
        (REGISTRY, "gpu", "a:b", "not a valid tag"),
        (REGISTRY, "gpu", "x" * 129, "not a valid tag"),
        ("https://registry.example/danq", "gpu", "v1", "without scheme or tag"),
        ("registry.example/Danq", "gpu", "v1", "without scheme or tag"),
        ("registry.example/danq:v1", "gpu", "v1", "without scheme or tag"),
    ],
)
def test_bad_references_are_refused(registry: str, kind: str, tag: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        image_ref(registry, kind, tag)


def test_the_default_compile_names_unbuilt_placeholders() -> None:
    """Independent of the commit, so the committed YAML stays a reproducible compile."""
    assert DEFAULT_IMAGES == PipelineImages(
        gpu=f"{PLACEHOLDER_REGISTRY}/danq-gpu:{UNBUILT_TAG}",
        cpu=f"{PLACEHOLDER_REGISTRY}/danq-cpu:{UNBUILT_TAG}",
    )
    assert components.DEFAULT_GPU_IMAGE == DEFAULT_IMAGES.gpu
    assert components.DEFAULT_CPU_IMAGE == DEFAULT_IMAGES.cpu


def test_commit_tag_names_the_head_commit_of_a_clean_checkout(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert commit_tag(repo) == f"git-{head[:12]}"
    assert resolve_tag(repo, None) == commit_tag(repo)
    (repo / "notes.txt").write_text("x")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "notes")
    assert commit_tag(repo) == f"git-{git(repo, 'rev-parse', 'HEAD')[:12]}" != f"git-{head[:12]}"


def test_a_dirty_tree_has_no_commit_tag_but_takes_an_explicit_one(repo: Path) -> None:
    dockerfile = repo / "infra" / "docker" / "Dockerfile.cpu"
    dockerfile.write_text(dockerfile.read_text() + "# changed\n")
    with pytest.raises(ConfigError, match=r"uncommitted changes \(infra/docker/Dockerfile.cpu\)"):
        commit_tag(repo)
    assert resolve_tag(repo, "dev-1") == "dev-1"
    git(repo, "checkout", "-q", "--", ".")
    (repo / "src.py").write_text("untracked, but a build would copy it")
    with pytest.raises(ConfigError, match=r"uncommitted changes \(src.py\)"):
        commit_tag(repo)


def test_no_git_checkout_has_no_commit_tag(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(ConfigError, match="not a git checkout.*give an image tag"):
        commit_tag(tmp_path)
    assert images.revision(tmp_path) is None
    assert resolve_tag(tmp_path, "v2") == "v2"


def test_pipeline_images_from_registry_and_tag(repo: Path) -> None:
    assert pipeline_images(repo, None, None) == DEFAULT_IMAGES
    tagged = pipeline_images(repo, REGISTRY, "v3")
    assert tagged == PipelineImages(gpu=f"{REGISTRY}/danq-gpu:v3", cpu=f"{REGISTRY}/danq-cpu:v3")
    assert pipeline_images(repo, REGISTRY, None).cpu == f"{REGISTRY}/danq-cpu:{commit_tag(repo)}"
    with pytest.raises(ConfigError, match="given without an image registry"):
        pipeline_images(repo, None, "v3")
    with pytest.raises(ConfigError, match="the placeholder of the default compile"):
        pipeline_images(repo, PLACEHOLDER_REGISTRY + "/", "v3")
    with pytest.raises(ConfigError, match="reserved"):
        pipeline_images(repo, REGISTRY, UNBUILT_TAG)


def echo(text: str) -> str:
    return text


def compile_with(tmp_path: Path, gpu: str, cpu: str) -> Path:
    """A two-step pipeline on these images, compiled by kfp."""

    @dsl.pipeline(name="two-images")
    def two_images(text: str):
        first = dsl.component(echo, base_image=gpu, install_kfp_package=False)(text=text)
        dsl.component(echo, base_image=cpu, install_kfp_package=False)(text=first.output)

    out = tmp_path / "two.yaml"
    compiler.Compiler().compile(two_images, str(out))
    return out


def test_placeholder_images_lists_the_unbuilt_ones_of_a_compiled_pipeline(tmp_path: Path) -> None:
    built = f"{REGISTRY}/danq-cpu:git-0123456789ab"
    assert placeholder_images(compile_with(tmp_path, DEFAULT_IMAGES.gpu, built)) == [
        DEFAULT_IMAGES.gpu
    ]
    assert placeholder_images(compile_with(tmp_path, built, built)) == []
    # The placeholder registry with any tag, and any registry's `unbuilt`.
    old = f"{PLACEHOLDER_REGISTRY}/danq-gpu:0.1.0"
    unbuilt = f"{REGISTRY}/danq-gpu:{UNBUILT_TAG}"
    assert placeholder_images(compile_with(tmp_path, old, unbuilt)) == sorted([old, unbuilt])
    with pytest.raises(ConfigError, match="not a compiled pipeline"):
        placeholder_images(CHECKOUT / "pyproject.toml")


def test_mlflow_image_is_also_tagged_with_the_pinned_mlflow(repo: Path) -> None:
    """infra/k8s/mlflow pulls the server by the MLflow version the clients pin."""
    kustomization = yaml.safe_load((CHECKOUT / "infra/k8s/mlflow/kustomization.yaml").read_text())
    (pulled,) = kustomization["images"]
    plan = build_plan(repo, REGISTRY, "v4")
    mlflow = {b.kind: b for b in plan.builds}["mlflow"]
    assert mlflow.refs == [
        f"{REGISTRY}/danq-mlflow:v4",
        f"{REGISTRY}/danq-mlflow:{pulled['newTag']}",
    ]
    assert pinned_version(repo, "mlflow") == pulled["newTag"]
    with pytest.raises(ConfigError, match="tensorflow-io is not pinned"):
        pinned_version(repo, "tensorflow-io")


# --- scripts/build_images.sh ---------------------------------------------------------------

STAND_IN_DOCKER = """#!/bin/bash
{ echo "cwd=$PWD"; printf '%s\\n' "$@"; echo "--end--"; } >> "$DOCKER_LOG"
"""


def tool_dir(folder: Path, docker: bool) -> Path:
    """A PATH with only what the script needs: danq, git, dirname and (when asked) a docker
    that records its calls, so "no docker" holds whatever the machine has installed."""
    bin_dir = Path(tempfile.mkdtemp(dir=folder))
    for tool in ("danq", "git", "dirname"):
        found = shutil.which(tool, path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    if docker:
        (bin_dir / "docker").write_text(STAND_IN_DOCKER)
        (bin_dir / "docker").chmod(0o755)
    return bin_dir


def build_images(
    repo: Path, tools: Path, docker: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Runs the checkout's build script from another folder; returns it and docker's calls,
    each as [cwd=..., arg, arg, ...]."""
    log = tools / "docker.log"
    log.unlink(missing_ok=True)
    environment = {
        "PATH": str(tool_dir(tools, docker)),
        "HOME": str(tools),
        "GIT_CEILING_DIRECTORIES": str(repo.parent),
        "DOCKER_LOG": str(log),
        **env,
    }
    done = subprocess.run(
        ["/bin/bash", str(repo / "scripts" / "build_images.sh")],
        cwd=tools,
        env=environment,
        capture_output=True,
        text=True,
    )
    calls: list[list[str]] = []
    current: list[str] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if line == "--end--":
            calls.append(current)
            current = []
        else:
            current.append(line)
    return done, calls


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


def test_build_script_builds_pushes_and_prints_the_compile_line(repo: Path, tools: Path) -> None:
    done, calls = build_images(repo, tools, REGISTRY=REGISTRY, PUSH="1", BUCKET="my-bucket")
    assert done.returncode == 0, done.stderr
    head = git(repo, "rev-parse", "HEAD")
    tag = f"git-{head[:12]}"
    builds = [c for c in calls if c[1] == "build"]
    pushes = [c for c in calls if c[1] == "push"]
    assert builds == [
        [
            f"cwd={repo}",
            "build",
            "--platform",
            "linux/amd64",
            "-f",
            f"infra/docker/Dockerfile.{kind}",
            "--label",
            f"org.opencontainers.image.revision={head}",
            "-t",
            f"{REGISTRY}/danq-{kind}:{tag}",
            *(
                ["-t", f"{REGISTRY}/danq-mlflow:{pinned_version(repo, 'mlflow')}"]
                if kind == "mlflow"
                else []
            ),
            ".",
        ]
        for kind in ("gpu", "cpu", "mlflow")
    ]
    assert [c[2] for c in pushes] == [
        f"{REGISTRY}/danq-gpu:{tag}",
        f"{REGISTRY}/danq-cpu:{tag}",
        f"{REGISTRY}/danq-mlflow:{tag}",
        f"{REGISTRY}/danq-mlflow:{pinned_version(repo, 'mlflow')}",
    ]
    assert calls.index(pushes[0]) > calls.index(builds[0])
    line = (
        f"danq pipeline compile --registry {REGISTRY} --tag {tag} "
        "--pipeline-root gs://my-bucket/kfp"
    )
    assert done.stdout.splitlines()[-1] == line


def test_build_script_without_push_only_builds(repo: Path, tools: Path) -> None:
    done, calls = build_images(repo, tools, REGISTRY=REGISTRY, TAG="release-7")
    assert done.returncode == 0, done.stderr
    assert [c[1] for c in calls] == ["build"] * 3
    assert all(
        f"{REGISTRY}/danq-{k}:release-7" in c for c, k in zip(calls, ("gpu", "cpu", "mlflow"))
    )
    assert "not pushed" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("--tag release-7 --pipeline-root gs://BUCKET/kfp")


def test_build_script_refuses_a_dirty_tree_unless_given_a_tag(repo: Path, tools: Path) -> None:
    (repo / "infra" / "docker" / "Dockerfile.gpu").write_text("FROM scratch\n")
    done, calls = build_images(repo, tools, REGISTRY=REGISTRY)
    assert done.returncode == 2
    assert "uncommitted changes (infra/docker/Dockerfile.gpu)" in done.stderr
    assert calls == []
    # An explicit tag builds, and the label says the tree differed from its commit.
    done, calls = build_images(repo, tools, REGISTRY=REGISTRY, TAG="dev-1")
    assert done.returncode == 0, done.stderr
    head = git(repo, "rev-parse", "HEAD")
    assert f"org.opencontainers.image.revision={head}-dirty" in calls[0]


@pytest.mark.parametrize(
    ("docker", "env", "message"),
    [
        (True, {}, "no REGISTRY"),
        (False, {"REGISTRY": REGISTRY}, "docker not found"),
        (True, {"REGISTRY": "https://registry.example"}, "without scheme or tag"),
    ],
)
def test_build_script_errors(
    repo: Path, tools: Path, docker: bool, env: dict[str, str], message: str
) -> None:
    done, calls = build_images(repo, tools, docker=docker, **env)
    assert done.returncode == 2
    assert message in done.stderr
    assert calls == []


def test_the_printed_compile_line_compiles_with_the_built_images(
    repo: Path, tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DANQ_REGISTRY", raising=False)
    monkeypatch.delenv("DANQ_IMAGE_TAG", raising=False)
    done, calls = build_images(repo, tools, REGISTRY=REGISTRY, BUCKET="b")
    assert done.returncode == 0, done.stderr
    command = shlex.split(done.stdout.splitlines()[-1])
    assert command[:3] == ["danq", "pipeline", "compile"]
    out = tmp_path / "cluster.yaml"
    monkeypatch.chdir(CHECKOUT)
    assert main([*command[1:], "--out", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    executors = spec["deploymentSpec"]["executors"].values()
    used = {e["container"]["image"] for e in executors if "container" in e}
    built = {c[c.index("-t") + 1] for c in calls}
    assert used == {r for r in built if "/danq-gpu:" in r or "/danq-cpu:" in r}
    assert spec["defaultPipelineRoot"] == "gs://b/kfp"
    assert placeholder_images(out) == []

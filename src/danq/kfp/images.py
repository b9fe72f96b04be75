"""The project's container images: where they are defined, how they are tagged, and which
references in a compiled pipeline are placeholders.

infra/docker/ holds three Dockerfiles: the GPU image (the pipeline steps on GPU nodes), the
CPU image (the other steps) and the MLflow server of infra/k8s/mlflow. They are listed once,
here: the build script (scripts/build_images.sh, `make images`) gets its plan from
`build_plan` through `danq pipeline images`, and `danq pipeline compile` gets the pipeline's
two images from `pipeline_images`, so the script and the compile agree on every reference.

Images built for a cluster are tagged from the git commit of the checkout (`commit_tag`): a
new commit gives new tags, so neither the nodes' image cache nor KFP's step cache can serve
code older than the compiled pipeline. A tag is refused on a dirty work tree, whose content no
commit names, unless an explicit tag is given.

The committed pipelines/danq_pipeline.yaml is the reproducible default compile: its images are
the placeholder registry with the tag `unbuilt`, independent of the commit, and
`placeholder_images` lets upload and run refuse it before contacting a cluster.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from danq.errors import ConfigError

PLACEHOLDER_REGISTRY = "us-docker.pkg.dev/my-gcp-project/danq"
UNBUILT_TAG = "unbuilt"  # the tag of the default compile: no image was built for it
COMMIT_TAG_PREFIX = "git-"
COMMIT_TAG_HEX = 12
# The non-root user (uid and gid) the step images run as: the USER of infra/docker/Dockerfile.cpu
# and Dockerfile.gpu, and what a `--non-root` compile sets as runAsUser / runAsGroup.
IMAGE_UID = 1000
DOCKERFILES = Path("infra") / "docker"
OCI_REVISION_LABEL = "org.opencontainers.image.revision"
# Docker's grammar: a tag is up to 128 word characters, dots and dashes, not starting with
# either; a registry is a host (optionally with a port) and lowercase path components.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
REGISTRY_PATTERN = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*")


@dataclass(frozen=True)
class Image:
    kind: str
    dockerfile: Path  # relative to the repository root, which is the build context
    name: str  # repository name under the registry
    # A package whose pyproject pin also tags the image: infra/k8s/mlflow pulls the MLflow
    # server by the MLflow version, so server and clients agree.
    version_of: str | None = None


IMAGES: dict[str, Image] = {
    image.kind: image
    for image in (
        Image("gpu", DOCKERFILES / "Dockerfile.gpu", "danq-gpu"),
        Image("cpu", DOCKERFILES / "Dockerfile.cpu", "danq-cpu"),
        Image("mlflow", DOCKERFILES / "Dockerfile.mlflow", "danq-mlflow", version_of="mlflow"),
    )
}


@dataclass(frozen=True)
class PipelineImages:
    """The images the pipeline's tasks run in: steps on GPU nodes on gpu, the others on cpu."""

    gpu: str
    cpu: str


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.fullmatch(tag):
        raise ConfigError(
            f"image tag {tag!r}: not a valid tag (up to 128 letters, digits, '_', '.', '-', "
            "not starting with '.' or '-')"
        )
    return tag


def check_registry(registry: str) -> str:
    if not REGISTRY_PATTERN.fullmatch(registry):
        raise ConfigError(
            f"image registry {registry!r}: expected a host and path without scheme or tag, "
            "e.g. us-docker.pkg.dev/PROJECT/danq"
        )
    return registry


def image_ref(registry: str, kind: str, tag: str) -> str:
    """The reference of image `kind` (gpu, cpu, mlflow) in registry with tag."""
    if kind not in IMAGES:
        raise ConfigError(f"image {kind!r}: unknown (known: {', '.join(IMAGES)})")
    return f"{check_registry(registry).rstrip('/')}/{IMAGES[kind].name}:{check_tag(tag)}"


DEFAULT_IMAGES = PipelineImages(
    gpu=image_ref(PLACEHOLDER_REGISTRY, "gpu", UNBUILT_TAG),
    cpu=image_ref(PLACEHOLDER_REGISTRY, "cpu", UNBUILT_TAG),
)


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{root}: git is not installed, so no commit names the images: give an image tag"
        ) from None
    except subprocess.CalledProcessError as err:
        raise ConfigError(
            f"{root}: not a git checkout with a commit ({err.stderr.strip()}), so no commit "
            "names the images: give an image tag"
        ) from None
    return done.stdout


def head_commit(root: Path) -> str:
    """The full hash of the checkout's HEAD commit."""
    return _git(root, "rev-parse", "--verify", "HEAD").strip()


def dirty_paths(root: Path) -> list[str]:
    """Changed tracked files and untracked, not ignored ones: anything a build would copy
    that the commit does not hold."""
    return [line[3:] for line in _git(root, "status", "--porcelain").splitlines()]


def commit_tag(root: Path) -> str:
    """`git-` and 12 hex digits of HEAD, refused when the work tree differs from HEAD."""
    commit = head_commit(root)
    dirty = dirty_paths(root)
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise ConfigError(
            f"{root}: the work tree has uncommitted changes ({shown}), so the commit tag would "
            "name images built from other code: commit them, or give an image tag"
        )
    return COMMIT_TAG_PREFIX + commit[:COMMIT_TAG_HEX]


def resolve_tag(root: Path, tag: str | None) -> str:
    """tag when given (checked), else the commit tag of root."""
    return check_tag(tag) if tag else commit_tag(root)


def revision(root: Path) -> str | None:
    """The commit for the images' OCI revision label: HEAD, marked `-dirty` when the work tree
    differs from it; None outside a git checkout."""
    try:
        commit = head_commit(root)
        return commit + ("-dirty" if dirty_paths(root) else "")
    except ConfigError:
        return None


def pipeline_images(root: Path, registry: str | None, tag: str | None) -> PipelineImages:
    """The images of a compile: with a registry, its images tagged `tag` or the commit tag of
    root; with neither, the placeholder default (reproducible, refused by upload and run)."""
    if not registry:
        if tag:
            raise ConfigError(f"image tag {tag!r} given without an image registry")
        return DEFAULT_IMAGES
    if registry.rstrip("/") == PLACEHOLDER_REGISTRY:
        raise ConfigError(
            f"image registry {registry}: the placeholder of the default compile; give the "
            "registry the images were pushed to"
        )
    tag = resolve_tag(root, tag)
    if tag == UNBUILT_TAG:
        raise ConfigError(f"image tag {tag!r}: reserved for the default compile's placeholders")
    return PipelineImages(gpu=image_ref(registry, "gpu", tag), cpu=image_ref(registry, "cpu", tag))


def pinned_version(root: Path, package: str) -> str:
    """The exact version pyproject.toml pins package to (`package==X`)."""
    pyproject = root / "pyproject.toml"
    try:
        dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as err:
        raise ConfigError(f"{pyproject}: cannot read project.dependencies ({err})") from None
    for spec in dependencies:
        name, sep, version = spec.partition("==")
        if sep and re.sub(r"\[.*\]", "", name).strip() == package:
            return version.strip()
    raise ConfigError(f"{pyproject}: {package} is not pinned with == in project.dependencies")


@dataclass(frozen=True)
class Build:
    kind: str
    dockerfile: Path
    refs: list[str]  # the first is the commit-tagged reference


@dataclass(frozen=True)
class BuildPlan:
    tag: str
    revision: str | None
    builds: list[Build]


def build_plan(root: Path, registry: str, tag: str | None = None) -> BuildPlan:
    """What `make images` builds: every image of IMAGES from root, tagged `tag` or the commit
    tag, the MLflow image also by its pinned version."""
    tag = resolve_tag(root, tag)
    builds = []
    for image in IMAGES.values():
        if not (root / image.dockerfile).is_file():
            raise ConfigError(f"{root / image.dockerfile}: no Dockerfile for image {image.kind}")
        refs = [image_ref(registry, image.kind, tag)]
        if image.version_of:
            refs.append(image_ref(registry, image.kind, pinned_version(root, image.version_of)))
        builds.append(Build(image.kind, image.dockerfile, refs))
    return BuildPlan(tag=tag, revision=revision(root), builds=builds)


def is_placeholder(ref: str) -> bool:
    return ref.startswith(PLACEHOLDER_REGISTRY + "/") or ref.endswith(":" + UNBUILT_TAG)


def container_images(package: str | Path) -> list[str]:
    """The images of a compiled pipeline YAML's executors, sorted, each once."""
    path = Path(package)
    try:
        spec = next(yaml.safe_load_all(path.read_text()))
        executors = spec["deploymentSpec"]["executors"]
    except (OSError, yaml.YAMLError, StopIteration, TypeError, KeyError) as err:
        raise ConfigError(f"{path}: not a compiled pipeline ({err})") from None
    return sorted({e["container"]["image"] for e in executors.values() if "container" in e})


def placeholder_images(package: str | Path) -> list[str]:
    """The images of a compiled pipeline that no one built: the placeholder registry's or
    tagged `unbuilt`. A cluster cannot pull them."""
    return [ref for ref in container_images(package) if is_placeholder(ref)]

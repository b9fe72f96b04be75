"""Container images: what cannot be built here is still checked against pyproject's pins."""

from __future__ import annotations

import re
import tomllib

from .conftest import REPO

DOCKER = REPO / "infra" / "docker"


def pinned(package: str) -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.split(r"[=<>\[]", d)[0] == package]
    return spec.split("==")[1]


def test_gpu_image_uses_the_pinned_tensorflow() -> None:
    text = (DOCKER / "Dockerfile.gpu").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert base == f"tensorflow/tensorflow:{pinned('tensorflow')}-gpu"


def test_images_install_this_repository_with_its_pins() -> None:
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    for name in ("Dockerfile.gpu", "Dockerfile.cpu"):
        text = (DOCKER / name).read_text()
        assert "COPY pyproject.toml" in text and "COPY src ./src" in text
        assert "pip install ." in text, name  # the pins come from pyproject, not the image
        assert "tensorflow-io" not in text
    cpu_base = re.findall(r"^FROM (\S+)", (DOCKER / "Dockerfile.cpu").read_text(), flags=re.M)
    assert cpu_base == ["python:3.11-slim"] and "3.11" in python

"""Fixtures of the promotion tests: a real `mlflow server`, and an address nobody listens on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def _import_keras() -> None:
    import keras  # noqa: F401
    import mlflow.keras  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mlflow_server) -> Iterator[str]:
    """A tracking server with a registry on 127.0.0.1; TensorFlow imports while it starts."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow"), while_starting=_import_keras) as uri:
        yield uri


@pytest.fixture
def dead_uri(free_port: int) -> str:
    """An http:// tracking URI where nothing listens: every call is refused."""
    return f"http://127.0.0.1:{free_port}"

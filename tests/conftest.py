"""Shared fixtures: a tiny synthetic DeepSEA-format data set and its shards, and real servers
on 127.0.0.1 (an `mlflow server`, gcp-storage-emulator) for tests that need them."""

from __future__ import annotations

import gzip
import http.server
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .deployed_registry import AuthServer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
TINY_SYNTH = dict(n_train=120, n_valid=40, n_test=40, seq_len=200, chunk_size=50)
SERVER_START_TIMEOUT_S = 90


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/valid/test.mat (+ metadata.json) with 240/80/80 sequences of 200 bp."""
    from danq.config import SynthConfig
    from danq.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tiny_data"), SynthConfig(**TINY_SYNTH), seed=3)


@pytest.fixture(scope="session")
def tiny_shards(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from danq.config import PrepareConfig
    from danq.data.shards import prepare_dataset

    out = tmp_path_factory.mktemp("tiny_shards")
    prepare_dataset(
        str(tiny_data), str(out), PrepareConfig(shard_size=70, chunk_size=33), progress=False
    )
    return out


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a refused address, or a server's)."""
    return unused_port()


@contextmanager
def running_mlflow_server(
    root: Path,
    while_starting: Callable[[], object] | None = None,
    artifacts: str | None = None,
    extra_args: Sequence[str] = (),
    backend_store_uri: str | None = None,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """Start `mlflow server` storing under root; yield its http:// URI; stop it on exit.

    Artifacts go through the server (--artifacts-destination: `artifacts`, default
    root/artifacts; a gs:// URI works against the emulator), as they do for a remote server,
    so clients need nothing but the URI. The backend store is `backend_store_uri`, default a
    SQLite file in root. `extra_args` are further `mlflow server` options, `env` further
    environment variables of the server. The server takes 10-30 s to start (imports,
    migrations): `while_starting` runs meanwhile, e.g. to import TensorFlow.
    """
    port = unused_port()
    exe = Path(sys.executable).with_name("mlflow")
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts or str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # No background job runner (GenAI scorers): one process less competing for the CPU.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
        start_new_session=True,  # its own process group: the CLI starts uvicorn as a child
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mlflow server did not start:\n{tail}")
            time.sleep(0.3)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def mlflow_server() -> Callable[..., AbstractContextManager[str]]:
    """running_mlflow_server, for tests that start their own server (see its docstring)."""
    return running_mlflow_server


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """The registry as deployed (infra/k8s/mlflow): `mlflow server` with the Deployment's own
    options (basic-auth with default_permission READ, proxied artifacts, its worker count) on
    a throwaway PostgreSQL cluster holding the tracking and the user database. Shared by the
    session: each test uses its own model, experiment and user names."""
    from .deployed_registry import (
        AUTH_DATABASE,
        TRACKING_DATABASE,
        AuthServer,
        running_postgres,
        server_environment,
    )
    from .infra.manifests import server_behaviour_options, server_workers

    root = tmp_path_factory.mktemp("auth_registry")
    admin = ("admin", secrets.token_hex(12))
    with running_postgres(unused_port(), (TRACKING_DATABASE, AUTH_DATABASE)) as cluster:
        with running_mlflow_server(
            root,
            artifacts=str(root / "artifacts"),
            extra_args=server_behaviour_options(with_auth=True),
            backend_store_uri=cluster.uri(TRACKING_DATABASE),
            env=server_environment(root, cluster, admin),
            workers=server_workers(),
        ) as uri:
            yield AuthServer(uri, admin, root / "artifacts", cluster)


@contextmanager
def running_gcs_emulator(bucket: str) -> Iterator[str]:
    """gcp-storage-emulator as a separate process (as a remote GCS is to every client,
    subprocesses included); STORAGE_EMULATOR_HOST points at it; the bucket exists."""
    port = unused_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = subprocess.Popen(
        [str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.2)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        gcs.Client(project="danq-test", credentials=AnonymousCredentials()).create_bucket(bucket)
        import fsspec

        fsspec.filesystem("gs").invalidate_cache()
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def gcs_emulator() -> Callable[[str], AbstractContextManager[str]]:
    """running_gcs_emulator, for tests whose subprocesses also reach the bucket."""
    return running_gcs_emulator


@pytest.fixture(scope="module")
def gcs_bucket() -> Iterator[str]:
    """gs://danq-test on an in-process gcp-storage-emulator; gs:// paths resolve to it."""
    import gcsfs
    from gcp_storage_emulator.server import create_server

    port = unused_port()
    with pytest.MonkeyPatch.context() as patch:
        # The emulator prints a traceback whenever the client drops a connection early.
        patch.setattr(http.server.HTTPServer, "handle_error", lambda *args: None)
        server = create_server("127.0.0.1", port, in_memory=True, default_bucket="danq-test")
        server.start()
        patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        gcsfs.GCSFileSystem.clear_instance_cache()  # a cached client would target another server
        try:
            yield "gs://danq-test"
        finally:
            gcsfs.GCSFileSystem.clear_instance_cache()
            server.stop()


def write_fasta_file(path: Path, records: dict[str, str], width: int = 25) -> Path:
    """records as FASTA, `width` bases per line, gzip-compressed when path ends in .gz."""
    text = "".join(
        f">{rid} some description\n"
        + "".join(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        for rid, seq in records.items()
    )
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="session")
def write_fasta() -> Callable[..., Path]:
    """write_fasta_file: a FASTA file of the given records."""
    return write_fasta_file

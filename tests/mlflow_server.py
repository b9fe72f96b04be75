"""A real `mlflow server` on 127.0.0.1 for registry tests (SQLite store, proxied artifacts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .gcs_emulator import free_port

START_TIMEOUT_S = 90


@contextmanager
def mlflow_server(
    root: Path,
    while_starting: Callable[[], object] | None = None,
    artifacts: str | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start a tracking server storing under root; yield its http:// URI; stop it on exit.

    Artifacts go through the server (--artifacts-destination: `artifacts`, default
    root/artifacts; a gs:// URI works against the emulator), as they do for a remote server,
    so clients need nothing but the URI. `extra_args` are further `mlflow server` options.
    The server takes 10-30 s to start (imports, SQLite migrations): `while_starting` runs
    meanwhile, e.g. to import TensorFlow.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts or str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # No background job runner (GenAI scorers): one process less competing for the CPU.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its own process group: the CLI starts uvicorn as a child
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + START_TIMEOUT_S
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

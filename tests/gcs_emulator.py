"""A real gcp-storage-emulator on 127.0.0.1 for gs:// tests (no mocks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """Start the emulator, point clients at it (STORAGE_EMULATOR_HOST), create a bucket."""
    port = free_port()
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

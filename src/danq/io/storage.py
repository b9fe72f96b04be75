"""Local paths and gs:// URIs behind one small interface.

Local paths use the OS directly (fast, atomic renames); gs:// goes through fsspec/gcsfs,
which honours STORAGE_EMULATOR_HOST so the same code runs against gcp-storage-emulator.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO

REMOTE_SCHEMES = ("gs://",)


def cache_dir() -> Path:
    """Where remote inputs are staged locally: DANQ_CACHE_DIR, default ~/.cache/danq."""
    return Path(os.environ.get("DANQ_CACHE_DIR", Path.home() / ".cache" / "danq"))


def is_remote(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith(REMOTE_SCHEMES)


def _fs(uri: str):
    import logging

    import fsspec

    # gcsfs logs a warning per bucket when no Application Default Credentials exist
    # (emulator, Workload Identity warm-up); real failures still raise.
    logging.getLogger("gcsfs").setLevel(logging.ERROR)
    # gcsfs otherwise probes every bucket for hierarchical namespaces (an extra request each).
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

    return fsspec.filesystem(uri.split("://", 1)[0])


def join(base: str | os.PathLike[str], *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def exists(uri: str | os.PathLike[str]) -> bool:
    uri = str(uri)
    return _fs(uri).exists(uri) if is_remote(uri) else os.path.exists(uri)


def open_binary(uri: str | os.PathLike[str], mode: str = "rb") -> IO[bytes]:
    uri = str(uri)
    if is_remote(uri):
        return _fs(uri).open(uri, mode)
    return open(uri, mode)  # noqa: SIM115 - caller owns the handle


def makedirs(uri: str | os.PathLike[str]) -> None:
    uri = str(uri)
    if is_remote(uri):
        return  # object stores have no folders
    os.makedirs(uri, exist_ok=True)


def listdir(uri: str | os.PathLike[str]) -> list[str]:
    uri = str(uri)
    if is_remote(uri):
        return sorted(p.rsplit("/", 1)[-1] for p in _fs(uri).ls(uri, detail=False))
    return sorted(os.listdir(uri))


def remove_tree(uri: str | os.PathLike[str]) -> None:
    uri = str(uri)
    if is_remote(uri):
        fs = _fs(uri)
        if fs.exists(uri):
            fs.rm(uri, recursive=True)
    elif os.path.isdir(uri):
        shutil.rmtree(uri)
    elif os.path.exists(uri):
        os.remove(uri)


def info(uri: str) -> dict:
    """Size and version fields of a remote object (what identifies its content)."""
    details = _fs(uri).info(uri)
    return {k: details.get(k) for k in ("size", "etag", "generation", "md5Hash")}


def upload(local: str | os.PathLike[str], uri: str) -> None:
    _fs(uri).put(str(local), uri, recursive=os.path.isdir(local))


def download(uri: str, local: str | os.PathLike[str]) -> None:
    _fs(uri).get(uri, str(local), recursive=True)

"""Download, verify and unpack the DeepSEA training bundle (`danq data fetch-deepsea`).

The bundle is a few GB served over plain HTTP, so the download resumes with HTTP Range requests
after a dropped connection (within a run by retrying, across runs from the kept `.part` file),
its size and checksums are checked, and nothing reaches `dest` until the archive has been
unpacked in full and found to hold train.mat, valid.mat and test.mat.

Checksums. Plain HTTP can be altered in transit, and the DeepSEA site publishes no checksum
that this project could pin. So a pins file (JSON, URL -> {"sha256", "size"}; the CLI's is
fetch-pins.json, committed) records the archive of the first download that was verified or
explicitly trusted, and every later download of that URL must match it. A plain http:// URL
with neither a checksum (given or pinned) nor `trust_first_download` is refused before any
byte is fetched; over https:// the first download is pinned on trust in TLS.

Unpacking streams the archive once, member by member, and refuses absolute or `..` paths,
links that point outside, device files, more than `max_members` members and more than
`max_unpacked_bytes` in all (a tar bomb fails before it fills the disk); the `data` extraction
filter (Python 3.11.4+, which pyproject.toml requires) refuses whatever that check might miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import requests
from tqdm import tqdm

from danq.artifacts import fsync_file, publish_dir, write_json
from danq.errors import FetchError
from danq.redaction import redact_text, redact_uri

DEEPSEA_BUNDLE_URL = "http://deepsea.princeton.edu/media/code/deepsea_train_bundle.v0.9.tar.gz"
BUNDLE_FILES = ("train.mat", "valid.mat", "test.mat")
DOWNLOAD_DIR = ".download"
CHUNK_SIZE = 1 << 20
RETRY_BASE_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 60.0

# The bundle holds 3 files, about 20 GB unpacked (train.mat is 17.6 GB of HDF5).
MAX_MEMBERS = 100
MAX_UNPACKED_BYTES = 64 << 30

_HEX_DIGEST_LENGTHS = {"md5": 32, "sha256": 64}
_TRANSIENT_REQUEST_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class _TransientError(Exception):
    """A failure worth retrying: dropped connection, timeout, HTTP 5xx or a short body."""


class _HashedFile:
    """A file written by appending (the `.part` download), with running digests of its bytes."""

    def __init__(self, path: Path, algorithms: Iterable[str]) -> None:
        self.path = path
        self.algorithms = tuple(algorithms)
        self._reset_digests()

    def _reset_digests(self) -> None:
        self.digests = {name: hashlib.new(name) for name in self.algorithms}
        self.hashed_bytes = 0

    def _hash(self, chunk: bytes) -> None:
        for digest in self.digests.values():
            digest.update(chunk)
        self.hashed_bytes += len(chunk)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def sync_digests(self) -> int:
        """Make the digests cover the bytes on disk (left by an earlier attempt or run); return
        its size."""
        size = self.size()
        if self.hashed_bytes != size:
            self._reset_digests()
            with self.path.open("rb") as handle:
                while chunk := handle.read(CHUNK_SIZE):
                    self._hash(chunk)
        return size

    def truncate(self) -> None:
        self.path.write_bytes(b"")
        self._reset_digests()

    def append(self, chunks: Iterable[bytes], bar: tqdm) -> None:
        with self.path.open("ab") as handle:
            for chunk in chunks:
                handle.write(chunk)
                self._hash(chunk)
                bar.update(len(chunk))

    def hexdigests(self) -> dict[str, str]:
        return {name: digest.hexdigest() for name, digest in self.digests.items()}


@dataclass(frozen=True)
class FetchedBundle:
    """Where the bundle's files went, and the archive they came from."""

    dest: Path
    files: tuple[Path, ...]
    archive: Path
    archive_sha256: str
    archive_kept: bool
    pinned_now: bool  # this download's sha256 and size were written to the pins file


@contextmanager
def _redacted_errors(url: str) -> Iterator[None]:
    """FetchErrors raised inside, with any password or token of url masked (danq.redaction)."""
    try:
        yield
    except FetchError as err:
        raise FetchError(redact_text(str(err), [url])) from None


def fetch_deepsea(
    url: str = DEEPSEA_BUNDLE_URL,
    dest: Path = Path("data"),
    *,
    sha256: str | None = None,
    md5: str | None = None,
    expected_size: int | None = None,
    keep_archive: bool = False,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 5,
    pins: Path | None = None,
    trust_first_download: bool = False,
    max_members: int = MAX_MEMBERS,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
) -> FetchedBundle:
    """Download the bundle at `url`, verify it, and place train/valid/test.mat in `dest`.

    `retries` bounds the attempts in a row that make no progress; `timeout` applies to the
    connection and to each read. `pins`: the pins file (see the module doc). Raises
    FetchError on any failure; its message, the warnings and the pins file show `url` with
    any password or token in it redacted (danq.redaction).
    """
    dest = Path(dest)
    with _redacted_errors(url):
        expected_digests = {
            name: _normalize_digest(name, value)
            for name, value in (("sha256", sha256), ("md5", md5))
            if value is not None
        }
        pin_key = redact_uri(url)  # a signed URL's token is no part of what it names
        pinned = read_pins(pins).get(pin_key) if pins is not None else None
        if pinned is not None:
            if expected_digests.get("sha256", pinned["sha256"]) != pinned["sha256"]:
                raise FetchError(
                    f"{url}: --sha256 {expected_digests['sha256']} differs from the sha256 "
                    f"pinned in {pins} ({pinned['sha256']}); remove the pin only if the archive "
                    "was replaced on purpose"
                )
            expected_digests["sha256"] = pinned["sha256"]
            expected_size = pinned["size"] if expected_size is None else expected_size
        if not expected_digests and urlparse(url).scheme == "http" and not trust_first_download:
            raise FetchError(
                f"{url}: plain HTTP without a checksum: give the archive's --sha256 (or --md5), "
                "an https:// URL, or --trust-first-download to accept this download and pin its "
                f"sha256{f' in {pins}' if pins is not None else ''} for every later one"
            )
        download_dir = dest / DOWNLOAD_DIR
        archive = download_dir / _archive_name(url)
        download_dir.mkdir(parents=True, exist_ok=True)
        # sha256 is always computed so that it can be reported and pinned next time.
        algorithms = {"sha256", *expected_digests}
        try:
            if archive.exists():
                print(f"Reusing {archive} (delete it to download again)")
                download = _HashedFile(archive, algorithms)
                download.sync_digests()
                _verify(download, str(archive), expected_size, expected_digests)
            else:
                download = _HashedFile(archive.with_name(archive.name + ".part"), algorithms)
                with requests.Session() as session:
                    _download(session, url, download, expected_size, timeout, retries, progress)
                _verify(download, url, expected_size, expected_digests)
                download.path.replace(archive)
            archive_size = archive.stat().st_size  # for the pin; the archive may be deleted below
            try:
                files = unpack_bundle(archive, dest, max_members, max_unpacked_bytes)
            finally:
                if not keep_archive:
                    archive.unlink(missing_ok=True)
        finally:
            # Keep the folder only while it holds a partial download (to resume) or a kept archive.
            if download_dir.is_dir() and not any(download_dir.iterdir()):
                download_dir.rmdir()

        archive_sha256 = download.hexdigests()["sha256"]
        pin_now = pins is not None and pinned is None
        if pin_now:
            assert pins is not None
            write_pin(pins, pin_key, archive_sha256, archive_size)
        return FetchedBundle(
            dest=dest,
            files=tuple(files),
            archive=archive,
            archive_sha256=archive_sha256,
            archive_kept=keep_archive,
            pinned_now=pin_now,
        )


def read_pins(pins: Path) -> dict[str, dict[str, Any]]:
    """The pins file's URL -> {"sha256", "size"}; empty when the file does not exist."""
    if not pins.exists():
        return {}
    try:
        document = json.loads(pins.read_text(encoding="utf-8"))
        return {
            url: {"sha256": _normalize_digest("sha256", pin["sha256"]), "size": int(pin["size"])}
            for url, pin in document.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError, FetchError) as exc:
        raise FetchError(f"{pins}: not a pins file (URL -> sha256 and size): {exc}") from exc


def write_pin(pins: Path, url: str, sha256: str, size: int) -> None:
    document = {**read_pins(pins), url: {"sha256": sha256, "size": size}}
    write_json(pins, dict(sorted(document.items())), allow_nan=False)


def unpack_bundle(
    archive: Path,
    dest: Path,
    max_members: int = MAX_MEMBERS,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
) -> list[Path]:
    """Unpack `archive` into a staging folder beside `dest`, then put the three .mat files in
    place of `dest` as one folder (artifacts.publish_dir: renames), so that `dest` holds the
    old data set or the new one, never a mix; return their paths. Nothing is moved unless all
    three are present. `dest` may hold only the bundle's files and the download folder (kept):
    other files are refused up front rather than dropped or mixed with the new data."""
    others = sorted(
        entry.name
        for entry in (dest.iterdir() if dest.is_dir() else ())
        if entry.name not in (*BUNDLE_FILES, DOWNLOAD_DIR)
    )
    if others:
        raise FetchError(
            f"{dest}: holds files that are not part of the DeepSEA bundle ({', '.join(others)});"
            " the bundle replaces the folder as a whole: remove them or choose another destination"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Beside dest, so the final moves are renames on one filesystem (atomic, no copy).
    staging = Path(tempfile.mkdtemp(prefix=f".unpack-{dest.name}-", dir=dest.parent))
    try:
        unpacked = staging / "archive"
        _extract_safely(archive, unpacked, max_members, max_unpacked_bytes)
        root = _bundle_root(unpacked)
        missing = [name for name in BUNDLE_FILES if not _is_regular_file(root / name)]
        if missing:
            raise FetchError(
                f"{archive}: archive lacks {', '.join(missing)} "
                "(looked in its root and in its single top folder)"
            )
        release = staging / "release"
        release.mkdir()
        for name in BUNDLE_FILES:
            os.replace(root / name, release / name)
            fsync_file(release / name)
        if (dest / DOWNLOAD_DIR).is_dir():  # the same path again once release is dest
            os.replace(dest / DOWNLOAD_DIR, release / DOWNLOAD_DIR)
        publish_dir(release, dest, BUNDLE_FILES[-1])
        return [dest / name for name in BUNDLE_FILES]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def dvc_commands(dest: Path) -> list[str]:
    """The commands that put `dest` under DVC and record it in git."""
    dest = Path(dest)
    dvc_file = shlex.quote(f"{dest}.dvc")
    gitignore = shlex.quote(str(dest.parent / ".gitignore"))
    return [
        f"dvc add {shlex.quote(str(dest))}",
        f"git add {dvc_file} {gitignore} && git commit -m 'Add DeepSEA training data'",
        "dvc push",
    ]


def _normalize_digest(algorithm: str, value: str) -> str:
    digest = value.strip().lower()
    if not re.fullmatch(rf"[0-9a-f]{{{_HEX_DIGEST_LENGTHS[algorithm]}}}", digest):
        raise FetchError(
            f"{algorithm} checksum {value!r} is not {_HEX_DIGEST_LENGTHS[algorithm]} hex digits"
        )
    return digest


def _archive_name(url: str) -> str:
    name = PurePosixPath(urlparse(url).path).name
    if not name:
        raise FetchError(f"{url}: the URL names no file")
    return name


def _download(
    session: requests.Session,
    url: str,
    part: _HashedFile,
    expected_size: int | None,
    timeout: float,
    retries: int,
    progress: bool,
) -> None:
    """Download `url` into `part`, resuming and retrying until it is complete."""
    failures = 0
    while True:
        size_before = part.size()
        try:
            _download_attempt(session, url, part, expected_size, timeout, progress)
            return
        except _TransientError as exc:
            # Only attempts that add no bytes count against `retries`: a multi-GB download on a
            # flaky link may need many resumes, each of which gets further.
            failures = 0 if part.size() > size_before else failures + 1
            if failures > retries:
                raise FetchError(
                    f"{url}: giving up after {retries} retries ({exc}); "
                    f"rerun to resume from {part.path}"
                ) from exc
            delay = min(RETRY_BASE_DELAY_S * 2**failures, RETRY_MAX_DELAY_S)
            warning = f"warning: {url}: {exc}; retrying in {delay:.0f} s"
            print(redact_text(warning, [url]), file=sys.stderr)
            time.sleep(delay)


def _download_attempt(
    session: requests.Session,
    url: str,
    part: _HashedFile,
    expected_size: int | None,
    timeout: float,
    progress: bool,
) -> None:
    """One request: resume from the bytes already in `part` and stream the rest into it."""
    offset = part.sync_digests()
    # No compressed transfer: byte offsets and sizes must refer to the archive itself.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
            total = _remote_size(response, url, part, offset)
            if total is not None and expected_size is not None and total != expected_size:
                raise FetchError(
                    f"{url}: size mismatch: expected {expected_size} bytes, server reports {total}"
                )
            if response.status_code == 416:
                return  # the part already holds the whole file
            with tqdm(
                total=total,
                initial=part.size(),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.path.name.removesuffix(".part"),
                disable=not progress,
            ) as bar:
                part.append(response.iter_content(CHUNK_SIZE), bar)
    except _TRANSIENT_REQUEST_ERRORS as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:  # a malformed URL, too many redirects, ...
        raise FetchError(f"{url}: {exc}") from exc
    size = part.size()
    if total is not None and size < total:
        raise _TransientError(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        part.path.unlink()
        raise FetchError(f"{url}: size mismatch: server reported {total} bytes, got {size}")


def _remote_size(
    response: requests.Response, url: str, part: _HashedFile, offset: int
) -> int | None:
    """Check the response status, truncate `part` if the server restarts from zero, and return
    the size of the whole file (None when the server does not say)."""
    status = response.status_code
    if status == 416 and offset:
        total = _content_range_total(response.headers.get("Content-Range", ""))
        if total == offset:
            return total
        part.truncate()
        raise _TransientError(f"server refused to resume at byte {offset}; starting over")
    if status >= 500 or status == 429:
        raise _TransientError(f"HTTP {status} {response.reason}")
    if status >= 400:
        raise FetchError(f"{url}: HTTP {status} {response.reason}")
    if status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
        if not match or int(match[1]) != offset:
            raise FetchError(
                f"{url}: asked to resume at byte {offset}, server sent range {content_range!r}"
            )
        return None if match[2] == "*" else int(match[2])
    if status == 200:
        if offset:
            part.truncate()  # the server ignored the Range header and sends the whole file
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
    raise FetchError(f"{url}: unexpected HTTP {status} {response.reason}")


def _content_range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    return int(match[1]) if match else None


def _verify(
    download: _HashedFile, source: str, expected_size: int | None, expected_digests: dict[str, str]
) -> None:
    """Check size and checksums of the downloaded file; delete it if they are wrong, so that a
    rerun does not resume from bad bytes."""
    problems = []
    size = download.size()
    if expected_size is not None and size != expected_size:
        problems.append(f"size mismatch: expected {expected_size} bytes, got {size}")
    actual = download.hexdigests()
    for algorithm, expected in expected_digests.items():
        if actual[algorithm] != expected:
            problems.append(f"{algorithm} mismatch: expected {expected}, got {actual[algorithm]}")
    if problems:
        download.path.unlink(missing_ok=True)
        raise FetchError(f"{source}: {'; '.join(problems)}")


def _extract_safely(archive: Path, target: Path, max_members: int, max_unpacked_bytes: int) -> None:
    """Extract `archive` into `target` in one streaming pass, refusing unsafe members and
    archives over the caps (checked from each header, before the member is written)."""
    unpacked = 0
    try:
        # Stream mode: the archive is decompressed once, member by member.
        with tarfile.open(archive, mode="r|gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > max_members:
                    raise FetchError(f"{archive}: more than {max_members:,} members")
                unpacked += member.size
                if unpacked > max_unpacked_bytes:
                    raise FetchError(
                        f"{archive}: more than {max_unpacked_bytes:,} bytes unpacked (at member "
                        f"{member.name!r})"
                    )
                _check_member(member, archive)
                tar.extract(member, target, filter="data")
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error) as exc:
        raise FetchError(f"{archive}: not a gzip-compressed tar archive ({exc})") from exc
    except tarfile.TarError as exc:  # the data filter refused a member
        raise FetchError(f"{archive}: unsafe archive member: {exc}") from exc


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse members that would land outside the extraction folder, and device files."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise FetchError(f"{archive}: unsafe member path {member.name!r}")
    if member.isdev():
        raise FetchError(f"{archive}: unsafe member {member.name!r}: device file or FIFO")
    if member.issym() or member.islnk():
        # Symlinks resolve from the member's folder, hard links from the archive root.
        base = name.parent if member.issym() else PurePosixPath()
        resolved = posixpath.normpath(str(base / member.linkname))
        if PurePosixPath(member.linkname).is_absolute() or resolved.split("/")[0] == "..":
            raise FetchError(
                f"{archive}: unsafe member {member.name!r}: link to {member.linkname!r} "
                "points outside the archive"
            )


def _bundle_root(staging: Path) -> Path:
    """The folder holding the .mat files: the archive root, or its only top-level folder."""
    if any((staging / name).exists() for name in BUNDLE_FILES):
        return staging
    entries = list(staging.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return staging


def _is_regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()

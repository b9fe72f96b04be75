"""Fetching the DeepSEA bundle (and `danq data fetch-deepsea`) from a local HTTP server that
serves a tiny bundle."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from danq.cli.main import main
from danq.errors import FetchError
from danq.io import fetch
from danq.io.fetch import fetch_deepsea

N_SAMPLES = 6
N_TARGETS = 5
BUNDLE_NAME = "deepsea_train_bundle.v0.9.tar.gz"


@dataclass
class ServerBehaviour:
    """What the test server serves and how it misbehaves; records the Range header of each GET."""

    files: dict[str, bytes] = field(default_factory=dict)
    range_headers: list[str | None] = field(default_factory=list)
    cut_first_response_after: int | None = None
    fail_first_request_with: int | None = None
    ignore_range: bool = False


class RangeRequestHandler(BaseHTTPRequestHandler):
    """GET with single open-ended `bytes=N-` ranges (206 / 416), which SimpleHTTPRequestHandler
    lacks."""

    server: BundleServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        range_header = self.headers.get("Range")
        behaviour.range_headers.append(range_header)
        first_request = len(behaviour.range_headers) == 1
        body = behaviour.files.get(self.path.lstrip("/").partition("?")[0])
        if body is None:
            self.send_error(404)
            return
        if first_request and behaviour.fail_first_request_with:
            self.send_error(behaviour.fail_first_request_with)
            return
        start = 0
        if range_header and not behaviour.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if first_request and behaviour.cut_first_response_after is not None:
            # Fewer bytes than Content-Length, then the connection closes: a dropped download.
            payload = payload[: behaviour.cut_first_response_after]
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class BundleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeRequestHandler)
        self.behaviour = ServerBehaviour()

    def url(self, name: str = BUNDLE_NAME) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def server() -> Iterator[BundleServer]:
    bundle_server = BundleServer()
    # A short poll interval makes shutdown() return quickly at teardown.
    thread = threading.Thread(
        target=bundle_server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield bundle_server
    bundle_server.shutdown()
    bundle_server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "RETRY_BASE_DELAY_S", 0.0)
    # Small chunks, so that a connection cut mid-body leaves whole chunks on disk to resume from.
    monkeypatch.setattr(fetch, "CHUNK_SIZE", 1024)


@pytest.fixture(scope="module")
def mat_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """train.mat (HDF5, samples last) and valid/test.mat (MATLAB v5, samples first), as bytes."""
    folder = tmp_path_factory.mktemp("mat")
    rng = np.random.default_rng(0)

    def one_hot(outer: int, inner: int) -> np.ndarray:
        """Random one-hot bases of shape (outer, 4, inner): channels on axis 1, as in the bundle."""
        bases = rng.integers(0, 4, size=(outer, inner))
        return np.moveaxis(np.eye(4, dtype=np.uint8)[bases], -1, 1)

    def labels(shape: tuple[int, int]) -> np.ndarray:
        return (rng.random(shape) < 0.2).astype(np.uint8)

    with h5py.File(folder / "train.mat", "w") as train:
        train["trainxdata"] = one_hot(1000, N_SAMPLES)
        train["traindata"] = labels((N_TARGETS, N_SAMPLES))
    for split in ("valid", "test"):
        scipy.io.savemat(
            folder / f"{split}.mat",
            {
                f"{split}xdata": one_hot(N_SAMPLES, 1000),
                f"{split}data": labels((N_SAMPLES, N_TARGETS)),
            },
        )
    return {name: (folder / name).read_bytes() for name in fetch.BUNDLE_FILES}


def build_tarball(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A .tar.gz holding `files` (member name -> content) and `symlinks` (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bundle(mat_files: dict[str, bytes]) -> bytes:
    """The bundle in the DeepSEA layout: deepsea_train/{train,valid,test}.mat."""
    return build_tarball({f"deepsea_train/{name}": data for name, data in mat_files.items()})


def assert_unpacked(dest: Path, mat_files: dict[str, bytes]) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(mat_files)
    for name, content in mat_files.items():
        assert (dest / name).read_bytes() == content
    with h5py.File(dest / "train.mat") as train:
        assert train["trainxdata"].shape == (1000, 4, N_SAMPLES)


def test_fetch_downloads_verifies_and_unpacks(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    dest = tmp_path / "data"

    result = fetch_deepsea(
        server.url(),
        dest,
        sha256=hashlib.sha256(bundle).hexdigest().upper(),
        md5=hashlib.md5(bundle).hexdigest(),
        expected_size=len(bundle),
    )

    assert result.dest == dest
    assert result.files == tuple(dest / name for name in fetch.BUNDLE_FILES)
    assert result.archive_sha256 == hashlib.sha256(bundle).hexdigest()
    assert not result.archive_kept and not result.archive.exists()
    assert_unpacked(dest, mat_files)
    assert server.behaviour.range_headers == [None]
    assert scipy.io.loadmat(dest / "test.mat")["testxdata"].shape == (N_SAMPLES, 4, 1000)


def test_keep_archive_keeps_it_and_a_rerun_reuses_it(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    dest = tmp_path / "data"
    sha256 = hashlib.sha256(bundle).hexdigest()

    kept = fetch_deepsea(server.url(), dest, sha256=sha256, keep_archive=True, progress=False)
    assert kept.archive_kept and kept.archive.exists()
    fetch_deepsea(server.url(), dest, sha256=sha256, progress=False)

    assert len(server.behaviour.range_headers) == 1
    assert_unpacked(dest, mat_files)


def test_fetch_resumes_after_dropped_connection(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    cut_at = 3 * 1024
    server.behaviour.files[BUNDLE_NAME] = bundle
    server.behaviour.cut_first_response_after = cut_at
    assert len(bundle) > 2 * cut_at

    fetch_deepsea(
        server.url(),
        tmp_path / "data",
        sha256=hashlib.sha256(bundle).hexdigest(),
        md5=hashlib.md5(bundle).hexdigest(),
        progress=False,
    )

    assert server.behaviour.range_headers == [None, f"bytes={cut_at}-"]
    assert_unpacked(tmp_path / "data", mat_files)


def test_fetch_resumes_a_part_file_left_by_an_earlier_run(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    part = tmp_path / "data" / ".download" / f"{BUNDLE_NAME}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(bundle[:1000])

    fetch_deepsea(
        server.url(), tmp_path / "data", sha256=hashlib.sha256(bundle).hexdigest(), progress=False
    )

    assert server.behaviour.range_headers == ["bytes=1000-"]
    assert_unpacked(tmp_path / "data", mat_files)


def test_complete_part_file_is_accepted_on_416(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    part = tmp_path / "data" / ".download" / f"{BUNDLE_NAME}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(bundle)

    fetch_deepsea(
        server.url(), tmp_path / "data", sha256=hashlib.sha256(bundle).hexdigest(), progress=False
    )

    assert server.behaviour.range_headers == [f"bytes={len(bundle)}-"]
    assert_unpacked(tmp_path / "data", mat_files)


def test_fetch_restarts_when_server_ignores_range(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    server.behaviour.ignore_range = True
    part = tmp_path / "data" / ".download" / f"{BUNDLE_NAME}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes that must not survive")

    fetch_deepsea(
        server.url(), tmp_path / "data", sha256=hashlib.sha256(bundle).hexdigest(), progress=False
    )

    assert server.behaviour.range_headers == ["bytes=33-"]
    assert_unpacked(tmp_path / "data", mat_files)


def test_fetch_retries_a_server_error(
    server: BundleServer, bundle: bytes, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    server.behaviour.fail_first_request_with = 503

    fetch_deepsea(server.url(), tmp_path / "data", progress=False, trust_first_download=True)

    assert len(server.behaviour.range_headers) == 2
    assert_unpacked(tmp_path / "data", mat_files)


def test_fetch_gives_up_when_the_server_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{BUNDLE_NAME}"

    with pytest.raises(FetchError, match=rf"{re.escape(url)}: giving up after 2 retries"):
        fetch_deepsea(url, tmp_path / "data", retries=2, progress=False, trust_first_download=True)


def test_logins_and_tokens_in_the_url_are_never_printed_or_pinned(
    server: BundleServer, bundle: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = f"http://ci:hunter2@127.0.0.1:{port}/{BUNDLE_NAME}?token=t0k3n"
    with pytest.raises(FetchError, match="giving up after 1 retries") as caught:
        fetch_deepsea(unreachable, tmp_path / "a", retries=1, progress=False, sha256="0" * 64)
    printed = str(caught.value) + capsys.readouterr().err
    assert "ci:***@127.0.0.1" in printed and "retrying" in printed
    assert "hunter2" not in printed and "t0k3n" not in printed

    server.behaviour.files[BUNDLE_NAME] = bundle
    signed = f"{server.url()}?X-Goog-Signature=s1gn3d&X-Goog-Expires=600"
    pins = tmp_path / "fetch-pins.json"
    fetch_deepsea(signed, tmp_path / "b", progress=False, pins=pins, trust_first_download=True)
    assert json.loads(pins.read_text()) == {
        f"{server.url()}?X-Goog-Signature=***&X-Goog-Expires=600": {
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "size": len(bundle),
        }
    }


def test_checksum_mismatch_names_both_digests_and_leaves_nothing(
    server: BundleServer, bundle: bytes, tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    wrong = "0" * 64
    dest = tmp_path / "data"

    with pytest.raises(FetchError) as raised:
        fetch_deepsea(server.url(), dest, sha256=wrong, progress=False)

    message = str(raised.value)
    assert f"expected {wrong}" in message
    assert f"got {hashlib.sha256(bundle).hexdigest()}" in message
    assert server.url() in message
    assert list(dest.rglob("*")) == []


def test_size_mismatch_is_reported_before_downloading(
    server: BundleServer, bundle: bytes, tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle

    with pytest.raises(FetchError, match=rf"size mismatch: expected 10 bytes.*{len(bundle)}"):
        fetch_deepsea(
            server.url(),
            tmp_path / "data",
            expected_size=10,
            progress=False,
            trust_first_download=True,
        )


def test_http_404_names_the_url(server: BundleServer, tmp_path: Path) -> None:
    url = server.url("missing.tar.gz")

    with pytest.raises(FetchError, match=rf"^{re.escape(url)}: HTTP 404"):
        fetch_deepsea(url, tmp_path / "data", progress=False, trust_first_download=True)
    assert list((tmp_path / "data").rglob("*")) == []


def test_archive_without_test_mat_is_rejected(
    server: BundleServer, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    files = {f"deepsea_train/{n}": d for n, d in mat_files.items() if n != "test.mat"}
    server.behaviour.files[BUNDLE_NAME] = build_tarball(files)

    with pytest.raises(FetchError, match=r"lacks test\.mat"):
        fetch_deepsea(server.url(), tmp_path / "data", progress=False, trust_first_download=True)
    assert list((tmp_path / "data").rglob("*")) == []


def test_files_at_the_archive_root_are_accepted(
    server: BundleServer, mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    server.behaviour.files[BUNDLE_NAME] = build_tarball(mat_files)

    fetch_deepsea(server.url(), tmp_path / "data", progress=False, trust_first_download=True)

    assert_unpacked(tmp_path / "data", mat_files)


@pytest.mark.parametrize(
    ("files", "symlinks", "unsafe_name"),
    [
        ({"../evil": b"x"}, {}, "../evil"),
        ({"/tmp/evil": b"x"}, {}, "/tmp/evil"),
        ({}, {"deepsea_train/evil": "../../evil"}, "deepsea_train/evil"),
    ],
    ids=["parent-path", "absolute-path", "symlink-outside"],
)
def test_unsafe_members_are_rejected(
    server: BundleServer,
    mat_files: dict[str, bytes],
    tmp_path: Path,
    files: dict[str, bytes],
    symlinks: dict[str, str],
    unsafe_name: str,
) -> None:
    members = {f"deepsea_train/{n}": d for n, d in mat_files.items()} | files
    server.behaviour.files[BUNDLE_NAME] = build_tarball(members, symlinks)
    dest = tmp_path / "nested" / "data"

    with pytest.raises(FetchError, match=rf"unsafe member.*{re.escape(unsafe_name)}"):
        fetch_deepsea(server.url(), dest, progress=False, trust_first_download=True)
    assert list(dest.rglob("*")) == []
    assert not (tmp_path / "nested" / "evil").exists()


def test_non_gzip_archive_is_rejected(server: BundleServer, tmp_path: Path) -> None:
    server.behaviour.files[BUNDLE_NAME] = b"<html>not a tarball</html>"

    with pytest.raises(FetchError, match=rf"{BUNDLE_NAME}: not a gzip-compressed tar archive"):
        fetch_deepsea(server.url(), tmp_path / "data", progress=False, trust_first_download=True)


def fetch_cli(tmp_path: Path, *argv: str) -> int:
    """`danq data fetch-deepsea ARGV` with default settings and the pins file in tmp_path: the
    command's exit status."""
    pins = str(tmp_path / "fetch-pins.json")
    return main(
        ["--params", str(tmp_path / "absent.yaml"), "data", "fetch-deepsea", "--pins", pins, *argv]
    )


def test_plain_http_needs_a_checksum_or_explicit_trust_then_the_pin_holds(
    server: BundleServer,
    bundle: bytes,
    mat_files: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    url, pins = server.url(), tmp_path / "fetch-pins.json"

    # No checksum over plain HTTP: refused before any request, nothing written.
    assert fetch_cli(tmp_path, "--url", url, "--dest", str(tmp_path / "a"), "--no-progress") == 1
    assert "plain HTTP without a checksum" in capsys.readouterr().err
    assert server.behaviour.range_headers == [] and not (tmp_path / "a").exists()

    # Trusted once: unpacked and pinned.
    args = ["--url", url, "--dest", str(tmp_path / "a"), "--no-progress", "--trust-first-download"]
    assert fetch_cli(tmp_path, *args) == 0
    assert f"Pinned its sha256 and size in {pins}" in capsys.readouterr().out
    pin = json.loads(pins.read_text())[url]
    assert pin == {"sha256": hashlib.sha256(bundle).hexdigest(), "size": len(bundle)}

    # The pin is the checksum of every later download: the same bytes pass without trust ...
    assert fetch_cli(tmp_path, "--url", url, "--dest", str(tmp_path / "b"), "--no-progress") == 0
    assert_unpacked(tmp_path / "b", mat_files)
    # ... other bytes under the same URL fail, and a contradicting --sha256 is refused.
    server.behaviour.files[BUNDLE_NAME] = build_tarball({"deepsea_train/train.mat": b"x"})
    assert fetch_cli(tmp_path, "--url", url, "--dest", str(tmp_path / "c"), "--no-progress") == 1
    assert "size mismatch" in capsys.readouterr().err  # the pinned size, before downloading
    assert not (tmp_path / "c" / "train.mat").exists()
    other = ["--sha256", "0" * 64]
    assert fetch_cli(tmp_path, "--url", url, "--dest", str(tmp_path / "c"), *other) == 1
    assert "differs from the sha256 pinned" in capsys.readouterr().err
    assert json.loads(pins.read_text())[url] == pin


@pytest.mark.parametrize(
    ("cap", "message"), [("members", "more than 3 members"), ("bytes", "bytes unpacked")]
)
def test_tar_bombs_stop_at_the_caps_before_anything_is_kept(
    mat_files: dict[str, bytes], tmp_path: Path, cap: str, message: str
) -> None:
    members = {f"deepsea_train/{n}": d for n, d in mat_files.items()}
    members |= {f"deepsea_train/extra-{i}": b"x" for i in range(5)}
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(build_tarball(members))
    total = sum(len(d) for d in members.values())
    caps = {"max_members": 3} if cap == "members" else {"max_unpacked_bytes": total - 1}
    dest = tmp_path / "data"

    with pytest.raises(FetchError, match=message):
        fetch.unpack_bundle(archive, dest, **caps)
    assert not dest.exists()  # nothing moved in
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".unpack-")]  # staging gone
    assert fetch.unpack_bundle(archive, tmp_path / "ok")  # within the defaults it unpacks


def test_the_bundle_replaces_the_data_set_as_one_folder_never_mixing_old_and_new(
    mat_files: dict[str, bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    (dest / ".download").mkdir(parents=True)
    (dest / ".download" / "bundle.tar.gz").write_bytes(b"kept archive")
    old = {name: f"old {name}".encode() for name in mat_files}
    for name, content in old.items():
        (dest / name).write_bytes(content)
    incomplete = tmp_path / "incomplete.tar.gz"
    incomplete.write_bytes(build_tarball({n: d for n, d in mat_files.items() if n != "test.mat"}))
    with pytest.raises(FetchError, match="lacks test.mat"):
        fetch.unpack_bundle(incomplete, dest)
    assert {name: (dest / name).read_bytes() for name in old} == old  # untouched

    complete = tmp_path / "complete.tar.gz"
    complete.write_bytes(build_tarball(mat_files))
    fetch.unpack_bundle(complete, dest)
    assert {name: (dest / name).read_bytes() for name in mat_files} == mat_files
    assert (dest / ".download" / "bundle.tar.gz").read_bytes() == b"kept archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "complete.tar.gz",
        "data",
        "incomplete.tar.gz",
    ]

    (dest / "metadata.json").write_text("{}")  # e.g. the synthetic data set's target names
    with pytest.raises(FetchError, match=r"not part of the DeepSEA bundle \(metadata.json\)"):
        fetch.unpack_bundle(complete, dest)


def test_cli_prints_dvc_commands(
    server: BundleServer, bundle: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour.files[BUNDLE_NAME] = bundle
    dest = tmp_path / "data"

    status = fetch_cli(
        tmp_path,
        "--url",
        server.url(),
        "--dest",
        str(dest),
        "--no-progress",
        "--trust-first-download",
    )

    printed = capsys.readouterr().out
    assert status == 0
    assert f"Unpacked train.mat, valid.mat, test.mat into {dest} (archive sha256 " in printed
    assert f"dvc add {dest}\n" in printed
    assert "dvc push\n" in printed
    assert f"git add {dest}.dvc {tmp_path / '.gitignore'} && git commit" in printed
    assert hashlib.sha256(bundle).hexdigest() in printed


def test_cli_reports_errors_on_one_line(
    server: BundleServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url("missing.tar.gz")

    dest = str(tmp_path / "data")
    status = fetch_cli(tmp_path, "--url", url, "--dest", dest, "--no-progress", "--md5", "0" * 32)

    assert status == 1
    assert capsys.readouterr().err == f"error: {url}: HTTP 404 Not Found\n"


def test_malformed_checksum_is_rejected_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="^md5 checksum 'abc' is not 32 hex digits$"):
        fetch_deepsea("http://127.0.0.1:9/x.tar.gz", tmp_path / "data", md5="abc")
    assert not (tmp_path / "data").exists()

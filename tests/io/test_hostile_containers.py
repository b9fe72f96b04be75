"""Hostile MATLAB v5 and HDF5 (MATLAB v7.3) files (issue 19): each class of attack gets a
DataError naming the file and what is wrong, memory stays bounded (peak RSS of a child process
doing the read), and a command given such a file writes nothing."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from danq.config import LimitsConfig
from danq.errors import DataError
from danq.io import limits, mat5
from danq.io.deepsea import open_split

REPO = Path(__file__).resolve().parents[2]
MiB = 2**20

# --------------------------------------------------------------------------- building files


def matrix_head(name: str, dims: tuple[int, ...], data_bytes: int) -> bytes:
    """An uint8 miMATRIX element up to where its data_bytes of data begin."""
    name_b = name.encode()
    dims_b = struct.pack(f"<{len(dims)}i", *dims)
    body = struct.pack("<II", 6, 8) + struct.pack("<II", 9, 0)  # flags: miUINT32, mxUINT8
    body += struct.pack("<II", 5, len(dims_b)) + pad8(dims_b)
    body += struct.pack("<II", 1, len(name_b)) + pad8(name_b)
    body += struct.pack("<II", 2, data_bytes)
    return struct.pack("<II", 14, len(body) + data_bytes + (-data_bytes % 8)) + body


def matrix_element(name: str, dims: tuple[int, ...], data: bytes | None = None) -> bytes:
    """An uint8 array element; data (zeros by default) need not fit the dims."""
    data = bytes(int(np.prod(dims))) if data is None else data
    return matrix_head(name, dims, len(data)) + pad8(data)


def pad8(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 8)


def compressed_element(stream: bytes) -> bytes:
    return struct.pack("<II", 15, len(stream)) + stream


def zero_bomb(prefix: bytes, zeros: int) -> bytes:
    """A zlib stream inflating to prefix + `zeros` zero bytes, built in well under a second:
    after a full flush deflate restarts, so every 16 MiB block of zeros compresses to the same
    bytes, which are repeated instead of compressed again."""
    block = 16 * MiB
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; zlib framing added below
    head = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(zeros, block)
    tail = deflate.compress(bytes(rest)) + deflate.flush()
    checksum = zlib.adler32(prefix)
    zero_block = bytes(block)
    for _ in range(whole):
        checksum = zlib.adler32(zero_block, checksum)
    checksum = zlib.adler32(bytes(rest), checksum)
    return b"\x78\xda" + head + repeated * whole + tail + struct.pack(">I", checksum)


def mat5_file(path: Path, *elements: bytes) -> Path:
    path.write_bytes(mat5.file_header() + b"".join(elements))
    return path


BOMB_SHAPE = (200_000, 4, 1000)  # 800,000,000 bytes of validxdata


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """valid.mat of ~780 KB whose compressed validxdata inflates to 800 MB of zeros (all-N
    sequences: valid one-hot), with compressed all-zero validdata labels."""
    n_bytes = int(np.prod(BOMB_SHAPE))
    stream = zero_bomb(matrix_head("validxdata", BOMB_SHAPE, n_bytes), n_bytes)
    y = compressed_element(zlib.compress(matrix_element("validdata", (BOMB_SHAPE[0], 3))))
    return mat5_file(tmp_path_factory.mktemp("bomb") / "valid.mat", compressed_element(stream), y)


def h5_file(path: Path, build) -> Path:
    with h5py.File(path, "w") as f:
        build(f)
    return path


def huge_length_train(path: Path) -> Path:
    """train.mat of under 2 KB declaring sequences of 10^12 bp (chunks are never written)."""

    def build(f: h5py.File) -> None:
        f.create_dataset("trainxdata", shape=(10**12, 4, 10), dtype="u1", chunks=(1000, 4, 10))
        f.create_dataset("traindata", shape=(5, 10), dtype="u1")

    return h5_file(path, build)


def external_storage_train(path: Path, elsewhere: Path) -> Path:
    """train.mat whose trainxdata is the 400 bytes of the file elsewhere."""

    def build(f: h5py.File) -> None:
        f.create_dataset(
            "trainxdata", shape=(10, 4, 10), dtype="u1", external=[(elsewhere, 0, 400)]
        )
        f["traindata"] = np.zeros((5, 10), dtype=np.uint8)

    return h5_file(path, build)


def negative_dims_test(path: Path) -> Path:
    """test.mat (MATLAB v5) whose testxdata declares shape (-3, 4, 10)."""
    return mat5_file(
        path,
        matrix_element("testxdata", (-3, 4, 10), data=b""),
        matrix_element("testdata", (3, 2)),
    )


def open_error(path: Path, *words: str, split: str | None = None) -> str:
    """The DataError opening and reading all of path gives; it holds each of words."""
    with pytest.raises(DataError) as err:
        with open_split(path, split) as reader:
            reader.read(0, reader.n)
    message = str(err.value)
    for word in words:
        assert word in message, message
    return message


# A child that imports only numpy/h5py/danq.io, applies the given limits, opens the file and
# reads its first and last 100 samples; it prints its peak RSS before and after.
RSS_CHILD = """
import json, resource, sys
from danq.config import LimitsConfig
from danq.errors import DataError
from danq.io import limits
from danq.io.deepsea import open_split
path, settings = sys.argv[1], json.loads(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with limits.applied(LimitsConfig(**settings)), open_split(path) as reader:
        reader.read(0, 100)
        reader.read(reader.n - 100, reader.n)
        outcome = f"read {reader.n} samples"
except DataError as err:
    outcome = f"DataError: {err}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "peak_kib": after, "outcome": outcome}))
"""
RSS_GROWTH_BOUND_KIB = 48 * 1024  # what a read may add to the child's peak RSS


def read_in_child(path: Path, tmp: Path, **settings: int) -> tuple[str, int]:
    """(outcome, growth of the peak RSS in KiB) of a child reading path; its temporary files
    go to tmp, which it must leave empty."""
    tmp.mkdir(exist_ok=True)
    child = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(path), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert list(tmp.iterdir()) == []
    return result["outcome"], result["peak_kib"] - result["before_kib"]


# --------------------------------------------------------------------------- compressed bombs


def test_compressed_bomb_past_the_cap_is_refused_before_inflating(
    bomb: Path, tmp_path: Path
) -> None:
    assert bomb.stat().st_size < 800_000  # inflates to 800 MB: a ratio over 1000
    cap = 64 * MiB
    outcome, growth = read_in_child(bomb, tmp_path / "tmp", max_decompressed_bytes=cap)
    assert outcome.startswith("DataError: valid.mat: the compressed element at byte 128 ")
    assert "holds an array element of 800000080 bytes, more than" in outcome
    assert f"limits.max_decompressed_bytes = {cap}" in outcome
    assert growth < RSS_GROWTH_BOUND_KIB, f"peak RSS grew {growth} KiB"


def test_compressed_array_is_inflated_to_a_temporary_file_not_memory(
    tmp_path: Path,
) -> None:
    """Under the default limits a 128 MB inflated array is read with the child's peak RSS
    growing by far less (it held the whole element, twice, before)."""
    shape = (32_000, 4, 1000)
    n_bytes = int(np.prod(shape))
    x = compressed_element(zero_bomb(matrix_head("validxdata", shape, n_bytes), n_bytes))
    y = compressed_element(zlib.compress(matrix_element("validdata", (shape[0], 3))))
    path = mat5_file(tmp_path / "valid.mat", x, y)
    outcome, growth = read_in_child(path, tmp_path / "tmp")
    assert outcome == "read 32000 samples"
    assert growth < RSS_GROWTH_BOUND_KIB, f"peak RSS grew {growth} KiB"


def test_a_full_temporary_folder_is_a_data_error(tmp_path: Path) -> None:
    """Inflated bytes that do not fit where temporary files go (here: a child whose files may
    not pass 1 MiB) give a DataError naming the file, not an OSError."""
    n_bytes = 4 * MiB
    head = matrix_head("validxdata", (1024, 4, 1024), n_bytes)
    path = mat5_file(tmp_path / "valid.mat", compressed_element(zero_bomb(head, n_bytes)))
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))\n"
            "from danq.errors import DataError\n"
            "from danq.io.deepsea import open_split\n"
            "try:\n"
            "    open_split(sys.argv[1])\n"
            "except DataError as err:\n"
            "    print(err)\n",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(
        f"valid.mat: the compressed element at byte 128: its {len(head) + n_bytes} inflated "
        "bytes do not fit in the temporary folder (File too large)"
    ), child.stdout


def test_only_the_declared_element_is_inflated(tmp_path: Path) -> None:
    """A stream that inflates 64 MiB past the array element it declares is read up to the
    element's end: the cap counts the declared bytes, not what the stream would give."""
    x = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) % 2
    element = matrix_element("x", x.shape, x.tobytes(order="F"))
    path = mat5_file(tmp_path / "a.mat", compressed_element(zero_bomb(element, 64 * MiB)))
    with limits.applied(LimitsConfig(max_decompressed_bytes=len(element))):
        with open(path, "rb") as fh, mat5.Mat5File(fh, "a.mat") as mat:
            np.testing.assert_array_equal(mat.read_rows(mat.vars["x"], 0, 2), x)


def test_the_cap_holds_for_all_compressed_arrays_together(tmp_path: Path) -> None:
    element = matrix_element("x", (10, 40))
    second_at = 128 + 8 + len(zlib.compress(element))
    path = mat5_file(
        tmp_path / "a.mat",
        compressed_element(zlib.compress(element)),
        compressed_element(zlib.compress(matrix_element("y", (10, 40)))),
    )
    with limits.applied(LimitsConfig(max_decompressed_bytes=len(element) + 100)):
        with open(path, "rb") as fh, pytest.raises(DataError) as err:
            mat5.Mat5File(fh, "a.mat")
    assert f"a.mat: the compressed element at byte {second_at} " in str(err.value)
    assert f"({2 * len(element)} with the arrays inflated before it)" in str(err.value)


# --------------------------------------------------------------------------- declared sizes


def test_huge_declared_sequence_length_in_a_tiny_hdf5_file(tmp_path: Path) -> None:
    """The issue's 1.4 KB train.mat declaring L = 10^12 raised MemoryError."""
    path = huge_length_train(tmp_path / "train.mat")
    assert path.stat().st_size < 2048
    outcome, growth = read_in_child(path, tmp_path / "tmp")
    assert outcome == (
        "DataError: train.mat trainxdata: sequences of 1000000000000 bp (shape "
        "(1000000000000, 4, 10), layout (L, 4, N)), more than limits.max_sequence_length "
        "= 100000"
    )
    assert growth < RSS_GROWTH_BOUND_KIB, f"peak RSS grew {growth} KiB"


def test_samples_times_length_past_the_limit(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("validxdata", shape=(10**9, 4, 1000), dtype="u1", chunks=(10, 4, 1000))
        f.create_dataset("validdata", shape=(10**9, 5), dtype="u1", chunks=(1000, 5))

    path = h5_file(tmp_path / "valid.mat", build)
    outcome, growth = read_in_child(path, tmp_path / "tmp")
    assert outcome.startswith("DataError: valid.mat validxdata: 1000000000 samples x 1000 bp")
    assert "limits.max_samples_x_length = 20000000000" in outcome
    assert growth < RSS_GROWTH_BOUND_KIB, f"peak RSS grew {growth} KiB"


def test_too_many_targets(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f["testxdata"] = np.zeros((2, 4, 10), dtype=np.uint8)
        f.create_dataset("testdata", shape=(2, 10**7), dtype="u1", chunks=(1, 1000))

    open_error(
        h5_file(tmp_path / "test.mat", build),
        "test.mat testdata: 10000000 targets",
        "limits.max_targets allows 1 to 100000",
    )


def test_chunk_that_inflates_past_the_cap(tmp_path: Path) -> None:
    """HDF5 inflates a whole chunk to read any of it: a 280 MB chunk is refused unread."""

    def build(f: h5py.File) -> None:
        f.create_dataset(
            "trainxdata",
            shape=(1000, 4, 70_000),
            dtype="u1",
            chunks=(1000, 4, 70_000),
            compression="gzip",
        )
        f["traindata"] = np.zeros((5, 70_000), dtype=np.uint8)

    path = h5_file(tmp_path / "train.mat", build)
    outcome, growth = read_in_child(path, tmp_path / "tmp")
    assert outcome == (
        "DataError: train.mat trainxdata: chunks of shape (1000, 4, 70000) hold 280000000 "
        "bytes each, more than limits.max_chunk_bytes = 268435456"
    )
    assert growth < RSS_GROWTH_BOUND_KIB, f"peak RSS grew {growth} KiB"


@pytest.mark.parametrize(
    ("dims", "words"),
    [
        ((-5, 4, 10), "valid.mat validxdata: negative dimension in shape (-5, 4, 10)"),
        ((3, 4, -1), "valid.mat validxdata: negative dimension in shape (3, 4, -1)"),
        ((3, 4, 0), "valid.mat validxdata: sequences of 0 bp"),
    ],
)
def test_negative_and_zero_dimensions(tmp_path: Path, dims: tuple[int, ...], words: str) -> None:
    path = mat5_file(
        tmp_path / "valid.mat",
        matrix_element("validxdata", dims, data=b""),
        matrix_element("validdata", (3, 2)),
    )
    message = open_error(path, words)
    if min(dims) == 0:
        assert "dimensions must be positive" in message


def test_zero_targets(tmp_path: Path) -> None:
    path = mat5_file(
        tmp_path / "valid.mat",
        matrix_element("validxdata", (3, 4, 10)),
        matrix_element("validdata", (3, 0)),
    )
    open_error(path, "valid.mat validdata: 0 targets", "limits.max_targets allows 1 to")


def test_dimensions_whose_product_overflows_64_bits(tmp_path: Path) -> None:
    dims = (2**31 - 1, 2**31 - 1, 2**31 - 1)
    path = mat5_file(tmp_path / "valid.mat", matrix_element("validxdata", dims, data=bytes(8)))
    open_error(path, "valid.mat validxdata: data holds 8 bytes", f"needs {(2**31 - 1) ** 3}")


# --------------------------------------------------------------------------- data elsewhere


def test_external_storage_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.bin"
    secret.write_bytes(b"\x01" * 400)
    path = external_storage_train(tmp_path / "train.mat", secret)
    with h5py.File(path) as f:  # what h5py alone would do: read the other file
        assert f["trainxdata"][0, 0, 0] == 1
    open_error(
        path,
        f"train.mat trainxdata: keeps its data in external files ({secret})",
        "refused, reading it would open files outside this one",
    )


def test_virtual_dataset_is_refused(tmp_path: Path) -> None:
    h5_file(tmp_path / "source.h5", lambda f: f.create_dataset("x", data=np.ones((10, 4, 10))))

    def build(f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(10, 4, 10), dtype="u1")
        layout[:] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=(10, 4, 10))
        f.create_virtual_dataset("trainxdata", layout)
        f["traindata"] = np.zeros((5, 10), dtype=np.uint8)

    open_error(
        h5_file(tmp_path / "train.mat", build),
        "train.mat trainxdata: is a virtual dataset (its data is mapped from other files)",
    )


@pytest.mark.parametrize(
    ("link", "words"),
    [
        (h5py.SoftLink("/stored"), "train.mat trainxdata: is a soft link to /stored"),
        (
            h5py.ExternalLink("other.h5", "/x"),
            "train.mat trainxdata: is an external link to other.h5:/x",
        ),
    ],
)
def test_links_are_refused(tmp_path: Path, link: object, words: str) -> None:
    def build(f: h5py.File) -> None:
        f["stored"] = np.zeros((10, 4, 10), dtype=np.uint8)
        f["trainxdata"] = link
        f["traindata"] = np.zeros((5, 10), dtype=np.uint8)

    open_error(h5_file(tmp_path / "train.mat", build), words, "refused")


# --------------------------------------------------------------------------- malformed tags


def flags(size: int = 8) -> bytes:
    return struct.pack("<II", 6, size) + struct.pack("<II", 9, 0)[:size].ljust(8, b"\0")


DIMS = struct.pack("<II", 5, 8) + struct.pack("<2i", 2, 3)
NAME = struct.pack("<II", 1, 1) + pad8(b"x")


def raw_matrix(body: bytes) -> bytes:
    return struct.pack("<II", 14, len(body)) + body


GOOD = matrix_element("x", (2, 3))
MALFORMED_MAT5 = {
    "short header": (mat5.file_header()[:100], "a.mat: truncated MATLAB file (the 128-byte header"),
    "element past the end": (
        mat5.file_header() + struct.pack("<II", 14, 2**32 - 1),
        "a.mat: truncated MATLAB file (the element at byte 128 needs 4294967295 bytes, 0 left)",
    ),
    "flags tag cut off": (
        mat5.file_header() + raw_matrix(struct.pack("<I", 6)),
        "a.mat: the array at byte 128, its flags: the tag runs past the end",
    ),
    "flags of 4 bytes": (
        mat5.file_header() + raw_matrix(flags(4) + DIMS + NAME),
        "a.mat: the array at byte 128, its flags are type 6, 4 bytes (expected miUINT32, 8",
    ),
    "dims past the element": (
        mat5.file_header() + raw_matrix(flags() + struct.pack("<II", 5, 2**31)),
        "a.mat: the array at byte 128, its dimensions needs 2147483648 bytes, 0 left",
    ),
    "one dimension": (
        mat5.file_header() + raw_matrix(flags() + struct.pack("<II", 5, 4) + bytes(4) + NAME),
        "a.mat: the array at byte 128, its dimensions are type 5, 4 bytes",
    ),
    "small name of 7 bytes": (
        mat5.file_header() + raw_matrix(flags() + DIMS + struct.pack("<HH", 1, 7) + b"abcd"),
        "a.mat: the array at byte 128, its name is a small element of 7 bytes (at most 4",
    ),
    "name not ASCII": (
        mat5.file_header()
        + raw_matrix(flags() + DIMS + struct.pack("<II", 1, 2) + pad8(b"\xff\x00")),
        "a.mat: the array at byte 128, its name holds bytes b'\\xff\\x00', not ASCII text",
    ),
    "unknown data type": (
        mat5.file_header()
        + raw_matrix(flags() + DIMS + NAME + struct.pack("<II", 99, 6) + pad8(bytes(6))),
        "a.mat x: data of type 99, not a numeric type",
    ),
    "data past the element": (
        mat5.file_header() + raw_matrix(flags() + DIMS + NAME + struct.pack("<II", 2, 6)),
        "a.mat: the array at byte 128 (x), its data needs 6 bytes, 0 left in the array",
    ),
    "garbage compressed": (
        mat5.file_header() + compressed_element(b"not zlib at all"),
        "a.mat: the compressed element at byte 128 is corrupt",
    ),
    "compressed tag cut off": (
        mat5.file_header() + compressed_element(zlib.compress(GOOD[:5])),
        "a.mat: the compressed element at byte 128 inflates to 5 bytes, no element",
    ),
    "compressed stream cut off": (
        mat5.file_header() + compressed_element(zlib.compress(GOOD[:60])),
        f"a.mat: the compressed element at byte 128 inflates to 60 bytes, its array element "
        f"declares {len(GOOD)}",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_MAT5))
def test_malformed_mat5_elements(tmp_path: Path, case: str) -> None:
    data, message = MALFORMED_MAT5[case]
    (tmp_path / "a.mat").write_bytes(data)
    with open(tmp_path / "a.mat", "rb") as fh, pytest.raises(DataError) as err:
        mat5.Mat5File(fh, "a.mat")
    assert message in str(err.value)


def test_mutated_mat5_files_give_only_data_errors(tmp_path: Path) -> None:
    """Seeded mutations of plain and compressed files (bytes and 32-bit words overwritten,
    tails cut): every outcome is a read or a DataError, never struct.error, IndexError,
    OverflowError, MemoryError and the like."""
    rng = np.random.default_rng(19)
    x = rng.integers(0, 2, size=(6, 4, 5)).astype(np.uint8)
    plain = mat5.file_header() + matrix_element("validxdata", x.shape, x.tobytes(order="F"))
    plain += matrix_element("validdata", (6, 3))
    packed = mat5.file_header() + b"".join(
        compressed_element(zlib.compress(element)) for element in (plain[128:],)
    )
    outcomes = {"read": 0, "DataError": 0}
    for original in (plain, packed):
        for _ in range(250):
            data = bytearray(original)
            kind = rng.integers(3)
            if kind == 0:
                at = int(rng.integers(128, len(data)))
                data[at] = int(rng.integers(256))
            elif kind == 1:
                at = 128 + 8 * int(rng.integers((len(data) - 132) // 8))
                word = rng.choice(
                    [0, 1, 4, 8, 2**31 - 1, 2**31, 2**32 - 1, int(rng.integers(2**32))]
                )
                data[at : at + 4] = struct.pack("<I", int(word))
            else:
                del data[int(rng.integers(128, len(data))) :]
            (tmp_path / "m.mat").write_bytes(data)
            try:
                with open(tmp_path / "m.mat", "rb") as fh, mat5.Mat5File(fh, "m.mat") as mat:
                    for var in mat.vars.values():
                        mat.read_rows(var, 0, var.shape[0])
                outcomes["read"] += 1
            except DataError as err:
                assert str(err).startswith("m.mat"), err
                outcomes["DataError"] += 1
    assert min(outcomes.values()) > 50, outcomes


# --------------------------------------------------------------------------- nothing written


def hostile_folder(root: Path, kind: str, bomb: Path) -> tuple[Path, str, list[str], str]:
    """(data folder, its split, settings, the error message's start) for one hostile class."""
    data = root / "data"
    data.mkdir()
    if kind == "bomb":
        (data / "valid.mat").write_bytes(bomb.read_bytes())
        settings = ["limits.max_decompressed_bytes=67108864"]
        return (
            data,
            "valid",
            settings,
            "valid.mat: the compressed element at byte 128 holds an array element of 800000080 "
            "bytes",
        )
    if kind == "huge length":
        huge_length_train(data / "train.mat")
        return data, "train", [], "train.mat trainxdata: sequences of 1000000000000 bp"
    if kind == "external storage":
        (root / "elsewhere.bin").write_bytes(bytes(400))
        external_storage_train(data / "train.mat", root / "elsewhere.bin")
        return data, "train", [], "train.mat trainxdata: keeps its data in external files"
    negative_dims_test(data / "test.mat")
    return data, "test", [], "test.mat testxdata: negative dimension in shape (-3, 4, 10)"


@pytest.mark.parametrize("kind", ["bomb", "huge length", "external storage", "negative dims"])
def test_prepare_on_a_hostile_file_fails_and_writes_nothing(
    tmp_path: Path, bomb: Path, kind: str
) -> None:
    data, split, settings, message = hostile_folder(tmp_path, kind, bomb)
    before = sorted(p.name for p in data.iterdir())
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    tmp.mkdir()
    overrides = [arg for setting in settings for arg in ("-S", setting)]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "danq.cli",
            "--params",
            str(REPO / "params.yaml"),
            *overrides,
            "data",
            "prepare",
            "--data",
            str(data),
            "--out",
            str(work / "shards"),
            "--splits",
            split,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith(f"error: {message}"), run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert not (work / "shards").exists()
    assert not work.exists() or list(work.iterdir()) == []  # no staging folder left
    assert list(tmp.iterdir()) == []  # no temporary file left
    assert sorted(p.name for p in data.iterdir()) == before


def test_corrupt_hdf5_object_header(tmp_path: Path) -> None:
    """h5py raises KeyError opening a dataset whose object header is corrupt."""
    path = tmp_path / "train.mat"
    with h5py.File(path, "w", libver="earliest") as f:
        f["trainxdata"] = np.zeros((10, 4, 10), dtype=np.uint8)
        f["traindata"] = np.zeros((5, 10), dtype=np.uint8)
        header_at = h5py.h5o.get_info(f["trainxdata"].id).addr
    data = bytearray(path.read_bytes())
    data[header_at] = 0xFF  # the object header's version
    path.write_bytes(data)
    with h5py.File(path) as f, pytest.raises(KeyError):
        f["trainxdata"]
    open_error(path, "train.mat trainxdata: unreadable HDF5 array", "bad object header version")


def test_missing_key_among_many_names_a_few(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        for k in range(1000):
            f.create_group(f"g{k:04d}")

    message = open_error(h5_file(tmp_path / "train.mat", build), "missing key 'trainxdata'")
    assert message.endswith("g0018, g0019 and 980 more)")

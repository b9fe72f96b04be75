"""The fuzz targets: each feeds one input (bytes) to one of the project's readers of untrusted
files, and the seed inputs the fuzzer starts from.

A target's contract: the project's own errors (danq.errors.DanqError: DataError, PredictError)
are the expected answer to a bad file; any other exception, a broken invariant (AssertionError),
a hang or an out-of-memory is a crash. Seeds are small valid files written by the project's
own writers on each run (nothing binary is committed), so they follow the formats as they are.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import scipy.io

from danq.data.shards import Manifest, read_manifest
from danq.errors import DanqError, DataError
from danq.io import deepsea, mat5
from danq.io.fasta import read_fasta

ROWS_READ = 3  # rows read from each array an input declares: enough to reach the data checks


class FuzzCrash(Exception):
    """An input made a reader fail other than with one of the project's errors."""


@dataclass(frozen=True)
class Target:
    """One reader under fuzzing: `run(workdir, data)` may raise only DanqError."""

    name: str
    run: Callable[[Path, bytes], None]
    seeds: Callable[[], dict[str, bytes]]
    max_len: int  # libFuzzer -max_len: a few times the largest seed
    dictionary: tuple[bytes, ...] = ()  # libFuzzer -dict tokens


def check(target: Target, workdir: Path, data: bytes) -> DanqError | None:
    """Run one input: the project error that refused it, None if it was read; FuzzCrash (from
    the original error) on anything else."""
    try:
        target.run(workdir, data)
    except DanqError as refused:
        return refused
    except Exception as err:
        raise FuzzCrash(f"{target.name}: {type(err).__name__}: {err}") from err
    return None


# --------------------------------------------------------------------------- MAT v5


def _read_some_rows(mat: mat5.Mat5File, var: mat5.Mat5Var) -> None:
    assert all(d >= 0 for d in var.shape), f"{var.name}: negative dimension in {var.shape}"
    n = var.shape[0] if var.shape else 0
    for start, stop in ((0, min(n, ROWS_READ)), (max(n - 1, 0), n)):
        rows = mat.read_rows(var, start, stop)
        assert rows.shape == (stop - start, *var.shape[1:]), (var.name, rows.shape, var.shape)


def _read_split_rows(reader: deepsea.SplitReader) -> None:
    """The first rows and the last row, checked, as a data step reads them."""
    assert reader.n >= 0 and reader.seq_len >= 0, (reader.n, reader.seq_len)
    for start, stop in ((0, min(reader.n, ROWS_READ)), (max(reader.n - 1, 0), reader.n)):
        x, y = reader.read(start, stop)
        assert x.shape == (stop - start, reader.seq_len, 4), (x.shape, reader.seq_len)
        assert y is None or y.shape == (stop - start, reader.n_targets), y.shape


def run_mat5(workdir: Path, data: bytes) -> None:
    """Mat5File on the bytes, rows of every variable; then SplitReader as valid.mat."""
    path = workdir / "valid.mat"
    path.write_bytes(data)
    with open(path, "rb") as fh, mat5.Mat5File(fh, path.name) as mat:
        for var in mat.vars.values():
            _read_some_rows(mat, var)
    with deepsea.open_split(path, "valid", require_labels=False) as reader:
        _read_split_rows(reader)


def _mat5_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(3, 8))].transpose(0, 2, 1)
    y = rng.integers(0, 2, size=(3, 2)).astype(np.uint8)
    seeds = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder, "valid.mat")
        with open(tmp, "w+b") as fh:
            writer = mat5.Mat5Writer(fh, [("validxdata", x.shape), ("validdata", y.shape)])
            writer.write_rows("validxdata", 0, x)
            writer.write_rows("validdata", 0, y)
        seeds["danq-writer.mat"] = tmp.read_bytes()
        # scipy adds what the project's writer never writes: compression, other classes.
        for compressed in (False, True):
            scipy.io.savemat(
                tmp,
                {"validxdata": x, "validdata": y, "scores": y / 2, "note": "text"},
                do_compression=compressed,
            )
            seeds[f"scipy-{'compressed' if compressed else 'plain'}.mat"] = tmp.read_bytes()
    return seeds


MAT5 = Target(
    "mat5",
    run_mat5,
    _mat5_seeds,
    max_len=4096,
    dictionary=(mat5.HEADER_TEXT, b"IM", b"MI", b"validxdata", b"validdata"),
)


# --------------------------------------------------------------------------- HDF5


def run_hdf5(workdir: Path, data: bytes) -> None:
    """SplitReader on the bytes as train.mat (sample axis last) and as a prediction input
    (sample axis first, labels optional), reading the first and last rows of each; refused
    if both refuse it (a file holds one layout's keys, not both)."""
    path = workdir / "train.mat"
    path.write_bytes(data)
    refusals = []
    for split in ("train", "test"):
        try:
            with deepsea.open_split(path, split, require_labels=False) as reader:
                _read_split_rows(reader)
        except DanqError as refused:
            refusals.append(refused)
    if len(refusals) == 2:
        raise DataError(" | ".join(str(refused) for refused in refusals))


def _hdf5_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    x = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(3, 8))]
    y = rng.integers(0, 2, size=(3, 2)).astype(np.uint8)
    seeds = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, split, labels in (
            ("train-v73.mat", "train", y),
            ("test-v73.mat", "test", y),
            ("predict-input.h5", "test", None),
        ):
            path = deepsea.write_split(Path(folder, name), split, x, labels, container="hdf5")
            seeds[name] = path.read_bytes()
    return seeds


HDF5 = Target(
    "hdf5",
    run_hdf5,
    _hdf5_seeds,
    max_len=16384,
    dictionary=(deepsea.HDF5_SIGNATURE, b"trainxdata", b"traindata", b"testxdata", b"TREE"),
)


# --------------------------------------------------------------------------- FASTA


IUPAC_DNA = "ACGTNRYSWKMBDHVacgtnryswkmbdhv"


def _fasta_outcome(path: Path) -> list[tuple[str, str]] | DanqError:
    try:
        return list(read_fasta(path))
    except DanqError as refused:
        return refused


def run_fasta(workdir: Path, data: bytes) -> None:
    """read_fasta on the bytes; unless they are gzip already, also on their gzip compression,
    which must read the same (the same records, or the same kind of error)."""
    plain = workdir / "in.fa"
    plain.write_bytes(data)
    outcome = _fasta_outcome(plain)
    if data[:2] != b"\x1f\x8b":
        packed = workdir / "in.fa.gz"
        packed.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
        again = _fasta_outcome(packed)
        same = type(again) is type(outcome) if isinstance(outcome, DanqError) else again == outcome
        assert same, f"plain and gzip copies read differently: {outcome!r:.200} {again!r:.200}"
    if isinstance(outcome, DanqError):
        raise outcome
    ids = [record_id for record_id, _ in outcome]
    assert len(set(ids)) == len(ids) and all(ids), f"ids {ids!r:.200}"
    bases = set("".join(sequence for _, sequence in outcome))
    assert bases and bases <= set(IUPAC_DNA), f"bases {sorted(bases)}"


def _fasta_seeds() -> dict[str, bytes]:
    records = b">chr1:100-200 first\nACGTNacgtn\nRYSWKMBDHV\n>r2\r\nGATTACA\r\n\r\n>r3\ngg TT\n"
    return {"records.fa": records, "records.fa.gz": gzip.compress(records, mtime=0)}


FASTA = Target(
    "fasta",
    run_fasta,
    _fasta_seeds,
    max_len=8192,
    dictionary=(b">", b"\r\n", b"\x1f\x8b\x08"),
)


# --------------------------------------------------------------------------- manifest

_FIELD_TYPES = {"str": str, "int": int, "list[dict]": list}


def run_manifest(workdir: Path, data: bytes) -> None:
    """read_manifest on the bytes as a split folder's manifest.json; what it accepts must have
    every field of the declared type and shards that add up."""
    (workdir / "manifest.json").write_bytes(data)
    manifest = read_manifest(str(workdir))
    for field in fields(Manifest):
        value = getattr(manifest, field.name)
        declared = _FIELD_TYPES[str(field.type)]
        assert isinstance(value, declared), f"{field.name} is {type(value).__name__}"
    assert sum(shard["samples"] for shard in manifest.shards) == manifest.n_samples
    assert manifest.record_bytes > 0 and manifest.n_source_samples > 0


def _manifest_seeds() -> dict[str, bytes]:
    manifest = Manifest(
        split="train",
        n_samples=120,
        seq_len=200,
        n_targets=16,
        halves="forward",
        compression="gzip",
        shards=[{"file": "shard-00000.tfrecord.gz", "samples": 70}, {"file": "b", "samples": 50}],
        source="train.mat",
        label_bytes=2,
    )
    return {"manifest.json": json.dumps(asdict(manifest), indent=2).encode() + b"\n"}


MANIFEST = Target(
    "manifest",
    run_manifest,
    _manifest_seeds,
    max_len=8192,  # room for an integer past Python's 4,300-digit conversion limit
    dictionary=tuple(
        json.dumps(token).encode()
        for token in [f.name for f in fields(Manifest)]
        + ["train", "valid", "test", "both", "forward", "none", "gzip", "file", "samples"]
    ),
)


TARGETS = {target.name: target for target in (MAT5, HDF5, FASTA, MANIFEST)}

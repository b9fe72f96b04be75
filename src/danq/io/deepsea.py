"""Reading and writing the DeepSEA data layout (train.mat / valid.mat / test.mat).

The bundle mixes two containers and two axis orders:

| file | container | x | y |
|---|---|---|---|
| train.mat | MATLAB v7.3 (HDF5) | trainxdata (L, 4, N) | traindata (T, N) |
| valid.mat, test.mat | MATLAB v5 (or v7.3) | validxdata (N, 4, L) | validdata (N, T) |
| prediction input | HDF5 | testxdata (N, 4, L) | none |

That is, h5py sees train.mat with the sample axis last and every other file with the sample
axis first. Readers here hand out sample-major one-hot chunks (n, L, 4) uint8 and labels
(n, T) uint8 whatever the file, reading a bounded number of samples at a time so that memory
does not grow with N. MATLAB v5 files are read in row ranges by `danq.io.mat5` (scipy would
load whole arrays).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from danq.artifacts import write_atomically
from danq.config import SPLITS, Split
from danq.errors import DataError
from danq.io import limits as reader_limits
from danq.io import mat5, storage

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HEAD_BYTES = 4104  # enough to find an HDF5 signature behind a user block of up to 4096 bytes
DEFAULT_SEQ_LEN = 1000
# What h5py raises on a malformed file or one it cannot interpret (it maps HDF5's errors to
# these); the reader turns each into a DataError naming the file and key. DataError is a
# ValueError: handlers let it through first.
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)
MISSING_KEYS_LISTED = 20  # a file may hold any number of keys; the message names a few


def x_key(split: str) -> str:
    return f"{split}xdata"


def y_key(split: str) -> str:
    return f"{split}data"


def split_of(path: str | os.PathLike[str]) -> Split:
    stem = Path(str(path).rsplit("/", 1)[-1]).stem
    if stem not in SPLITS:
        raise DataError(
            f"{path}: cannot tell the split from the file name (expected train.mat, valid.mat "
            "or test.mat); pass the split explicitly"
        )
    return stem


def detect_container(head: bytes) -> Literal["hdf5", "mat5"] | None:
    """Which MATLAB container a file is in, from its first HEAD_BYTES bytes; None if neither."""
    # HDF5 allows a user block of 512 * 2**k bytes before the signature; MATLAB v7.3 uses 512.
    for offset in (0, 512, 1024, 2048, 4096):
        if head[offset : offset + 8] == HDF5_SIGNATURE:
            return "hdf5"
    if mat5.is_mat5_header(head):
        return "mat5"
    return None


def _staged_copy(uri: str) -> Path:
    """A local copy of a remote file in DANQ_CACHE_DIR, reused while size and etag match."""
    info = storage.info(uri)
    key = hashlib.sha256(json.dumps([uri, info], sort_keys=True, default=str).encode())
    local = storage.cache_dir() / "raw" / f"{key.hexdigest()[:16]}-{uri.rsplit('/', 1)[-1]}"
    if not local.exists():
        write_atomically(local, lambda partial: storage.download(uri, partial))
    return local


def _key_text(key: str | bytes) -> str:
    """An HDF5 link name as text: h5py gives the bytes of a name that is not UTF-8."""
    return key if isinstance(key, str) else key.decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- reader


class SplitReader:
    """Sample-major access to one DeepSEA-format file.

    `layout` says on which axis the samples lie: "sample_last" for train.mat in HDF5 (as the
    bundle stores it), "sample_first" otherwise. Labels are optional (prediction files).
    """

    x_dtype: np.dtype
    y_dtype: np.dtype | None  # None without labels

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str | None = None,
        *,
        x_name: str | None = None,
        y_name: str | None = None,
        require_labels: bool = True,
        seq_len: int | None = None,
    ) -> None:
        self.path = str(path)
        self.name = self.path.rsplit("/", 1)[-1]
        self.split = split or split_of(self.path)
        self.x_name = x_name or x_key(self.split)
        self.y_name = y_name or y_key(self.split)
        if not storage.exists(self.path):
            raise DataError(f"{self.path}: file not found")
        self._file = storage.open_binary(self.path)
        if storage.is_remote(self.path) and detect_container(self._file.read(HEAD_BYTES)) == "mat5":
            # MATLAB v5 stores arrays column-major: a sample-major chunk is 4 x L small reads,
            # cheap on disk but one request each on object storage. Stage the file locally.
            self._file.close()
            self._file = open(_staged_copy(self.path), "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(0)
        try:
            self._open(require_labels, seq_len)
        except Exception:
            self.close()
            raise

    def _open(self, require_labels: bool, seq_len: int | None) -> None:
        container = detect_container(self._file.read(HEAD_BYTES))
        if container is None:
            raise DataError(f"{self.name}: not an HDF5 (MATLAB v7.3) or MATLAB v5 file")
        self.container: Literal["hdf5", "mat5"] = container
        self._file.seek(0)
        if self.container == "hdf5":
            try:
                self._h5 = h5py.File(self._file, "r")
                keys = sorted(_key_text(key) for key in self._h5.keys())
            except H5_ERRORS as err:
                raise DataError(
                    f"{self.name}: unreadable HDF5 file (truncated or corrupt): {err}"
                ) from None
            self._x, x_shape, self.x_dtype = self._h5_dataset(self.x_name, keys)
            if self.y_name in keys:
                self._y, y_shape, self.y_dtype = self._h5_dataset(self.y_name, keys)
            else:
                self._y, y_shape, self.y_dtype = None, None, None
        else:
            self._mat = mat5.Mat5File(self._file, self.name)
            keys = sorted(self._mat.vars)
            if self.x_name not in keys:
                raise DataError(self._missing(self.x_name, keys))
            self._x = self._mat.vars[self.x_name]
            self._y = self._mat.vars.get(self.y_name)
            x_shape, y_shape = self._x.shape, self._y.shape if self._y is not None else None
            self.x_dtype = self._x.class_dtype
            self.y_dtype = self._y.class_dtype if self._y is not None else None
        if self._y is None and require_labels:
            raise DataError(self._missing(self.y_name, keys))
        self.layout = (
            "sample_last" if self.container == "hdf5" and self.split == "train" else "sample_first"
        )
        self._check_shapes(x_shape, y_shape, seq_len)

    def _h5_dataset(
        self, key: str, keys: list[str]
    ) -> tuple[h5py.Dataset, tuple[int, ...], np.dtype]:
        """The array under key with its shape and dtype, refused unless it is stored in this
        file, under a hard link, in chunks small enough to inflate one at a time."""
        if key not in keys:
            raise DataError(self._missing(key, keys))
        try:
            node = self._checked_h5_dataset(key)
            return node, node.shape, node.dtype
        except DataError:
            raise
        except H5_ERRORS as err:
            raise DataError(f"{self.name} {key}: unreadable HDF5 array: {err}") from None

    def _checked_h5_dataset(self, key: str) -> h5py.Dataset:
        where = f"{self.name} {key}"
        try:
            link = self._h5.get(key, getlink=True)
        except TypeError:  # h5py's answer for a user-defined link type
            link = None
        if isinstance(link, h5py.SoftLink):
            raise DataError(f"{where}: is a soft link to {link.path}; links are refused")
        if isinstance(link, h5py.ExternalLink):
            raise DataError(
                f"{where}: is an external link to {link.filename}:{link.path}; links to other "
                "files are refused"
            )
        if not isinstance(link, h5py.HardLink):
            raise DataError(f"{where}: is a user-defined link; links are refused")
        node = self._h5[key]
        if not isinstance(node, h5py.Dataset):
            raise DataError(f"{where}: is a group, expected an array")
        if node.is_virtual:
            raise DataError(
                f"{where}: is a virtual dataset (its data is mapped from other files); "
                "refused, store the array itself"
            )
        if node.external:
            files = ", ".join(str(entry[0]) for entry in node.external)
            raise DataError(
                f"{where}: keeps its data in external files ({files}); refused, reading it "
                "would open files outside this one"
            )
        if node.chunks is not None:
            # HDF5 inflates a whole chunk to read any part of it.
            chunk_bytes = math.prod(node.chunks) * node.dtype.itemsize
            limit = reader_limits.active().max_chunk_bytes
            if chunk_bytes > limit:
                raise DataError(
                    f"{where}: chunks of shape {node.chunks} hold {chunk_bytes} bytes each, "
                    f"more than limits.max_chunk_bytes = {limit}"
                )
        return node

    def _missing(self, key: str, keys: list[str]) -> str:
        listed = ", ".join(keys[:MISSING_KEYS_LISTED]) or "none"
        if len(keys) > MISSING_KEYS_LISTED:
            listed += f" and {len(keys) - MISSING_KEYS_LISTED} more"
        return f"{self.name}: missing key '{key}' (keys present: {listed})"

    def _check_shapes(self, x_shape, y_shape, seq_len: int | None) -> None:
        name = self.name
        expected = "(L, 4, N)" if self.layout == "sample_last" else "(N, 4, L)"
        if len(x_shape) != 3:
            raise DataError(
                f"{name} {self.x_name}: rank {len(x_shape)} (shape {tuple(x_shape)}), "
                f"expected 3 axes {expected}"
            )
        if x_shape[1] != 4:
            raise DataError(
                f"{name} {self.x_name}: axis 1 has size {x_shape[1]} (shape {tuple(x_shape)}), "
                f"expected 4 channels A,G,C,T in {expected}; are the axes transposed?"
            )
        if self.layout == "sample_last":
            self.seq_len, self.n = int(x_shape[0]), int(x_shape[2])
        else:
            self.n, self.seq_len = int(x_shape[0]), int(x_shape[2])
        self._check_size(x_shape, expected)
        if seq_len is not None and self.seq_len != seq_len:
            raise DataError(
                f"{name} {self.x_name}: sequences are {self.seq_len} bp (shape "
                f"{tuple(x_shape)}, layout {expected}), expected {seq_len} bp; axes transposed?"
            )
        self.n_targets: int | None = None
        if y_shape is not None:
            self._check_label_shape(y_shape)
        # Dtypes last: given a float array, the data gate reads it for NaN (danq.validation
        # .scan), which every size must have passed first.
        if not np.issubdtype(self.x_dtype, np.integer) and self.x_dtype != np.bool_:
            raise DataError(f"{name} {self.x_name}: dtype {self.x_dtype}, expected uint8 one-hot")
        if y_shape is not None and not (
            np.issubdtype(self.y_dtype, np.integer) or self.y_dtype == np.bool_
        ):
            raise DataError(
                f"{name} {self.y_name}: dtype {self.y_dtype}, expected uint8 0/1 labels"
            )

    def _check_label_shape(self, y_shape: tuple[int, ...]) -> None:
        name = self.name
        y_expected = "(T, N)" if self.layout == "sample_last" else "(N, T)"
        if len(y_shape) != 2:
            raise DataError(
                f"{name} {self.y_name}: rank {len(y_shape)} (shape {tuple(y_shape)}), "
                f"expected 2 axes {y_expected}"
            )
        y_n, t = (y_shape[1], y_shape[0]) if self.layout == "sample_last" else y_shape
        if t <= 0 or t > reader_limits.active().max_targets:
            raise DataError(
                f"{name} {self.y_name}: {t} targets (shape {tuple(y_shape)}, expected "
                f"{y_expected}); limits.max_targets allows 1 to "
                f"{reader_limits.active().max_targets}"
            )
        if y_n != self.n:
            hint = "; axes transposed?" if self.n in tuple(y_shape) else ""
            raise DataError(
                f"{name}: {self.x_name} has {self.n} samples but {self.y_name} has {y_n} "
                f"(shape {tuple(y_shape)}, expected {y_expected}){hint}"
            )
        self.n_targets = int(t)

    def _check_size(self, x_shape: tuple[int, ...], expected: str) -> None:
        """Declared sizes against the limits, before anything is read: an array header is a
        few bytes whatever it claims. A split may hold no samples (the data gate reports
        that); a sample must hold at least one base."""
        where = f"{self.name} {self.x_name}"
        limits = reader_limits.active()
        if self.seq_len <= 0:
            raise DataError(
                f"{where}: sequences of {self.seq_len} bp (shape {tuple(x_shape)}, layout "
                f"{expected}); dimensions must be positive"
            )
        if self.seq_len > limits.max_sequence_length:
            raise DataError(
                f"{where}: sequences of {self.seq_len} bp (shape {tuple(x_shape)}, layout "
                f"{expected}), more than limits.max_sequence_length = "
                f"{limits.max_sequence_length}"
            )
        if self.n * self.seq_len > limits.max_samples_x_length:
            raise DataError(
                f"{where}: {self.n} samples x {self.seq_len} bp = {self.n * self.seq_len} "
                f"(shape {tuple(x_shape)}), more than limits.max_samples_x_length = "
                f"{limits.max_samples_x_length}"
            )

    @property
    def has_labels(self) -> bool:
        return self._y is not None

    def read_raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples [start, stop) as stored values: x (n, L, 4), y (n, T), no value checks."""
        x = self._samples(self.x_name, self._x, start, stop)
        if self.layout == "sample_first":  # stored (N, 4, L)
            x = x.transpose(0, 2, 1)
        y = self._samples(self.y_name, self._y, start, stop) if self._y is not None else None
        return np.ascontiguousarray(x), (np.ascontiguousarray(y) if y is not None else None)

    def _samples(self, key: str, array: Any, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of one stored array, moved to the first axis."""
        try:
            if self.container == "mat5":
                return self._mat.read_rows(array, start, stop)
            if self.layout == "sample_last":
                return np.moveaxis(array[..., start:stop], -1, 0)
            return array[start:stop]
        except DataError:
            raise
        except H5_ERRORS as err:
            raise DataError(
                f"{self.name} {key}: could not read samples {start}-{stop} (truncated or "
                f"corrupt): {err}"
            ) from None

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples [start, stop) as checked uint8 one-hot (n, L, 4) and 0/1 labels (n, T)."""
        x, y = self.read_raw(start, stop)
        return self._checked(x, self.x_name, start, onehot=True), (
            self._checked(y, self.y_name, start, onehot=False) if y is not None else None
        )

    def _checked(self, a: np.ndarray, key: str, start: int, onehot: bool) -> np.ndarray:
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
                raise DataError(f"{self.name} {key}: contains NaN; expected uint8 0/1 values")
            raise DataError(f"{self.name} {key}: dtype {a.dtype}, expected uint8 0/1 values")
        bad = a > 1
        if bad.any():
            first = np.argwhere(bad)[0]
            raise DataError(
                f"{self.name} {key}: value {a[tuple(first)]} at sample {start + first[0]}, "
                "expected only 0 and 1"
            )
        if onehot:
            multi = a.sum(axis=2, dtype=np.int32) > 1
            if multi.any():
                sample, pos = np.argwhere(multi)[0]
                raise DataError(
                    f"{self.name} {key}: {int(multi.any(axis=1).sum())} samples in "
                    f"{start}-{start + len(a)} have positions with two or more bases set "
                    f"(first: sample {start + sample}, position {pos})"
                )
        return a

    def iter_chunks(
        self, chunk_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        stop = self.n if stop is None else stop
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            x, y = self.read(lo, hi)
            yield lo, x, y

    def close(self) -> None:
        for container in (getattr(self, "_h5", None), getattr(self, "_mat", None)):
            if container is not None:
                container.close()
        self._file.close()

    def __enter__(self) -> SplitReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_split(path: str | os.PathLike[str], split: str | None = None, **kwargs) -> SplitReader:
    return SplitReader(path, split, **kwargs)


def open_prediction_input(path: str | os.PathLike[str]) -> SplitReader:
    """An HDF5 file in DeepSEA's prediction layout: testxdata (N, 4, L), labels optional."""
    return SplitReader(path, "test", require_labels=False)


# --------------------------------------------------------------------------- summary

CONTAINER_NAMES = {"hdf5": "MATLAB v7.3 (HDF5)", "mat5": "MATLAB v5"}


def summarise_split(path: str, split: str, chunk_size: int) -> dict[str, Any]:
    """One split's file, container, layout and shapes, GC content and label prevalence,
    streamed `chunk_size` samples at a time."""
    with open_split(path, split) as reader:
        positives = np.zeros(reader.n_targets or 0, dtype=np.int64)
        gc = n_bases = 0
        for _, x, y in reader.iter_chunks(chunk_size):
            assert y is not None  # open_split requires labels
            positives += y.sum(axis=0, dtype=np.int64)
            gc += int(x[:, :, 1:3].sum(dtype=np.int64))  # channels G and C of A,G,C,T
            n_bases += int(x.sum(dtype=np.int64))
        return {
            "file": reader.name,
            "container": CONTAINER_NAMES[reader.container],
            "layout": reader.layout,
            "samples": reader.n,
            "seq_len": reader.seq_len,
            "targets": reader.n_targets,
            "gc_content": round(gc / max(n_bases, 1), 4),
            "mean_prevalence": round(float(positives.mean()) / reader.n, 4),
            "targets_without_positives": int((positives == 0).sum()),
        }


def summarise_folder(
    data_dir: str | os.PathLike[str], chunk_size: int
) -> dict[str, dict[str, Any]]:
    """`summarise_split` of train/valid/test.mat in data_dir (local or gs://), by split."""
    return {
        split: summarise_split(storage.join(str(data_dir), f"{split}.mat"), split, chunk_size)
        for split in SPLITS
    }


# --------------------------------------------------------------------------- writers

MAT73_USERBLOCK = 512
WRITE_CHUNK_BYTES = 4 * 2**20


def _mat73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: danq, HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0200) + b"IM"


class SplitWriter:
    """Writes one split in the DeepSEA layout, sample chunk by sample chunk.

    train -> MATLAB v7.3 (HDF5, sample axis last); valid/test -> MATLAB v5 (sample axis first),
    unless `container` says otherwise. The file is written under a temporary name and renamed
    into place by `close()`, so a failure never leaves a half-written split behind.
    Output is byte-identical for identical inputs (no timestamps).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str,
        n: int,
        seq_len: int,
        n_targets: int | None,
        container: Literal["hdf5", "mat5"] | None = None,
    ) -> None:
        self.path = Path(path)
        self.split, self.n, self.seq_len, self.n_targets = split, n, seq_len, n_targets
        self.container = container or ("hdf5" if split == "train" else "mat5")
        self.sample_last = self.container == "hdf5" and split == "train"
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.container == "hdf5":
            self._open_hdf5()
        else:
            self._open_mat5()

    def _uint8_dataset(self, key: str, shape: tuple[int, ...], chunks: tuple[int, ...]) -> Any:
        """A gzip-compressed uint8 array that MATLAB reads as uint8 (MATLAB_class)."""
        dataset = self._h5.create_dataset(
            key,
            shape=shape,
            dtype="u1",
            chunks=chunks,
            compression="gzip",
            compression_opts=1,
            track_times=False,
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("uint8")
        return dataset

    def _open_hdf5(self) -> None:
        self._h5 = h5py.File(self.tmp, "w", userblock_size=MAT73_USERBLOCK, libver="earliest")
        L, n, T = self.seq_len, self.n, self.n_targets
        # Up to 1024 samples and 4 MiB a chunk: far below limits.max_chunk_bytes at any L.
        chunk = max(1, min(n, 1024, WRITE_CHUNK_BYTES // (4 * L)))
        x_shape = (L, 4, n) if self.sample_last else (n, 4, L)
        x_chunks = (L, 4, chunk) if self.sample_last else (chunk, 4, L)
        self._x = self._uint8_dataset(x_key(self.split), x_shape, x_chunks)
        self._y = None
        if T is not None:
            y_shape = (T, n) if self.sample_last else (n, T)
            y_chunks = (T, chunk) if self.sample_last else (chunk, T)
            self._y = self._uint8_dataset(y_key(self.split), y_shape, y_chunks)

    def _open_mat5(self) -> None:
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()
        arrays: list[tuple[str, tuple[int, ...]]] = [(x_key(self.split), (self.n, 4, self.seq_len))]
        if self.n_targets is not None:
            arrays.append((y_key(self.split), (self.n, self.n_targets)))
        self._mat5 = mat5.Mat5Writer(self._fh, arrays)

    def write(self, start: int, x: np.ndarray, y: np.ndarray | None) -> None:
        """Samples [start, start + len(x)): x one-hot (n, L, 4) uint8, y (n, T) uint8."""
        stop = start + len(x)
        if self.container == "hdf5":
            if self.sample_last:
                self._x[:, :, start:stop] = x.transpose(1, 2, 0)
                if self._y is not None and y is not None:
                    self._y[:, start:stop] = y.T
            else:
                self._x[start:stop] = x.transpose(0, 2, 1)
                if self._y is not None and y is not None:
                    self._y[start:stop] = y
        else:
            self._mat5.write_rows(x_key(self.split), start, x.transpose(0, 2, 1))
            if y is not None:
                self._mat5.write_rows(y_key(self.split), start, y)

    def close(self) -> Path:
        if self.container == "hdf5":
            self._h5.close()
            with open(self.tmp, "r+b") as fh:
                fh.write(_mat73_header())
        else:
            self._fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.container == "hdf5":
            self._h5.close()
        else:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_split(
    path: str | os.PathLike[str],
    split: str,
    x: np.ndarray,
    y: np.ndarray | None,
    container: Literal["hdf5", "mat5"] | None = None,
) -> Path:
    """Write in-memory arrays (x (n, L, 4), y (n, T)) as one DeepSEA-format file."""
    n_targets = None if y is None else y.shape[1]
    with SplitWriter(path, split, len(x), x.shape[1], n_targets, container) as writer:
        writer.write(0, x, y)
    return Path(path)

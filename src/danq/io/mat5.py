"""MATLAB v5 MAT-files, read and written in row ranges without loading whole arrays.

A v5 file is a 128-byte header followed by tagged elements; each numeric variable is an
miMATRIX element (possibly inside an miCOMPRESSED one) holding flags, dimensions, a name and
the data in Fortran order. `Mat5File` indexes the numeric variables of a file and reads any
range of rows (axis 0) of one of them; `Mat5Writer` lays out uint8 arrays of known shape and
fills them row range by row range. scipy.io would load or build whole arrays in memory.

Files are untrusted: every size a tag declares is checked against the element holding it
before anything is read, compressed elements are inflated in a stream into a temporary file
under `limits.max_decompressed_bytes`, and every defect is a DataError naming the file.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from danq.errors import DataError
from danq.io import limits as reader_limits

HEADER_TEXT = b"MATLAB 5.0 MAT-file"
HEADER_SIZE = 128

_DATA_TYPES = {
    1: "i1",
    2: "u1",
    3: "i2",
    4: "u2",
    5: "i4",
    6: "u4",
    7: "f4",
    9: "f8",
    12: "i8",
    13: "u8",
}
_NUMERIC_CLASSES = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
_MI_INT8, _MI_UINT8, _MI_INT32, _MI_UINT32 = 1, 2, 5, 6
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_UINT8_CLASS = 9
_MAX_DIMS = 32  # MATLAB arrays have at most a few; the cap bounds what a tag makes us read
_MAX_NAME_BYTES = 4096  # MATLAB names are at most 63 characters
_INFLATE_PIECE = 1 << 20  # bytes inflated (and held) at a time


def is_mat5_header(head: bytes) -> bool:
    """Whether the first bytes of a file are a MATLAB v5 header (either byte order)."""
    return head[:19] == HEADER_TEXT and head[126:128] in (b"IM", b"MI")


@dataclass(frozen=True)
class Mat5Var:
    """Where one numeric MATLAB v5 array lies: Fortran-ordered data at `offset`, in the file
    itself or (`inflated`) in the reader's temporary file of inflated compressed elements."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    class_dtype: np.dtype
    offset: int
    inflated: bool


class Mat5File:
    """The numeric variables of a MATLAB v5 file (`vars`, by name) and row-range reads.

    Compressed elements are inflated in bounded pieces into an anonymous temporary file,
    together at most `limits.max_decompressed_bytes`, so memory does not grow with what
    they inflate to. Any malformed input raises DataError naming the file and what is wrong.
    Close it (or use it as a context manager) to free that temporary file.
    """

    def __init__(self, fileobj: IO[bytes], label: str) -> None:
        self.f = fileobj
        self.label = label
        self.vars: dict[str, Mat5Var] = {}
        self._inflated: IO[bytes] | None = None
        try:
            self._index()
        except BaseException:
            self.close()
            raise

    def _index(self) -> None:
        self.f.seek(0, io.SEEK_END)
        size = self.f.tell()
        header = self._read_at(self.f, 0, HEADER_SIZE, "the 128-byte header")
        if not is_mat5_header(header):
            raise DataError(f"{self.label}: not a MATLAB v5 file (no v5 header)")
        self.order = "<" if header[126:128] == b"IM" else ">"
        pos = HEADER_SIZE
        while pos + 8 <= size:
            mdtype, nbytes = self._unpack("II", self._read_at(self.f, pos, 8, "an element tag"))
            if nbytes > size - pos - 8:
                raise DataError(
                    f"{self.label}: truncated MATLAB file (the element at byte {pos} needs "
                    f"{nbytes} bytes, {size - pos - 8} left)"
                )
            if mdtype == _MI_COMPRESSED:
                var = self._compressed_var(pos, nbytes)
            elif mdtype == _MI_MATRIX:
                var = self._parse_matrix(self.f, pos + 8, nbytes, f"the array at byte {pos}")
            else:
                var = None
            if var:
                self.vars[var.name] = var
            pos += 8 + nbytes
            pos += (-pos) % 8 if mdtype != _MI_COMPRESSED else 0

    def _unpack(self, fmt: str, data: bytes) -> tuple[int, ...]:
        return struct.unpack(self.order + fmt, data)

    def _read_at(self, f: IO[bytes], pos: int, n: int, what: str) -> bytes:
        """n bytes at pos; callers bound n by an element already checked to lie in the file."""
        f.seek(pos)
        data = f.read(n)
        if len(data) != n:
            raise DataError(
                f"{self.label}: truncated MATLAB file ({what} wants {n} bytes at byte {pos})"
            )
        return data

    def _compressed_var(self, pos: int, nbytes: int) -> Mat5Var | None:
        """The numeric array an miCOMPRESSED element holds, inflated into the temporary file."""
        where = f"the compressed element at byte {pos}"
        limit = reader_limits.active().max_decompressed_bytes
        if self._inflated is None:
            self._inflated = tempfile.TemporaryFile(prefix="danq-mat5-")
        out = self._inflated
        base = out.seek(0, io.SEEK_END)
        pieces = self._inflate(pos, nbytes, where)
        head = b""
        for piece in pieces:  # the inner element's tag first: is it worth inflating?
            head += piece
            if len(head) >= 8:
                break
        if len(head) < 8:
            raise DataError(f"{self.label}: {where} inflates to {len(head)} bytes, no element")
        inner_type, inner_bytes = self._unpack("II", head[:8])
        if inner_type != _MI_MATRIX:
            return None
        wanted = 8 + inner_bytes
        if base + wanted > limit:
            before = f" ({base + wanted} with the arrays inflated before it)" if base else ""
            raise DataError(
                f"{self.label}: {where} holds an array element of {wanted} bytes{before}, "
                f"more than limits.max_decompressed_bytes = {limit}"
            )
        try:
            written = self._write_inflated(out, head, pieces, wanted)
        except OSError as err:  # the temporary folder is full: as much the file's doing
            raise DataError(
                f"{self.label}: {where}: its {wanted} inflated bytes do not fit in the "
                f"temporary folder ({err.strerror}); lower limits.max_decompressed_bytes or "
                "set TMPDIR"
            ) from None
        if written < wanted:
            raise DataError(
                f"{self.label}: {where} inflates to {written} bytes, its array element "
                f"declares {wanted}"
            )
        var = self._parse_matrix(out, base + 8, inner_bytes, where)
        if var is None:  # not a numeric array: give its bytes back
            out.truncate(base)
        return var

    @staticmethod
    def _write_inflated(out: IO[bytes], head: bytes, pieces: Iterator[bytes], wanted: int) -> int:
        """Write head and then pieces up to `wanted` bytes in all; the bytes written."""
        out.write(head[:wanted])
        written = min(len(head), wanted)
        for piece in pieces:
            if written == wanted:
                break  # anything the stream inflates to past its element is not read
            out.write(piece[: wanted - written])
            written = min(written + len(piece), wanted)
        return written

    def _inflate(self, pos: int, nbytes: int, where: str) -> Iterator[bytes]:
        """The inflated bytes of the compressed element at pos, in pieces of at most
        _INFLATE_PIECE bytes, however far the stream would inflate."""
        inflater = zlib.decompressobj()
        at, end = pos + 8, pos + 8 + nbytes
        while not inflater.eof:
            data = inflater.unconsumed_tail
            if not data:
                if at == end:
                    return
                data = self._read_at(self.f, at, min(_INFLATE_PIECE, end - at), where)
                at += len(data)
            try:
                piece = inflater.decompress(data, _INFLATE_PIECE)
            except zlib.error as err:
                raise DataError(f"{self.label}: {where} is corrupt: {err}") from None
            if piece:
                yield piece

    def _tag(self, f: IO[bytes], pos: int, end: int, what: str) -> tuple[int, int, int]:
        """The sub-element tag at pos of an array element ending at end -> (data type, byte
        count, data offset), in the normal or the small (data in the tag) format."""
        if pos + 8 > end:
            raise DataError(f"{self.label}: {what}: the tag runs past the end of the array element")
        word, nbytes = self._unpack("II", self._read_at(f, pos, 8, what))
        if word >> 16:  # small data element: 2-byte count, 2-byte type, data in 4 bytes
            if word >> 16 > 4:
                raise DataError(
                    f"{self.label}: {what} is a small element of {word >> 16} bytes (at most 4 fit)"
                )
            return word & 0xFFFF, word >> 16, pos + 4
        if nbytes > end - pos - 8:
            raise DataError(
                f"{self.label}: {what} needs {nbytes} bytes, {end - pos - 8} left in the "
                "array element"
            )
        return word, nbytes, pos + 8

    def _parse_matrix(self, f: IO[bytes], pos: int, nbytes: int, where: str) -> Mat5Var | None:
        """The numeric array of the miMATRIX element whose data is nbytes at pos; None for
        cells, structs, chars and sparse arrays (not DeepSEA arrays)."""
        end = pos + nbytes
        if nbytes == 0:
            return None
        flags_type, flags_bytes, flags_at = self._tag(f, pos, end, f"{where}, its flags")
        if flags_type != _MI_UINT32 or flags_bytes != 8:
            raise DataError(
                f"{self.label}: {where}, its flags are type {flags_type}, {flags_bytes} bytes "
                "(expected miUINT32, 8 bytes)"
            )
        flags = self._unpack("I", self._read_at(f, flags_at, 4, f"{where}, its flags"))[0]
        mclass, is_complex = flags & 0xFF, bool(flags & 0x800)
        what = f"{where}, its dimensions"
        dims_type, dims_bytes, dims_at = self._tag(f, flags_at + 8, end, what)
        if dims_type != _MI_INT32 or dims_bytes % 4 or not 8 <= dims_bytes <= 4 * _MAX_DIMS:
            raise DataError(
                f"{self.label}: {what} are type {dims_type}, {dims_bytes} bytes (expected "
                f"miINT32, 2 to {_MAX_DIMS} of them)"
            )
        dims = self._unpack(f"{dims_bytes // 4}i", self._read_at(f, dims_at, dims_bytes, what))
        name_tag_at = _pad8(dims_at + dims_bytes)
        what = f"{where}, its name"
        name_type, name_bytes, name_at = self._tag(f, name_tag_at, end, what)
        if name_type != _MI_INT8 or name_bytes > _MAX_NAME_BYTES:
            raise DataError(
                f"{self.label}: {what} is type {name_type}, {name_bytes} bytes (expected "
                f"miINT8, at most {_MAX_NAME_BYTES})"
            )
        raw_name = self._read_at(f, name_at, name_bytes, what)
        if not raw_name.isascii() or not raw_name.decode("ascii").isprintable():
            raise DataError(f"{self.label}: {what} holds bytes {raw_name!r}, not ASCII text")
        name = raw_name.decode("ascii")
        small_name = name_at == name_tag_at + 4
        data_tag_at = name_tag_at + 8 if small_name else _pad8(name_at + name_bytes)
        if mclass not in _NUMERIC_CLASSES:
            return None
        if is_complex:
            raise DataError(f"{self.label} {name}: complex array, expected real 0/1 values")
        if any(d < 0 for d in dims):
            raise DataError(f"{self.label} {name}: negative dimension in shape {dims}")
        what = f"{where} ({name}), its data"
        data_type, data_bytes, data_at = self._tag(f, data_tag_at, end, what)
        if data_type not in _DATA_TYPES:
            raise DataError(f"{self.label} {name}: data of type {data_type}, not a numeric type")
        dtype = np.dtype(self.order + _DATA_TYPES[data_type])
        expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
        if data_bytes != expected:
            raise DataError(
                f"{self.label} {name}: data holds {data_bytes} bytes, shape {dims} needs {expected}"
            )
        return Mat5Var(
            name,
            dims,
            dtype,
            np.dtype(_NUMERIC_CLASSES[mclass]),
            data_at,
            f is not self.f,
        )

    def read_rows(self, var: Mat5Var, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of axis 0 of a Fortran-ordered array, as a C-ordered array."""
        if not 0 <= start <= stop <= var.shape[0]:
            raise DataError(
                f"{self.label} {var.name}: rows {start}-{stop} asked of {var.shape[0]} rows"
            )
        n_rows = stop - start
        if n_rows == 0:  # no runs to read, however many trailing indices the shape declares
            return np.zeros((0, *var.shape[1:]), dtype=var.dtype)
        inner = math.prod(var.shape[1:])
        item = var.dtype.itemsize
        run = n_rows * item
        buf = bytearray(run * inner)
        source = self._inflated if var.inflated else self.f
        assert source is not None  # inflated variables come from the temporary file
        fd = _fileno(source)
        for k in range(inner):  # one contiguous run of rows per trailing index
            at = var.offset + (start + var.shape[0] * k) * item
            if fd is not None:
                chunk = os.pread(fd, run, at)
            else:
                source.seek(at)
                chunk = source.read(run)
            if len(chunk) != run:
                raise DataError(f"{self.label} {var.name}: truncated data")
            buf[k * run : (k + 1) * run] = chunk
        flat = np.frombuffer(buf, dtype=var.dtype)
        # Fortran order: rows vary fastest, so the buffer is (trailing..., rows) in C order.
        arr = flat.reshape(tuple(reversed(var.shape[1:])) + (n_rows,))
        return np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim - 1, -1, -1))))

    def close(self) -> None:
        """Free the temporary file of inflated elements; the caller's file stays open."""
        if self._inflated is not None:
            self._inflated.close()
            self._inflated = None

    def __enter__(self) -> Mat5File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fileno(f: IO[bytes]) -> int | None:
    try:
        return f.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


# --------------------------------------------------------------------------- writing


def file_header() -> bytes:
    """A little-endian v5 header without a timestamp, so output is byte-identical."""
    text = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: danq"
    return text.ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"


def _pad8(n: int) -> int:
    return n + (-n) % 8


def _uint8_matrix_header(name: str, dims: tuple[int, ...]) -> tuple[bytes, int]:
    """The miMATRIX tag and sub-elements before a uint8 array's data; and the data size."""
    name_b = name.encode("ascii")
    data_bytes = int(np.prod(dims))
    body = struct.pack("<II", _MI_UINT32, 8) + struct.pack("<II", _MX_UINT8_CLASS, 0)  # flags
    dims_b = struct.pack(f"<{len(dims)}i", *dims)
    body += struct.pack("<II", _MI_INT32, len(dims_b)) + dims_b.ljust(_pad8(len(dims_b)), b"\0")
    body += struct.pack("<II", _MI_INT8, len(name_b)) + name_b.ljust(_pad8(len(name_b)), b"\0")
    body += struct.pack("<II", _MI_UINT8, data_bytes)  # the data follows
    total = len(body) + _pad8(data_bytes)
    return struct.pack("<II", _MI_MATRIX, total) + body, data_bytes


class Mat5Writer:
    """Writes uint8 arrays of fixed shapes into an open binary file, row range by row range.

    The header and every array's space are laid out at once (zero-filled), so rows can be
    written in any order; the caller owns, closes and renames the file.
    """

    def __init__(self, fh: IO[bytes], arrays: Sequence[tuple[str, tuple[int, ...]]]) -> None:
        self._fh = fh
        self._fh.write(file_header())
        self._vars: dict[str, tuple[int, tuple[int, ...]]] = {}
        for name, dims in arrays:
            header, data_bytes = _uint8_matrix_header(name, dims)
            self._fh.write(header)
            self._vars[name] = (self._fh.tell(), dims)
            self._fh.truncate(self._fh.tell() + _pad8(data_bytes))
            self._fh.seek(0, io.SEEK_END)

    def write_rows(self, name: str, start: int, rows: np.ndarray) -> None:
        """Rows [start, start + len(rows)) of array `name`, given C-ordered with its shape."""
        offset, dims = self._vars[name]
        n_rows = rows.shape[0]
        # Fortran order: for each trailing index, the rows form one contiguous run.
        fortran_axes = (0, *range(rows.ndim - 1, 0, -1))
        trailing = rows.transpose(fortran_axes).reshape(n_rows, -1).T
        fd = self._fh.fileno()
        for k, run in enumerate(trailing):
            os.pwrite(fd, np.ascontiguousarray(run).tobytes(), offset + start + dims[0] * k)

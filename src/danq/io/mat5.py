"""MATLAB v5 MAT-files, read and written in row ranges without loading whole arrays.

A v5 file is a 128-byte header followed by tagged elements; each numeric variable is an
miMATRIX element (possibly inside an miCOMPRESSED one) holding flags, dimensions, a name and
the data in Fortran order. `Mat5File` indexes the numeric variables of a file and reads any
range of rows (axis 0) of one of them; `Mat5Writer` lays out uint8 arrays of known shape and
fills them row range by row range. scipy.io would load or build whole arrays in memory.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from danq.errors import DataError

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


def is_mat5_header(head: bytes) -> bool:
    """Whether the first bytes of a file are a MATLAB v5 header (either byte order)."""
    return head[:19] == HEADER_TEXT and head[126:128] in (b"IM", b"MI")


@dataclass(frozen=True)
class Mat5Var:
    """Where one numeric MATLAB v5 array lies: Fortran-ordered data at `offset`."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    class_dtype: np.dtype
    offset: int
    payload: bytes | None  # decompressed element for miCOMPRESSED variables


class Mat5File:
    """The numeric variables of a MATLAB v5 file (`vars`, by name) and row-range reads."""

    def __init__(self, fileobj: IO[bytes], label: str) -> None:
        self.f = fileobj
        self.label = label
        header = self._read_at(0, HEADER_SIZE)
        self.order = "<" if header[126:128] == b"IM" else ">"
        self.vars: dict[str, Mat5Var] = {}
        self.f.seek(0, io.SEEK_END)
        size = self.f.tell()
        pos = HEADER_SIZE
        while pos + 8 <= size:
            mdtype, nbytes = struct.unpack(self.order + "II", self._read_at(pos, 8))
            if pos + 8 + nbytes > size:
                raise DataError(
                    f"{label}: truncated MATLAB file (an element at byte {pos} needs "
                    f"{nbytes} bytes, {size - pos - 8} left)"
                )
            var = self._element_var(mdtype, pos, nbytes)
            if var:
                self.vars[var.name] = var
            pos += 8 + nbytes
            pos += (-pos) % 8 if mdtype != _MI_COMPRESSED else 0

    def _element_var(self, mdtype: int, pos: int, nbytes: int) -> Mat5Var | None:
        """The numeric variable a top-level element holds, if any."""
        if mdtype == _MI_COMPRESSED:
            try:
                element = zlib.decompress(self._read_at(pos + 8, nbytes))
            except zlib.error as err:
                raise DataError(
                    f"{self.label}: corrupt compressed variable at byte {pos}: {err}"
                ) from None
            inner_type, inner_bytes = struct.unpack(self.order + "II", element[:8])
            if inner_type == _MI_MATRIX:
                return self._parse_matrix(io.BytesIO(element), 8, inner_bytes, keep=element)
        elif mdtype == _MI_MATRIX:
            return self._parse_matrix(self.f, pos + 8, nbytes, keep=None)
        return None

    def _read_at(self, pos: int, n: int, f: IO[bytes] | None = None) -> bytes:
        f = f or self.f
        f.seek(pos)
        data = f.read(n)
        if len(data) != n:
            raise DataError(f"{self.label}: truncated MATLAB file (wanted {n} bytes at {pos})")
        return data

    def _subelement(self, f: IO[bytes], pos: int) -> tuple[int, int, int]:
        """Tag at pos -> (data type, byte count, data offset); handles the small format."""
        word, nbytes = struct.unpack(self.order + "II", self._read_at(pos, 8, f))
        if word >> 16:  # small data element: 2-byte count, 2-byte type, data in 4 bytes
            return word & 0xFFFF, word >> 16, pos + 4
        return word, nbytes, pos + 8

    def _parse_matrix(
        self, f: IO[bytes], pos: int, nbytes: int, keep: bytes | None
    ) -> Mat5Var | None:
        end = pos + nbytes
        if nbytes == 0:
            return None
        _, _, flags_at = self._subelement(f, pos)
        flags = struct.unpack(self.order + "I", self._read_at(flags_at, 4, f))[0]
        mclass, is_complex = flags & 0xFF, bool(flags & 0x800)
        pos = flags_at + 8
        dims_type, dims_bytes, dims_at = self._subelement(f, pos)
        dims = struct.unpack(
            f"{self.order}{dims_bytes // 4}i", self._read_at(dims_at, dims_bytes, f)
        )
        pos = dims_at + dims_bytes + (-(dims_at + dims_bytes)) % 8
        _, name_bytes, name_at = self._subelement(f, pos)
        name = self._read_at(name_at, name_bytes, f).decode("ascii", "replace")
        pos = name_at + max(name_bytes, 4 if name_at == pos + 4 else 0)
        pos += (-pos) % 8
        if mclass not in _NUMERIC_CLASSES:
            return None  # cells, structs, chars, sparse: not DeepSEA arrays
        if is_complex:
            raise DataError(f"{self.label} {name}: complex array, expected real 0/1 values")
        data_type, data_bytes, data_at = self._subelement(f, pos)
        if data_type not in _DATA_TYPES or data_at + data_bytes > end:
            raise DataError(f"{self.label} {name}: unreadable data element")
        dtype = np.dtype(self.order + _DATA_TYPES[data_type])
        expected = int(np.prod(dims)) * dtype.itemsize
        if data_bytes != expected:
            raise DataError(
                f"{self.label} {name}: data holds {data_bytes} bytes, shape {tuple(dims)} "
                f"needs {expected}"
            )
        return Mat5Var(
            name,
            tuple(int(d) for d in dims),
            dtype,
            np.dtype(_NUMERIC_CLASSES[mclass]),
            data_at,
            keep,
        )

    def read_rows(self, var: Mat5Var, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of axis 0 of a Fortran-ordered array, as a C-ordered array."""
        n_rows = stop - start
        inner = int(np.prod(var.shape[1:]))
        item = var.dtype.itemsize
        run = n_rows * item
        buf = bytearray(run * inner)
        source = io.BytesIO(var.payload) if var.payload is not None else self.f
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
        flat = np.frombuffer(bytes(buf), dtype=var.dtype)
        # Fortran order: rows vary fastest, so the buffer is (trailing..., rows) in C order.
        arr = flat.reshape(tuple(reversed(var.shape[1:])) + (n_rows,))
        return np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim - 1, -1, -1))))


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

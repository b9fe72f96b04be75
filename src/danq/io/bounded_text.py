"""Text files (FASTA, BED, VCF), plain or gzip-compressed, local or gs://, read within the
reader limits (danq.io.limits): lines are read with a size cap of limits.max_line_length
bytes, and gzip data is inflated as a stream of at most limits.max_decompressed_bytes in all.

A file built to exhaust memory (one line of gigabytes, a small .gz that inflates to
terabytes) fails with the reader's error naming the file, the line and the setting after at
most one capped read past the limit, never after reading the whole of it.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, cast

from danq.errors import DanqError
from danq.io import limits, storage

_GZIP_MAGIC = b"\x1f\x8b"


class BoundedText:
    """A text stream read in capped pieces; `kind` (FASTA, BED, VCF) names it in errors."""

    def __init__(
        self, label: str, stream: IO[bytes], gzipped: bool, error: type[DanqError], kind: str
    ) -> None:
        self.label = label
        self._stream = stream
        self._gzipped = gzipped
        self._error = error
        self._kind = kind
        self._max_line = limits.active().max_line_length
        self._max_inflated = limits.active().max_decompressed_bytes
        self._inflated = 0

    def read(self, size: int) -> bytes:
        """At most `size` bytes (decompressed)."""
        return self._counted(self._stream.read(size))

    def pieces(self) -> Iterator[tuple[int, bytes, bool]]:
        """The text as (1-based line number, piece, whether the piece ends its line): each
        line in pieces of at most max_line_length + 1 bytes, the newline kept."""
        line_no = 1
        while piece := self._counted(self._stream.readline(self._max_line + 1)):
            ends_line = len(piece) <= self._max_line or piece.endswith(b"\n")
            yield line_no, piece, ends_line
            line_no += ends_line

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(1-based line number, line with its newline); a line of more than max_line_length
        bytes (not counting the newline) raises the reader's error."""
        for line_no, piece, ends_line in self.pieces():
            if not ends_line:
                raise self.line_too_long(line_no)
            yield line_no, piece

    def line_too_long(self, line_no: int) -> DanqError:
        return self._error(
            f"{self.label} line {line_no}: longer than {self._max_line} bytes "
            f"(limits.max_line_length); is this {self._kind} text?"
        )

    def _counted(self, data: bytes) -> bytes:
        if self._gzipped:
            self._inflated += len(data)
            if self._inflated > self._max_inflated:
                raise self._error(
                    f"{self.label}: inflates to more than {self._max_inflated} bytes "
                    "(limits.max_decompressed_bytes); a gzip bomb, or raise the limit"
                )
        return data


@contextmanager
def open_text(path: str, error: type[DanqError], kind: str) -> Iterator[BoundedText]:
    """The file's text, inflated when it starts with the gzip magic number; errors reading
    it (a corrupt or truncated gzip member) become `error` naming the file."""
    try:
        raw = storage.open_binary(path)
    except OSError as err:
        raise error(f"{path}: cannot open: {err}") from None
    try:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if gzipped:
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        elif isinstance(raw, io.BufferedIOBase):
            stream = raw
        else:  # gs:// files: a buffered reader gives readline its size cap
            stream = io.BufferedReader(cast(io.RawIOBase, raw))
        with stream:
            yield BoundedText(path, stream, gzipped, error, kind)
    except (OSError, EOFError, zlib.error) as err:
        raise error(f"{path}: unreadable (corrupt or truncated gzip data?): {err}") from None
    finally:
        raw.close()

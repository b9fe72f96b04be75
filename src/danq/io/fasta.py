"""FASTA files, plain or gzip-compressed, local or gs://, read as a stream of records.

Sequence lines may wrap or not and hold blank lines, whitespace and CRLF endings; case is
kept. Every IUPAC nucleotide code is accepted (A C G T N R Y S W K M B D H V, either case);
anything else is refused with the file, line, record and position.

Reading stays within the reader limits (danq.io.limits): a record is refused as soon as it
passes limits.max_record_length bases, a header line longer than limits.max_line_length bytes
is refused (sequence lines are read in pieces of that size, so an unwrapped record counts
against the record limit only), and gzip input is inflated as a stream of at most
limits.max_decompressed_bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from danq.errors import PredictError
from danq.io import limits, storage
from danq.io.bounded_text import BoundedText, open_text

_SNIFF_BYTES = 8192
_MAX_NON_TEXT_SHARE = 0.3
_TEXT_BYTES = np.zeros(256, dtype=bool)
_TEXT_BYTES[32:127] = True
_TEXT_BYTES[list(b"\t\n\r\v\f")] = True
_WHITESPACE = b" \t\r\n\v\f"
# Bytes allowed in FASTA sequence lines: the IUPAC nucleotide codes, either case.
_IUPAC_DNA = np.zeros(256, dtype=bool)
for _code in b"ACGTNRYSWKMBDHVacgtnryswkmbdhv":
    _IUPAC_DNA[_code] = True


@contextmanager
def _fasta_text(path: str) -> Iterator[BoundedText]:
    """The file's text, decompressed when it starts with the gzip magic number."""
    if not storage.exists(path):
        raise PredictError(f"{path}: file not found")
    with open_text(path, PredictError, "FASTA") as text:
        yield text


def is_text(path: str | os.PathLike[str]) -> bool:
    """Whether the file (decompressed) starts as text; raises PredictError when unreadable.

    Text may hold a few non-ASCII bytes (accented descriptions); binary data has NULs or many
    bytes outside printable ASCII.
    """
    with _fasta_text(str(path)) as text:
        head = np.frombuffer(text.read(_SNIFF_BYTES), dtype=np.uint8)
    return not ((head == 0).any() or (~_TEXT_BYTES[head]).sum() > _MAX_NON_TEXT_SHARE * len(head))


def _show_byte(value: int) -> str:
    return repr(chr(value)) if 32 <= value < 127 else f"byte 0x{value:02x}"


def read_fasta(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Stream (record id, sequence) from a FASTA file, plain or gzip-compressed.

    The id is the header's first word. Raises PredictError naming file, line and record on:
    sequence before the first header, a header without a name, an empty record, a repeated
    id, a character that is not an IUPAC DNA code, an empty or binary file, and input past
    the reader limits (see the module doc).
    """
    label = str(path)
    # Refuse binary files up front: their first 'line' would give a misleading error.
    if not is_text(label):
        raise PredictError(
            f"{label}: not a text file (binary content); expected FASTA, plain or gzip-compressed"
        )
    max_record_length = limits.active().max_record_length
    first_line_of: dict[str, int] = {}
    record_id: str | None = None
    sequence = bytearray()
    with _fasta_text(label) as text:
        starts_line = True
        # A piece is a whole line, or a part of one longer than limits.max_line_length.
        for line_no, piece, ends_line in text.pieces():
            continues_line, starts_line = not starts_line, ends_line
            line = piece.strip()
            if not line:
                continue
            if b"\0" in line:
                raise PredictError(f"{label} line {line_no}: binary content (NUL byte)")
            if not continues_line and line.startswith(b">"):
                if not ends_line:
                    raise text.line_too_long(line_no)
                if record_id is not None:
                    yield _finished(label, record_id, sequence, first_line_of)
                record_id = _header_id(line, label, line_no, first_line_of)
                sequence = bytearray()
                continue
            if record_id is None:
                raise PredictError(
                    f"{label} line {line_no}: sequence data before the first '>' header; "
                    "is this a FASTA file?"
                )
            sequence += _sequence_bases(line, label, line_no, record_id, len(sequence))
            if len(sequence) > max_record_length:
                raise PredictError(
                    f"{label} record '{record_id}' line {line_no}: longer than "
                    f"{max_record_length} bases (limits.max_record_length); split the record "
                    "or raise the limit"
                )
    if record_id is None:
        raise PredictError(f"{label}: no FASTA records (the file is empty)")
    yield _finished(label, record_id, sequence, first_line_of)


def _header_id(line: bytes, label: str, line_no: int, first_line_of: dict[str, int]) -> str:
    words = line[1:].decode("utf-8", errors="replace").split()
    if not words:
        raise PredictError(f"{label} line {line_no}: header '>' without a record name")
    record_id = words[0]
    if record_id in first_line_of:
        raise PredictError(
            f"{label} record '{record_id}' line {line_no}: duplicate record id (first seen on "
            f"line {first_line_of[record_id]}); ids must be unique"
        )
    first_line_of[record_id] = line_no
    return record_id


def _sequence_bases(line: bytes, label: str, line_no: int, record_id: str, length: int) -> bytes:
    """The line's (or piece's) bases without whitespace; length: bases of the record before
    it."""
    bases = line.translate(None, _WHITESPACE)
    bad = np.flatnonzero(~_IUPAC_DNA[np.frombuffer(bases, dtype=np.uint8)])
    if bad.size:
        at = int(bad[0])
        raise PredictError(
            f"{label} record '{record_id}' line {line_no}: character "
            f"{_show_byte(bases[at])} at position {length + at + 1} of the record is "
            "not an IUPAC DNA code (A C G T N R Y S W K M B D H V)"
        )
    return bases


def _finished(
    label: str, record_id: str, sequence: bytearray, first_line_of: dict[str, int]
) -> tuple[str, str]:
    if not sequence:
        raise PredictError(
            f"{label} record '{record_id}' (line {first_line_of[record_id]}): empty record, "
            "no sequence before the next header or the end of the file"
        )
    return record_id, sequence.decode("ascii")

"""danq.io.fasta: FASTA records streamed from plain or gzip files, and what is refused."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from danq.errors import PredictError
from danq.io.fasta import is_text, read_fasta


@pytest.mark.parametrize("name", ["in.fa", "in.fa.gz"])
def test_read_fasta_streams_multiline_lowercase_records(
    tmp_path: Path, name: str, write_fasta
) -> None:
    records = {"chr1:100-200": "ACGTNacgtnRYKM" * 5, "second": "GATTACA"}
    path = write_fasta(tmp_path / name, records, width=9)
    assert list(read_fasta(path)) == list(records.items())
    assert list(read_fasta(str(path))) == list(records.items())


def test_read_fasta_tolerates_blank_lines_crlf_spaces_latin1_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "messy.fasta"
    path.write_bytes(b"\r\n>a d\xe9sc\r\nACG T\r\n\r\ngg\r\n>b\r\nN\r\n")
    assert list(read_fasta(path)) == [("a", "ACGTgg"), ("b", "N")]


def test_records_stream_before_a_later_error(tmp_path: Path) -> None:
    path = tmp_path / "in.fa"
    path.write_bytes(b">r1\nACGT\n>r2\nAC*T\n")
    records = read_fasta(path)
    assert next(records) == ("r1", "ACGT")
    with pytest.raises(PredictError, match="record 'r2' line 4"):
        next(records)


BAD_FASTA = {
    "no header": (b"ACGT\n>r1\nACGT\n", ["line 1", "before the first '>' header"]),
    "nameless header": (b">r1\nACGT\n> \nACGT\n", ["line 3", "without a record name"]),
    "empty record": (b">r1\nACGT\n>r2 desc\n\n>r3\nAC\n", ["record 'r2'", "line 3", "empty"]),
    "empty last record": (b">r1\nACGT\n>tail\n", ["record 'tail'", "empty record"]),
    "duplicate id": (
        b">r1\nAC\n>r2\nGT\n>r1 again\nAA\n",
        ["record 'r1'", "line 5", "duplicate", "first seen on line 1"],
    ),
    "bad character": (b">r1\nACGT\nAC*T\n", ["record 'r1'", "line 3", "'*'", "position 7"]),
    "RNA": (b">rna\nACGU\n", ["record 'rna'", "'U'", "position 4", "IUPAC"]),
    "non-ASCII base": (">r1\nACGÄ\n".encode(), ["record 'r1'", "byte 0xc3", "position 4"]),
    # Past the first 8 KiB that are checked for binary content up front.
    "NUL in a line": (b">r1\n" + b"ACGT\n" * 3000 + b"AC\0GT\n", ["line 3002", "NUL byte"]),
    "empty file": (b"", ["no FASTA records"]),
    "blank file": (b"\n \n", ["no FASTA records"]),
    "binary": (bytes(range(256)) * 8, ["not a text file", "expected FASTA"]),
    "truncated gzip": (gzip.compress(b">r1\nACGT\n" * 100)[:-12], ["unreadable", "gzip"]),
}


@pytest.mark.parametrize("case", BAD_FASTA)
def test_bad_fasta_names_file_line_and_record(tmp_path: Path, case: str) -> None:
    content, fragments = BAD_FASTA[case]
    path = tmp_path / ("in.fa.gz" if case == "truncated gzip" else "in.fa")
    path.write_bytes(content)
    with pytest.raises(PredictError) as err:
        list(read_fasta(path))
    message = str(err.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message


def test_is_text(tmp_path: Path) -> None:
    text = tmp_path / "a.fa.gz"
    text.write_bytes(gzip.compress(b">r1\nACGT\n"))
    binary = tmp_path / "b.fa"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert is_text(text) and not is_text(binary)
    with pytest.raises(PredictError, match="file not found"):
        is_text(tmp_path / "missing.fa")

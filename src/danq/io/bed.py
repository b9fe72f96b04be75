"""BED intervals (BED3 and wider, narrowPeak included), checked line by line.

Only the first three columns are read: the contig, a 0-based start and an exclusive end.
Blank lines and `#`, `track` and `browser` lines are skipped. Every other line must have a
contig the genome holds, integer coordinates with 0 <= start < end <= the contig's length;
otherwise DataError names the file, the line and what is wrong. Plain or gzip-compressed,
read within the reader limits (danq.io.bounded_text): lines of at most limits.max_line_length
bytes, gzip inflated to at most limits.max_decompressed_bytes.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from danq.errors import DataError
from danq.io.bounded_text import open_text

_HEADER_PREFIXES = ("#", "track", "browser")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending)."""
    with open_text(str(path), DataError, "BED") as text:
        for line_no, raw in text.lines():
            try:
                yield line_no, raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path} line {line_no}: not UTF-8 text ({err})") from None


def read_bed(path: str | os.PathLike[str], contig_lengths: Mapping[str, int]) -> pd.DataFrame:
    """The file's intervals as a bioframe-style DataFrame (chrom, start, end), in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: BED file not found")
    # 8 bytes a coordinate and one shared string a contig: a file of millions of intervals
    # costs tens of bytes an interval, not hundreds as Python ints and strings.
    contig_names = {name: name for name in contig_lengths}
    chroms: list[str] = []
    starts, ends = array("q"), array("q")
    for line_no, line in _lines(path):
        if not line.strip() or line.startswith(_HEADER_PREFIXES):
            continue
        where = f"{path} line {line_no}"
        fields = line.split(None, 3)
        if len(fields) < 3:
            raise DataError(f"{where}: {len(fields)} column(s), BED needs contig, start, end")
        chrom, start_text, end_text = fields[:3]
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise DataError(
                f"{where}: start {start_text!r} and end {end_text!r} must be integers"
            ) from None
        if chrom not in contig_lengths:
            raise DataError(f"{where}: contig {chrom!r} is not in the genome FASTA")
        if not 0 <= start < end <= contig_lengths[chrom]:
            raise DataError(
                f"{where}: interval {chrom}:{start}-{end} must satisfy 0 <= start < end <= "
                f"{contig_lengths[chrom]} (the contig's length)"
            )
        chroms.append(contig_names[chrom])
        starts.append(start)
        ends.append(end)
    return bed_frame(chroms, starts, ends)


def bed_frame(chroms: list[str], starts: Sequence[int], ends: Sequence[int]) -> pd.DataFrame:
    """Intervals with the column types bioframe checks for, also when there are none."""
    return pd.DataFrame(
        {
            "chrom": pd.Series(chroms, dtype=str),
            "start": np.array(starts, dtype=np.int64),
            "end": np.array(ends, dtype=np.int64),
        }
    )

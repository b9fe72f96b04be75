"""BED intervals (BED3 and wider, narrowPeak included), checked line by line.

Only the first three columns are read: the contig, a 0-based start and an exclusive end.
Blank lines and `#`, `track` and `browser` lines are skipped. Every other line must have a
contig the genome holds, integer coordinates with 0 <= start < end <= the contig's length;
otherwise DataError names the file, the line and what is wrong. Plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from danq.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_PREFIXES = ("#", "track", "browser")
MAX_LINE_CHARS = 100_000  # a BED line is a few dozen characters; more means a wrong file


def _lines(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC
    try:
        if gzipped:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable BED text file ({err})") from None


def read_bed(path: str | os.PathLike[str], contig_lengths: Mapping[str, int]) -> pd.DataFrame:
    """The file's intervals as a bioframe-style DataFrame (chrom, start, end), in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: BED file not found")
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for line_no, line in enumerate(_lines(path), 1):
        if not line.strip() or line.startswith(_HEADER_PREFIXES):
            continue
        where = f"{path} line {line_no}"
        if len(line) > MAX_LINE_CHARS:
            raise DataError(f"{where}: longer than {MAX_LINE_CHARS} characters; not BED")
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
        chroms.append(chrom)
        starts.append(start)
        ends.append(end)
    return bed_frame(chroms, starts, ends)


def bed_frame(chroms: list[str], starts: list[int], ends: list[int]) -> pd.DataFrame:
    """Intervals with the column types bioframe checks for, also when there are none."""
    return pd.DataFrame(
        {
            "chrom": pd.Series(chroms, dtype=str),
            "start": np.array(starts, dtype=np.int64),
            "end": np.array(ends, dtype=np.int64),
        }
    )

"""Hostile text input (FASTA, BED, VCF; plain and gzip) is refused within bounded memory.

Each hostile file is read in a child process that imports only the reader (no TensorFlow)
and prints the error and its peak RSS before and after reading: the growth must stay far
below the size the file would take if it were read whole. The peak is the child's VmHWM
(/proc/self/status), which starts afresh at exec; getrusage's ru_maxrss does not, it carries
the high-water mark of the parent (this pytest process) over into the child.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from danq.config import LimitsConfig
from danq.errors import DataError, PredictError
from danq.io import limits
from danq.io.bed import read_bed
from danq.io.fasta import read_fasta
from danq.predict import fasta_batches, window_starts
from danq.prediction.variants import checked_vcf_text

MB = 2**20
VCF_HEADER = (
    b"##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n"
    b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)
VCF_RECORD = b"chr1\t10\t.\tA\tC\t.\t.\t.\n"

# The child: applies the limits given as JSON, runs one reader over the file, prints a JSON
# line with the error (or None), and its peak RSS in MiB before and after reading.
CHILD = textwrap.dedent(
    """
    import json, sys

    from danq.config import LimitsConfig
    from danq.errors import DanqError
    from danq.io import limits

    def peak_mib():
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        return int(hwm.split()[1]) / 1024

    reader, path, limit_settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    limits.apply(LimitsConfig(**limit_settings))
    if reader == "fasta":
        from danq.io.fasta import read_fasta
        read = lambda: sum(1 for _ in read_fasta(path))
    elif reader == "bed":
        from danq.io.bed import read_bed
        read = lambda: read_bed(path, {"chr1": 1000})
    elif reader == "vcf":
        from danq.prediction.variants import checked_vcf_text
        read = lambda: checked_vcf_text(path)
    else:  # the first 3 batches of stride-1 tiles of 1000 bp
        import itertools
        from danq.predict import fasta_batches
        batches = fasta_batches(path, 1000, 100, "tile", 1)
        read = lambda: sum(len(labels) for labels, _ in itertools.islice(batches, 3))
    before = peak_mib()
    try:
        result, error = read(), None
    except DanqError as err:
        result, error = None, str(err)
    print(json.dumps({"error": error, "before": before, "after": peak_mib(),
                      "result": str(result)}))
    """
)


def read_in_child(reader: str, path: Path, **limit_settings: int) -> dict:
    """What CHILD prints for reader over path; "growth": MiB of peak RSS the reading added."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, reader, str(path), json.dumps(limit_settings)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    report["growth"] = report["after"] - report["before"]
    return report


def write_repeated(path: Path, head: bytes, body: bytes, size: int, tail: bytes = b"") -> Path:
    """head, then body repeated to `size` bytes, then tail; gzip-compressed for a .gz name."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(head)
        block = body * max(1, min(MB, size) // len(body))
        for _ in range(size // len(block)):
            fh.write(block)
        fh.write(tail)
    return path


@pytest.fixture(scope="module")
def huge_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's file: a ~100 KB .gz holding one unwrapped 100 Mb record."""
    path = tmp_path_factory.mktemp("hostile") / "huge_record.fa.gz"
    return write_repeated(path, b">chrBig huge\n", b"A" * MB, 100 * MB, b"\n")


def test_a_100_mb_record_in_100_kb_of_gzip_is_refused_within_bounded_memory(
    huge_record: Path,
) -> None:
    assert huge_record.stat().st_size < 200_000
    report = read_in_child("fasta", huge_record)
    error = report["error"]
    assert error.startswith(f"{huge_record} record 'chrBig' line 2: longer than 10000000 bases")
    assert "limits.max_record_length" in error
    # Refused once past 10 Mb: the record held then is ~10 MB, not the 100 MB of the file.
    assert report["growth"] < 40, report
    assert report["after"] < 250, report


def test_a_wrapped_record_past_a_lowered_record_limit_is_refused(tmp_path: Path) -> None:
    path = write_repeated(tmp_path / "r.fa", b">r1\nACGT\n>r2\n", b"ACGTACGTAC\n", 4096)
    with limits.applied(LimitsConfig(max_record_length=1000)):
        records = read_fasta(path)
        assert next(records) == ("r1", "ACGT")
        # Line 104 takes r2 (from line 4, 10 bases a line) to 1010 bases.
        with pytest.raises(PredictError, match=r"record 'r2' line 104: longer than 1000 bases"):
            next(records)


ENORMOUS_LINES = {
    # reader, file name, head, repeated body, the error's start (after the file name)
    "fasta header": ("fasta", "in.fa", b">", b"x" * 1024, " line 1: longer than 1048576 bytes"),
    "fasta header gz": ("fasta", "in.fa.gz", b">", b"x" * 1024, " line 1: longer than 1048576"),
    "fasta junk gz": ("fasta", "in.fa.gz", b"", b"A" * 1024, " line 1: sequence data before"),
    "bed": ("bed", "in.bed", b"chr1\t0\t10\n", b"9" * 1024, " line 2: longer than 1048576"),
    "bed gz": ("bed", "in.bed.gz", b"", b"chr1 " * 256, " line 1: longer than 1048576 bytes"),
    "vcf": ("vcf", "in.vcf", VCF_HEADER + b"chr1\t1\t", b"." * 1024, " line 4: longer than"),
    "vcf header gz": ("vcf", "in.vcf.gz", b"##INFO=<", b"A" * 1024, " line 1: longer than"),
}


@pytest.mark.parametrize("case", ENORMOUS_LINES)
def test_an_enormous_line_without_newline_is_refused_unread(tmp_path: Path, case: str) -> None:
    reader, name, head, body, message = ENORMOUS_LINES[case]
    size = 256 * MB if name.endswith(".gz") else 64 * MB  # inflated; plain files kept smaller
    path = write_repeated(tmp_path / name, head, body, size)
    report = read_in_child(reader, path)
    assert report["error"].startswith(f"{path}{message}"), report
    if "longer than" in message:
        assert "(limits.max_line_length)" in report["error"]
    # At most one capped read (1 MiB) of the line is held, not its 64 or 256 MiB.
    assert report["growth"] < 16, report


BOMBS = {
    "fasta": ("bomb.fa.gz", b">r1\n", b"ACGT" * 19 + b"\n"),
    "bed": ("bomb.bed.gz", b"", b"chr1\t0\t10\n"),
    "vcf": ("bomb.vcf.gz", VCF_HEADER, VCF_RECORD),
}


@pytest.mark.parametrize("reader", BOMBS)
def test_a_gzip_bomb_is_refused_past_max_decompressed_bytes(tmp_path: Path, reader: str) -> None:
    name, head, body = BOMBS[reader]
    path = write_repeated(tmp_path / name, head, body, 256 * MB)
    assert path.stat().st_size < 2 * MB
    report = read_in_child(reader, path, max_decompressed_bytes=4 * MB)
    error = report["error"]
    assert error == (
        f"{path}: inflates to more than {4 * MB} bytes (limits.max_decompressed_bytes); "
        "a gzip bomb, or raise the limit"
    ), report
    assert report["growth"] < 48, report


def test_readers_accept_input_just_within_the_limits(tmp_path: Path) -> None:
    fasta = tmp_path / "ok.fa.gz"
    fasta.write_bytes(gzip.compress(b">r1\n" + b"A" * 200 + b"\n>r2\n" + b"C" * 100 + b"\n"))
    bed = tmp_path / "ok.bed"
    bed.write_bytes(b"chr1\t0\t10\t" + b"n" * 90 + b"\n")  # 100 bytes, the newline not counted
    vcf = tmp_path / "ok.vcf"
    vcf.write_bytes(VCF_HEADER + VCF_RECORD)
    within = LimitsConfig(max_record_length=200, max_line_length=200, max_decompressed_bytes=310)
    with limits.applied(within):
        assert [len(s) for _, s in read_fasta(fasta)] == [200, 100]  # 310 bytes inflated
        assert read_bed(bed, {"chr1": 1000}).values.tolist() == [["chr1", 0, 10]]
        assert checked_vcf_text(str(vcf)) == 4
    with limits.applied(LimitsConfig(max_line_length=99)):
        with pytest.raises(DataError, match=r"ok.bed line 1: longer than 99 bytes"):
            read_bed(bed, {"chr1": 1000})


def test_bed_and_vcf_errors_name_file_and_line(tmp_path: Path) -> None:
    bed = tmp_path / "latin1.bed"
    bed.write_bytes(b"chr1\t0\t10\nchr1\t0\t10\tna\xefve\n")
    with pytest.raises(DataError, match=rf"^{bed} line 2: not UTF-8 text"):
        read_bed(bed, {"chr1": 1000})
    truncated = tmp_path / "t.vcf.gz"
    truncated.write_bytes(gzip.compress(VCF_HEADER + VCF_RECORD * 100)[:-12])
    with pytest.raises(DataError, match=rf"^{truncated}: unreadable \(corrupt or truncated"):
        checked_vcf_text(str(truncated))


def test_stride_1_tiling_of_a_10_mb_record_is_lazy(tmp_path: Path) -> None:
    starts = window_starts(10_000_000, 1000, "tile", 1)
    assert isinstance(starts, range) and len(starts) == 9_999_001
    assert (starts[0], starts[-1]) == (0, 9_999_000)
    path = write_repeated(tmp_path / "long.fa", b">long\n", b"ACGTN" * 12 + b"\n", 10_000_000)
    batches = fasta_batches(str(path), 1000, 100, "tile", 1)
    assert isinstance(batches, Iterator)
    report = read_in_child("tiles", path)
    assert (report["error"], report["result"]) == (None, "300")
    # A record (~8 MB as text, codes and padded codes) and a batch; a list of the ~8e6 starts
    # alone would be ~300 MB.
    assert report["growth"] < 100, report

"""VCF records as alleles to score: the allele checks, the REF check against the genome and
the reference and alternative windows.

Coordinates. VCF POS is 1-based; here p = POS - 1 is the 0-based genome position of the
allele's first REF base. For a model of input length L the reference window covers 0-based
positions [p - L//2, p - L//2 + L): the first REF base sits at window index L//2 (0-based),
the exact centre for odd L and the right one of the two middle positions for even L.

Alleles. REF is substituted at index L//2 of the window: where it matches the genome the
reference window is the genome's own sequence. The alternative window keeps the same left
flank (indices 0 .. L//2 - 1), then the ALT bases, then the genome after the REF bases for
as many bases as fill L. An indel's length change is thus absorbed at the right end: a
deletion of k bases reads k more genome bases there, an insertion of k bases drops the last
k. REF and ALT longer than `max_allele_length` (or than the L - L//2 bases from the centre to
the window's right end) are skipped. Window positions before a contig's start or past its
end are N, and the allele is flagged `edge`.

REF check (case-insensitive, against the FASTA): `ref_mismatch` when the genome's bases at p
are not REF; `swapped` when they are not REF but are ALT (ALT and REF exchanged in the VCF).
A mismatched allele is scored as written: REF substituted into the genome. With fix_swapped a
swapped allele is scored the other way round, the genome (which carries the VCF's ALT) as
reference and the VCF's REF as alternative, and flagged `swapped,fixed`.

Skipped alleles (reason codes): `no_alt` (ALT '.'), `symbolic` (<DEL>, <INS:ME>, ...),
`spanning_deletion` ('*'), `breakend` (t[p[, .t, ...), `alt_equals_ref`,
`allele_too_long`, `contig_not_in_fasta`, `outside_contig` (REF past the contig's end).
A REF or ALT that is none of these and not a run of A/C/G/T/N is a malformed line: an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from danq.errors import DataError
from danq.io.bounded_text import open_text
from danq.prediction.genome import Genome

if TYPE_CHECKING:
    import pysam

BASES = re.compile(r"^[ACGTNacgtn]+$")
_BREAKEND = re.compile(r"[\[\]]|^\.[A-Za-z]|[A-Za-z]\.$")

FLAG_EDGE = "edge"
FLAG_REF_MISMATCH = "ref_mismatch"
FLAG_SWAPPED = "swapped"
FLAG_FIXED = "fixed"
FLAGS = (FLAG_EDGE, FLAG_REF_MISMATCH, FLAG_SWAPPED, FLAG_FIXED)
SKIP_REASONS = (
    "no_alt",
    "symbolic",
    "spanning_deletion",
    "breakend",
    "alt_equals_ref",
    "allele_too_long",
    "contig_not_in_fasta",
    "outside_contig",
)

Fetch = Callable[[int, int], str]  # 0-based [start, end) of one contig, N outside it


@dataclass(frozen=True)
class Allele:
    """One ALT of a VCF record, as written, and how it is scored.

    contig: the FASTA's name for the record's CHROM; scored_ref/scored_alt: the alleles put in
    the reference and alternative windows (the VCF's, or exchanged by fix_swapped); skip: the
    reason it is not scored, else None."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    flags: tuple[str, ...] = ()
    skip: str | None = None
    contig: str = ""
    scored_ref: str = ""
    scored_alt: str = ""

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What its windows depend on: equal keys, equal windows."""
        return self.contig, self.pos, self.scored_ref, self.scored_alt


def alt_skip_reason(alt: str | None) -> str | None:
    """Why an ALT is not a sequence allele (a skip reason), None when it is one."""
    if alt is None or alt == ".":
        return "no_alt"
    if alt == "*":
        return "spanning_deletion"
    if alt.startswith("<"):
        return "symbolic"
    if _BREAKEND.search(alt):
        return "breakend"
    return None


def ref_status(genome_bases: str, ref: str, alt: str) -> str | None:
    """None when the genome (upper case, from p on, at least max(len(ref), len(alt)) bases)
    carries REF, else FLAG_SWAPPED when it carries ALT instead, else FLAG_REF_MISMATCH."""
    if genome_bases[: len(ref)] == ref:
        return None
    if genome_bases[: len(alt)] == alt:
        return FLAG_SWAPPED
    return FLAG_REF_MISMATCH


def allele_window(fetch: Fetch, p: int, replaced: int, allele: str, seq_len: int) -> str:
    """The window of seq_len bases with `allele` put in place of the `replaced` genome bases at
    0-based p, at window index seq_len // 2 (see the module doc)."""
    start = p - seq_len // 2
    right = seq_len - seq_len // 2 - len(allele)
    after = p + replaced
    return fetch(start, p) + allele + fetch(after, after + right)


def window_reach(p: int, replaced: int, alleles: tuple[str, str], seq_len: int) -> range:
    """The genome positions the windows of an allele pair read (the reference allele first,
    replacing `replaced` bases)."""
    after = p + replaced
    shortest = min(len(a) for a in alleles)
    return range(p - seq_len // 2, after + seq_len - seq_len // 2 - shortest)


def prepare_alleles(
    record: pysam.VariantRecord,
    line: int,
    label: str,
    genome: Genome,
    seq_len: int,
    max_allele_length: int,
    fix_swapped: bool,
) -> list[Allele]:
    """The record's ALTs, one Allele each, checked and oriented as the module doc says.

    Raises DataError naming file and line for a malformed REF, POS or ALT."""
    ref = record.ref or ""
    if not BASES.match(ref):
        raise DataError(f"{label} line {line}: REF {ref!r} is not a run of A, C, G, T, N")
    if record.pos < 1:
        raise DataError(f"{label} line {line}: POS {record.pos} is not a 1-based position")
    contig = genome.resolve(record.chrom)
    alleles = []
    for alt in record.alts or (None,):
        allele = Allele(record.chrom, record.pos, record.id or ".", ref, alt or ".")
        skip = alt_skip_reason(alt)
        if skip is None and alt is not None and not BASES.match(alt):
            raise DataError(
                f"{label} line {line}: ALT {alt!r} is neither a run of A, C, G, T, N nor a "
                "symbolic, spanning-deletion or breakend allele"
            )
        if skip is None and alt is not None:
            skip, allele = _checked(allele, contig, genome, seq_len, max_allele_length, fix_swapped)
        alleles.append(replace(allele, skip=skip) if skip else allele)
    return alleles


def _checked(
    allele: Allele,
    contig: str | None,
    genome: Genome,
    seq_len: int,
    max_allele_length: int,
    fix_swapped: bool,
) -> tuple[str | None, Allele]:
    """A sequence allele's skip reason, or None and the allele oriented and flagged."""
    ref, alt = allele.ref.upper(), allele.alt.upper()
    if ref == alt:
        return "alt_equals_ref", allele
    if max(len(ref), len(alt)) > min(max_allele_length, seq_len - seq_len // 2):
        return "allele_too_long", allele
    if contig is None:
        return "contig_not_in_fasta", allele
    p, length = allele.pos - 1, genome.contigs[contig]
    if p + len(ref) > length:
        return "outside_contig", allele
    status = ref_status(genome.fetch(contig, p, p + max(len(ref), len(alt))), ref, alt)
    flags: list[str] = []
    scored = (ref, alt)
    if status == FLAG_SWAPPED and fix_swapped:
        flags, scored = [FLAG_SWAPPED, FLAG_FIXED], (alt, ref)
    elif status is not None:
        flags = [status]
    reach = window_reach(p, len(scored[0]), scored, seq_len)
    if reach.start < 0 or reach.stop > length:
        flags.insert(0, FLAG_EDGE)
    return None, replace(
        allele, flags=tuple(flags), contig=contig, scored_ref=scored[0], scored_alt=scored[1]
    )


def allele_windows(genome: Genome, allele: Allele, seq_len: int) -> tuple[str, str]:
    """The reference and alternative windows of a scored allele."""
    contig = allele.contig

    def fetch(start: int, end: int) -> str:
        return genome.fetch(contig, start, end)

    p, replaced = allele.pos - 1, len(allele.scored_ref)
    return (
        allele_window(fetch, p, replaced, allele.scored_ref, seq_len),
        allele_window(fetch, p, replaced, allele.scored_alt, seq_len),
    )


def checked_vcf_text(path: str) -> int:
    """Read the VCF (plain or bgzip) through once within the reader limits, before htslib
    opens it: htslib reads a line whole however long it is, and inflates without a cap. A line
    longer than limits.max_line_length, or more than limits.max_decompressed_bytes inflated,
    is a DataError naming the file (and the line). Returns the 1-based line of the first
    record (after the header's '#' lines)."""
    first_record_line = None
    line_no = 0
    with open_text(path, DataError, "VCF") as text:
        for line_no, line in text.lines():
            if first_record_line is None and not line.startswith(b"#"):
                first_record_line = line_no
    return first_record_line or line_no + 1


def numbered_records(
    vcf: pysam.VariantFile, label: str, first_record_line: int
) -> Iterator[tuple[int, pysam.VariantRecord]]:
    """The VCF's records with their line numbers; a line htslib cannot parse becomes a
    DataError naming the file and line (records follow the header one per line: htslib
    refuses blank lines too)."""
    records = iter(vcf)
    line = first_record_line
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (OSError, ValueError) as err:
            raise DataError(f"{label} line {line}: malformed VCF record ({err})") from None
        yield line, record
        line += 1

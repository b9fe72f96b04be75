"""The user's genome FASTA with padded random access, contig names reconciled with a VCF's,
and the genome build check between a model and that FASTA.

The FASTA is opened by danq.io.genome (pysam.FastaFile: plain or bgzip-compressed, its `.fai`
and `.gzi` built beside it when missing; plain gzip is refused with the command that
converts it). Bases come back upper-case (soft-masked lower case is not a different base);
positions before a contig's start or past its end read as N.

Contig names: a VCF name missing from the FASTA is looked up as `chr<name>` / without its
`chr` prefix, and the mitochondrion as any of chrM, MT, chrMT, M; each renaming is recorded
once (`Genome.renames`) for the caller to report.

Genome builds: training records `{"build", "contigs", "fasta_md5"}` in the model's metadata
(`genome.build` setting, and the data folder's metadata.json "genome" when the data was cut
from a FASTA). `check_build` compares that with the FASTA given for scoring: the declared
builds (aliases hg19 = GRCh37, hg38 = GRCh38, mm10 = GRCm38, mm39 = GRCm39), chr1's length
against those builds' chr1, and the lengths of the contigs both genomes have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from danq.errors import DataError
from danq.io import genome as io_genome
from danq.io.genome import CHR1_LENGTHS, canonical_build

if TYPE_CHECKING:
    import pysam

MITOCHONDRIAL_NAMES = ("chrM", "MT", "chrMT", "M")
_SHOWN_CONTIGS = 3


def name_candidates(name: str) -> list[str]:
    """The FASTA names a VCF contig name may stand for, the name itself first."""
    if name in MITOCHONDRIAL_NAMES:
        return [name, *(m for m in MITOCHONDRIAL_NAMES if m != name)]
    return [name, name[3:] if name.startswith("chr") else f"chr{name}"]


class Genome:
    """An open, indexed FASTA: contig lengths, padded fetches, reconciled contig names."""

    def __init__(self, fasta: pysam.FastaFile, label: str) -> None:
        self.label = label
        self.contigs: dict[str, int] = dict(zip(fasta.references, fasta.lengths))
        self.renames: dict[str, str] = {}  # VCF name -> FASTA name, where they differ
        self._fasta = fasta
        self._resolved: dict[str, str | None] = {}

    def find(self, name: str) -> str | None:
        """The FASTA contig that `name` stands for, or None."""
        return next((c for c in name_candidates(name) if c in self.contigs), None)

    def resolve(self, name: str) -> str | None:
        """find(name), recording a renaming for the report."""
        if name not in self._resolved:
            found = self._resolved[name] = self.find(name)
            if found is not None and found != name:
                self.renames[name] = found
        return self._resolved[name]

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Upper-case bases of 0-based positions [start, end) of contig; N outside it."""
        length = self.contigs[contig]
        lo, hi = max(start, 0), min(end, length)
        inner = self._fasta.fetch(contig, lo, hi).upper() if lo < hi else ""
        left = max(0, min(end, 0) - start)
        return "N" * left + inner + "N" * (end - start - left - len(inner))


@contextmanager
def open_genome(path: str | os.PathLike[str]) -> Iterator[Genome]:
    """The FASTA at path, opened by danq.io.genome (index built beside it when missing;
    plain gzip refused with the command that converts it), closed on exit."""
    fasta = io_genome.open_genome(path)
    try:
        if not fasta.references:
            raise DataError(f"{path}: no FASTA records")
        yield Genome(fasta, str(path))
    finally:
        fasta.close()


# --------------------------------------------------------------------------- genome builds


def build_of_fasta(genome: Genome) -> str | None:
    """The assembly whose chr1 length the FASTA's chr1 (or 1) has, if it is a known one."""
    chr1 = genome.find("chr1")
    length = genome.contigs.get(chr1) if chr1 else None
    return next((b for b, n in CHR1_LENGTHS.items() if n == length), None)


@dataclass
class BuildCheck:
    """problems: disagreements between the model's genome and the FASTA (refused unless
    allowed); warnings: what could not be checked."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _contig_problems(recorded: Mapping[str, int], genome: Genome) -> list[str]:
    shared = {name: genome.find(name) for name in recorded}
    found = {name: fasta for name, fasta in shared.items() if fasta is not None}
    if not found:
        names = ", ".join(sorted(recorded)[:_SHOWN_CONTIGS])
        return [
            f"none of the {len(recorded)} contigs of the training genome ({names}, ...) is in "
            f"{genome.label}"
        ]
    differing = [
        f"{name}: {recorded[name]:,} bp in the training genome, {genome.contigs[fasta]:,} bp "
        f"in {genome.label}"
        for name, fasta in sorted(found.items())
        if genome.contigs[fasta] != recorded[name]
    ]
    return differing[:_SHOWN_CONTIGS]


def check_build(
    model_genome: Mapping[str, Any] | None, genome: Genome, declared_build: str | None = None
) -> BuildCheck:
    """Compare the genome a model was trained on (model_genome_record) with the FASTA, and
    with the build the user declares it to be."""
    check = BuildCheck()
    model_genome = model_genome or {}
    build, contigs = model_genome.get("build"), model_genome.get("contigs")
    fasta_build = build_of_fasta(genome)
    if declared_build and fasta_build and canonical_build(declared_build) != fasta_build:
        check.problems.append(
            f"{genome.label} is declared {declared_build} but its chr1 length is {fasta_build}'s"
        )
    if build:
        trained = canonical_build(build)
        if declared_build and canonical_build(declared_build) != trained:
            check.problems.append(
                f"the model was trained on {build}, {genome.label} is declared {declared_build}"
            )
        if fasta_build and fasta_build != trained:
            check.problems.append(
                f"the model was trained on {build}, {genome.label}'s chr1 length is {fasta_build}'s"
            )
    if contigs:
        check.problems.extend(_contig_problems(contigs, genome))
    if not build and not contigs:
        check.warnings.append(
            "the model records no genome build: whether "
            f"{genome.label} is the genome it was trained on is not checked"
        )
    elif build and not contigs and not declared_build and not fasta_build:
        check.warnings.append(
            f"the model was trained on {build}; the build of {genome.label} is not known "
            "(declare it to have it checked)"
        )
    return check

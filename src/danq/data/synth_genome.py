"""A small synthetic genome with planted JASPAR motifs, their BED, and example SNVs as VCF.

Each contig is a run of tiles of `synth.seq_len` bases made by the `danq data synth`
generator (danq.data.synth.generate_chunk_with_sites): the same background (GC content, CpG
depletion, runs of N at a tile end), the same motifs, matrices and grammar arrangements. So a
model trained on `danq data synth` output has seen sequences like this genome's windows.
Contig i (1-based) is named `<contig_prefix><i>` and has contig_length // i bases.

Files written (names in danq.artifacts), all deterministic for the settings and seed:
- genome.fa (+ genome.fa.fai): 60 bases per line, upper case, N in the gaps;
- motifs.bed: BED9, one line per planted instance, sorted; name `<matrix id>_<TF name>`,
  strand + or -, thickStart/thickEnd the instance's core base (see below), score 0;
- variants.vcf.gz (+ .tbi, bgzipped by pysam): SNVs with INFO `SYNTH_CLASS` = `motif_core`
  (the core base of a planted instance changed to the base the motif's matrix gives the lowest
  probability there; INFO `MOTIF` names the motif as in the BED) or `background` (at least
  background_margin bp from every planted instance, not next to an N; ALT drawn uniformly);
- genome.json: contigs and lengths, the FASTA's md5, the motifs (core offset, its information
  in bits), the variant counts and the settings.

The core of a motif is the position of its JASPAR matrix with the most information
(2 + sum p log2 p; the first such position on ties), counted on the motif's own strand. A
motif-core SNV is made only where the planted base is the matrix's most likely base there, so
every one of them replaces a consensus base with the rarest one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from danq import artifacts
from danq.config import SynthConfig, SynthGenomeConfig
from danq.data.encoding import ALPHABET, N_CODE, decode
from danq.data.jaspar import motifs_by_id
from danq.data.synth import generate_chunk_with_sites, grammar, sharpen
from danq.io.genome import file_md5

FASTA_LINE = 60
MOTIF_CORE = "motif_core"
BACKGROUND = "background"
_COMPLEMENT = [3, 2, 1, 0]  # A,G,C,T codes -> complement codes


@dataclass(frozen=True)
class Motif:
    matrix_id: str
    name: str
    length: int
    core: int  # 0-based offset of the most informative position, on the motif's strand
    core_bits: float
    consensus: int  # base code the matrix gives the highest probability at the core
    rarest: int  # ... and the lowest

    @property
    def label(self) -> str:
        return f"{self.matrix_id}_{self.name}"


@dataclass(frozen=True)
class Instance:
    contig: str
    start: int  # 0-based
    motif: int
    strand: int  # +1, -1

    def core_position(self, motifs: list[Motif]) -> int:
        m = motifs[self.motif]
        return self.start + (m.core if self.strand > 0 else m.length - 1 - m.core)


@dataclass(frozen=True)
class Snv:
    contig: str
    position: int  # 0-based
    ref: int
    alt: int
    category: str
    motif: str | None


def motif_cores(found: list[tuple[str, str, np.ndarray]]) -> list[Motif]:
    """Motifs (matrix id, TF name, PFM) with their core position (most informative) and its
    most and least likely bases."""
    motifs = []
    for matrix_id, name, pfm in found:
        with np.errstate(divide="ignore", invalid="ignore"):
            bits = 2 + np.nansum(np.where(pfm > 0, pfm * np.log2(pfm), 0.0), axis=1)
        core = int(np.argmax(bits))
        motifs.append(
            Motif(
                matrix_id,
                name,
                len(pfm),
                core,
                round(float(bits[core]), 4),
                int(np.argmax(pfm[core])),
                int(np.argmin(pfm[core])),
            )
        )
    return motifs


def contig_lengths(cfg: SynthGenomeConfig) -> dict[str, int]:
    return {f"{cfg.contig_prefix}{i}": cfg.contig_length // i for i in range(1, cfg.contigs + 1)}


def build_contig(
    synth: SynthConfig, pfms: list[np.ndarray], length: int, seed: int, index: int
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Base codes of one contig and its planted sites (start, motif index, strand)."""
    tile = synth.seq_len
    n_tiles = -(-length // tile)
    rules = grammar(len(pfms))
    codes, sites = [], []
    for chunk, first in enumerate(range(0, n_tiles, synth.chunk_size)):
        count = min(synth.chunk_size, n_tiles - first)
        rng = np.random.default_rng([seed, index, chunk])
        tiles, _, planted = generate_chunk_with_sites(synth, pfms, rules, count, rng)
        codes.append(tiles.reshape(-1))
        for offset, tile_sites in enumerate(planted, start=first):
            sites += [(offset * tile + s.start, s.motif, s.strand) for s in tile_sites]
    contig = np.concatenate(codes)[:length]
    motif_lengths = [len(p) for p in pfms]
    kept = [s for s in sites if s[0] + motif_lengths[s[1]] <= length]
    return contig, sorted(kept)


def motif_core_snvs(
    instances: list[Instance],
    genome: dict[str, np.ndarray],
    motifs: list[Motif],
    n: int,
    rng: np.random.Generator,
) -> list[Snv]:
    """Up to n SNVs, each at the core of a distinct planted instance whose core base is the
    consensus, turning it into the motif's rarest base (both read on the motif's strand)."""
    eligible = []
    for inst in instances:
        m, pos = motifs[inst.motif], inst.core_position(motifs)
        consensus = m.consensus if inst.strand > 0 else _COMPLEMENT[m.consensus]
        if genome[inst.contig][pos] == consensus:
            eligible.append(inst)
    chosen = rng.choice(len(eligible), size=min(n, len(eligible)), replace=False)
    snvs = []
    for i in sorted(chosen.tolist()):
        inst = eligible[i]
        m, pos = motifs[inst.motif], inst.core_position(motifs)
        alt = m.rarest if inst.strand > 0 else _COMPLEMENT[m.rarest]
        snvs.append(Snv(inst.contig, pos, int(genome[inst.contig][pos]), alt, MOTIF_CORE, m.label))
    return snvs


def background_snvs(
    instances: list[Instance],
    genome: dict[str, np.ndarray],
    motifs: list[Motif],
    n: int,
    margin: int,
    rng: np.random.Generator,
) -> list[Snv]:
    """n SNVs at positions at least `margin` bp from every planted instance and from N."""
    allowed = {name: codes != N_CODE for name, codes in genome.items()}
    for inst in instances:
        lo = max(inst.start - margin, 0)
        allowed[inst.contig][lo : inst.start + motifs[inst.motif].length + margin] = False
    for name, codes in genome.items():  # a base next to an N: contig-edge cases are VEP's
        near_n = np.flatnonzero(codes == N_CODE)
        for offset in (-1, 1):
            allowed[name][np.clip(near_n + offset, 0, len(codes) - 1)] = False
    names = list(genome)
    positions = {name: np.flatnonzero(allowed[name]) for name in names}
    weights = np.array([len(positions[name]) for name in names], dtype=np.float64)
    contig_of = rng.choice(len(names), size=n, p=weights / weights.sum())
    snvs = []
    for c in range(len(names)):
        count = int((contig_of == c).sum())
        picked = rng.choice(positions[names[c]], size=count, replace=False)
        for pos in picked.tolist():
            ref = int(genome[names[c]][pos])
            alt = int((ref + rng.integers(1, 4)) % 4)
            snvs.append(Snv(names[c], pos, ref, alt, BACKGROUND, None))
    return snvs


def _fasta_lines(genome: dict[str, np.ndarray]) -> Iterator[str]:
    for name, codes in genome.items():
        yield f">{name}\n"
        text = decode(codes)
        for i in range(0, len(text), FASTA_LINE):
            yield text[i : i + FASTA_LINE] + "\n"


def _write_bed(path: Path, instances: list[Instance], motifs: list[Motif]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for inst in instances:
            m = motifs[inst.motif]
            core = inst.core_position(motifs)
            strand = "+" if inst.strand > 0 else "-"
            fh.write(
                f"{inst.contig}\t{inst.start}\t{inst.start + m.length}\t{m.label}\t0\t{strand}"
                f"\t{core}\t{core + 1}\t0\n"
            )


def _write_vcf(path: Path, snvs: list[Snv], lengths: dict[str, int], order: list[str]) -> None:
    import pysam

    header = pysam.VariantHeader()
    header.add_meta("source", artifacts.SYNTH_GENOME_GENERATOR)
    for name, length in lengths.items():
        header.contigs.add(name, length=length)
    header.add_meta(
        "INFO",
        items=[
            ("ID", "SYNTH_CLASS"),
            ("Number", "1"),
            ("Type", "String"),
            ("Description", f"{MOTIF_CORE}: breaks a planted motif's core; {BACKGROUND}: away"),
        ],
    )
    header.add_meta(
        "INFO",
        items=[
            ("ID", "MOTIF"),
            ("Number", "1"),
            ("Type", "String"),
            ("Description", "the motif whose core the SNV changes (<matrix id>_<TF name>)"),
        ],
    )
    rank = {name: i for i, name in enumerate(order)}
    with pysam.VariantFile(str(path), "wz", header=header) as vcf:
        for k, snv in enumerate(sorted(snvs, key=lambda v: (rank[v.contig], v.position))):
            info = {"SYNTH_CLASS": snv.category}
            if snv.motif is not None:
                info["MOTIF"] = snv.motif
            record = vcf.new_record(
                contig=snv.contig,
                start=snv.position,
                alleles=(ALPHABET[snv.ref], ALPHABET[snv.alt]),
                id=f"synth{k + 1}",
                info=info,
            )
            vcf.write(record)
    pysam.tabix_index(str(path), preset="vcf", force=True)


def write_genome(
    out_dir: str | os.PathLike[str], cfg: SynthGenomeConfig, synth: SynthConfig
) -> dict[str, Any]:
    """Write the genome folder (see the module doc) atomically; return its metadata."""
    import pysam

    found = motifs_by_id(list(synth.motifs), synth.jaspar_release)
    motifs = motif_cores(found)
    pfms = [sharpen(pfm, synth.motif_temperature) for _, _, pfm in found]
    lengths = contig_lengths(cfg)
    genome: dict[str, np.ndarray] = {}
    instances: list[Instance] = []
    for index, (name, length) in enumerate(lengths.items()):
        genome[name], sites = build_contig(synth, pfms, length, cfg.seed, index)
        instances += [Instance(name, start, motif, strand) for start, motif, strand in sites]
    rng = np.random.default_rng([cfg.seed, len(lengths)])
    snvs = motif_core_snvs(instances, genome, motifs, cfg.motif_core_variants, rng)
    snvs += background_snvs(
        instances, genome, motifs, cfg.background_variants, cfg.background_margin, rng
    )

    out = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".synth-genome-", dir=artifacts.staging_parent(out)))
    try:
        fasta = staging / artifacts.SYNTH_GENOME_FASTA_FILE
        with open(fasta, "w", encoding="ascii", newline="\n") as fh:
            fh.writelines(_fasta_lines(genome))
        pysam.faidx(str(fasta))
        _write_bed(staging / artifacts.SYNTH_GENOME_MOTIFS_FILE, instances, motifs)
        _write_vcf(staging / artifacts.SYNTH_GENOME_VARIANTS_FILE, snvs, lengths, list(lengths))
        metadata: dict[str, Any] = {
            "generator": artifacts.SYNTH_GENOME_GENERATOR,
            "build": f"danq-synth-genome-seed{cfg.seed}",
            "fasta_md5": file_md5(fasta),
            "contigs": lengths,
            "tile_length": synth.seq_len,
            "motif_temperature": synth.motif_temperature,
            "jaspar_release": synth.jaspar_release,
            "motifs": [
                {"id": m.matrix_id, "name": m.name, "label": m.label, "length": m.length}
                | {"core": m.core, "core_bits": m.core_bits}
                for m in motifs
            ],
            "instances": len(instances),
            "variants": {
                MOTIF_CORE: sum(s.category == MOTIF_CORE for s in snvs),
                BACKGROUND: sum(s.category == BACKGROUND for s in snvs),
            },
            "settings": cfg.model_dump(),
        }
        artifacts.write_text(
            staging / artifacts.SYNTH_GENOME_METADATA_FILE,
            json.dumps(metadata, indent=2, sort_keys=True) + "\n",
        )
        artifacts.publish_dir(staging, out, artifacts.SYNTH_GENOME_METADATA_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metadata

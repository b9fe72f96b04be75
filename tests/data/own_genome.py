"""A small genome with peaks around planted motifs, written as real files: the input of
`danq data from-bed` in tests/data/test_from_bed.py and tests/e2e/test_own_data.py.

Contigs chr1..chr9 (so DeepSEA's hold-out defaults apply) of random sequence whose GC content
varies in 5-kb isochores, two motifs planted more often in GC-rich isochores (so positives are
GC-richer than the genome, and random negatives are not GC-matched), a peak of PEAK_BP around
every planted motif, a third target with peaks at random places (a target no sequence rule
explains), and a run of N on chr2; a peak sheet listing the three targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOTIFS = {"motif_a": "CACGTGACGCTA", "motif_b": "TTGATAAGGCAT"}
PEAK_BP = 200
ISOCHORE_BP = 5000
N_RUN = (30_000, 32_000)  # on chr2
CONTIGS = [f"chr{i}" for i in range(1, 10)]


@dataclass(frozen=True)
class Genome:
    fasta: Path
    sheet: Path
    peaks: dict[str, Path]
    contig_length: int


def _revcomp(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def write_genome(folder: Path, contig_length: int, seed: int = 0, spacing: int = 1500) -> Genome:
    """chr1..chr9 of contig_length bp, motif peaks about every `spacing` bp per motif."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    peaks: dict[str, list[str]] = {name: [] for name in [*MOTIFS, "noise"]}
    records = []
    for contig in CONTIGS:
        gc = np.repeat(rng.uniform(0.3, 0.6, contig_length // ISOCHORE_BP + 1), ISOCHORE_BP)
        gc = gc[:contig_length]
        draws = rng.random(contig_length)
        # A and T share 1 - gc, G and C share gc.
        bases = np.where(
            draws < gc, np.where(draws < gc / 2, "G", "C"), np.where(draws < (1 + gc) / 2, "A", "T")
        )
        for position in range(300, contig_length - 300, spacing // 2):
            name = list(MOTIFS)[(position // (spacing // 2)) % 2]
            at = position + int(rng.integers(-100, 100))
            if rng.random() > (gc[at] - 0.3) / 0.3:  # GC-rich isochores hold more peaks
                continue
            motif = MOTIFS[name] if rng.random() < 0.5 else _revcomp(MOTIFS[name])
            bases[at : at + len(motif)] = list(motif)
            centre = at + len(motif) // 2
            peaks[name].append(f"{contig}\t{centre - PEAK_BP // 2}\t{centre + PEAK_BP // 2}")
        for start in rng.integers(0, contig_length - 400, contig_length // 4000):
            peaks["noise"].append(f"{contig}\t{start}\t{start + int(rng.integers(150, 400))}")
        if contig == "chr2":
            bases[N_RUN[0] : N_RUN[1]] = "N"
        sequence = "".join(bases)
        lines = [sequence[i : i + 60] for i in range(0, len(sequence), 60)]
        records.append(f">{contig} synthetic\n" + "\n".join(lines) + "\n")
    fasta = folder / "genome.fa"
    fasta.write_text("".join(records))
    (folder / "peaks").mkdir(exist_ok=True)
    paths = {}
    for name, lines in peaks.items():
        paths[name] = folder / "peaks" / f"{name}.narrowPeak"
        # narrowPeak: name, score, strand, signal, p, q, summit after the interval.
        paths[name].write_text(
            "track type=narrowPeak\n"
            + "".join(f"{line}\tpeak{i}\t0\t.\t5.0\t-1\t-1\t100\n" for i, line in enumerate(lines))
        )
    sheet = folder / "peaks.tsv"
    sheet.write_text(
        "name\tpeaks\tcategory\n"
        "motif_a\tpeaks/motif_a.narrowPeak\tTF\n"
        "motif_b\tpeaks/motif_b.narrowPeak\tTF\n"
        "noise\tpeaks/noise.narrowPeak\n"
    )
    return Genome(fasta, sheet, paths, contig_length)

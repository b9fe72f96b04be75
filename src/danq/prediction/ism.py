"""In-silico saturation mutagenesis (ISM): every single-base change of a window, scored.

Sequences. A genome region `contig:start-end` (1-based, inclusive, commas allowed, as
samtools writes regions) is read from an indexed FASTA (danq.prediction.genome: contig names
reconciled, chr1 = 1; N beyond a contig's ends). The model's window of
L bases is centred on the region exactly as `danq predict` centres a record
(danq.predict.window_starts with the `center` policy: `start = (length - L) // 2` relative to
the region's first base, N outside the contig). A FASTA record (`--input`) gets the window
`danq predict` scores for it. The positions mutated are the region's (or the record's) bases
inside that window: all L of them when the region is at least L long, only those of a shorter
region otherwise; N bases in the reference are not mutated.

Scores. Each of the 3 alternative bases at each mutated position makes one mutant window; the
reference and all 3P mutants are scored by danq.predict.score_with_reverse_complement (the
mean of both strands, the one scoring core of the project) in batches of batch_size windows.
`ism[p, b, t]` = score(mutant with base b at position p) - score(reference), for target t,
channels A, G, C, T; exactly 0 at the reference base, NaN at a reference N.

Importance. The track drawn as a sequence logo is, per position, the negated mean of the 3
alternatives' diffs, `importance[p, t] = -sum_b ism[p, b, t] / 3`, given as the height of the
reference base: a tall letter is a base whose change lowers the score on average; a letter
below the axis, one whose change raises it.

Exactness of shortcuts. A base change alters only the conv_width outputs of the first
convolution that cover it, but the BiLSTM reads the whole pooled sequence, so every later
layer has to be recomputed for each mutant; no shortcut is taken, each mutant is a full
forward pass on both strands.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import artifacts
from danq.data.encoding import ALPHABET, N_CODE, codes_to_onehot, decode, encode
from danq.errors import PredictError
from danq.io import fasta
from danq.predict import model_seq_len, score_with_reverse_complement, window_codes, window_starts
from danq.prediction.genome import Genome, open_genome

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

_REGION = re.compile(r"^(?P<contig>[^\s:]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")
LOGO_ORDER = "ACGT"  # rows of the heatmap and columns of the logo, in reading order


@dataclass(frozen=True)
class Region:
    contig: str
    start: int  # 0-based, inclusive
    end: int  # 0-based, exclusive

    def __str__(self) -> str:
        return f"{self.contig}:{self.start + 1}-{self.end}"


@dataclass(frozen=True)
class IsmSequence:
    """A model window and the part of it that is mutated.

    window_start is the 0-based position, on the contig or record, of the window's first base
    (negative when the window starts with N padding)."""

    name: str
    contig: str  # genome contig, or the FASTA record id
    window_start: int
    window: np.ndarray  # (L,) base codes, A,G,C,T = 0..3, N = 4
    first: int  # window index of the first mutated position
    last: int  # ... one past the last

    @property
    def mutated(self) -> np.ndarray:
        """Window indices of the mutated positions (reference N excluded)."""
        span = np.arange(self.first, self.last)
        return span[self.window[span] != N_CODE]


@dataclass(frozen=True)
class IsmResult:
    sequence: IsmSequence
    target_indices: list[int]
    target_names: list[str]
    ref: np.ndarray  # (T,) reference scores
    ism: np.ndarray  # (P, 4, T) alt - ref over positions first..last-1, channels A,G,C,T

    @property
    def importance(self) -> np.ndarray:
        """(P, T): -mean of the 3 alternatives' diffs (the reference base's own diff is 0)."""
        return -self.ism.sum(axis=1) / 3


def parse_region(text: str) -> Region:
    """`contig:start-end`, 1-based and inclusive (commas allowed) -> a 0-based half-open Region."""
    match = _REGION.match(text.strip())
    if match is None:
        raise PredictError(f"region {text!r}: expected contig:start-end, e.g. chr1:1000-2000")
    start, end = (int(match[k].replace(",", "")) for k in ("start", "end"))
    if start < 1 or end < start:
        raise PredictError(
            f"region {text!r}: start must be at least 1 and end at least start (1-based, inclusive)"
        )
    return Region(match["contig"], start - 1, end)


def _centred(span_start: int, n: int, seq_len: int) -> tuple[int, int, int]:
    """The start of the window of seq_len centred on n bases from span_start, and the window
    indices where those bases begin and end (clipped to the window)."""
    start = span_start + window_starts(n, seq_len, "center", seq_len)[0]
    return start, max(span_start, start) - start, min(span_start + n, start + seq_len) - start


def region_sequence(genome: Genome, text: str, seq_len: int) -> IsmSequence:
    """The window of seq_len centred on a region of the genome (see the module doc)."""
    region = parse_region(text)
    contig = genome.resolve(region.contig)
    if contig is None:
        names = list(genome.contigs)
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        raise PredictError(
            f"region {text!r}: contig {region.contig!r} is not in {genome.label} (contigs: {shown})"
        )
    length = genome.contigs[contig]
    if region.end > length:
        raise PredictError(f"region {text!r}: ends past the end of {contig} ({length:,} bp)")
    start, first, last = _centred(region.start, region.end - region.start, seq_len)
    window = encode(genome.fetch(contig, start, start + seq_len))
    return IsmSequence(str(region), contig, start, window, first, last)


def genome_sequences(path: str, regions: Sequence[str], seq_len: int) -> list[IsmSequence]:
    """The windows of regions of the genome FASTA at path (contig names reconciled as
    danq.prediction.genome does: chr1 = 1, chrM = MT)."""
    with open_genome(path) as genome:
        return [region_sequence(genome, text, seq_len) for text in regions]


def fasta_sequences(path: str, seq_len: int) -> Iterator[IsmSequence]:
    """Each record's centred window, as `danq predict` scores it."""
    for record_id, text in fasta.read_fasta(path):
        record = encode(text)
        start, first, last = _centred(0, len(record), seq_len)
        window = window_codes(record, start, seq_len)
        yield IsmSequence(record_id, record_id, start, window, first, last)


def mutants(sequence: IsmSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window indices and alternative bases of all single-base changes, and the windows."""
    positions = np.repeat(sequence.mutated, 3)
    ref = sequence.window[positions]
    alts = ((ref + np.tile(np.arange(1, 4, dtype=np.uint8), len(sequence.mutated))) % 4).astype(
        np.uint8
    )
    windows = np.repeat(sequence.window[None, :], len(positions), axis=0)
    windows[np.arange(len(positions)), positions] = alts
    return positions, alts, windows


def saturation_mutagenesis(
    model: keras.Model,
    sequence: IsmSequence,
    target_indices: list[int],
    target_names: list[str],
    batch_size: int,
) -> IsmResult:
    """Score the reference and every single-base change of its mutated span (module doc)."""
    if batch_size < 1:
        raise PredictError(f"batch size must be at least 1, got {batch_size}")
    if len(sequence.window) != model_seq_len(model):
        raise PredictError(
            f"{sequence.name}: window of {len(sequence.window)} bp for a model of "
            f"{model_seq_len(model)} bp"
        )
    targets = np.asarray(target_indices)
    ref = score_with_reverse_complement(model, codes_to_onehot(sequence.window[None, :]))[0]
    ref = ref[targets]
    positions, alts, windows = mutants(sequence)
    span = sequence.last - sequence.first
    ism = np.full((span, 4, len(targets)), np.nan, dtype=np.float32)
    ism[sequence.mutated - sequence.first, sequence.window[sequence.mutated], :] = 0.0
    for lo in range(0, len(windows), batch_size):
        hi = min(lo + batch_size, len(windows))
        scores = score_with_reverse_complement(model, codes_to_onehot(windows[lo:hi]))
        ism[positions[lo:hi] - sequence.first, alts[lo:hi], :] = scores[:, targets] - ref
    return IsmResult(sequence, list(target_indices), list(target_names), ref, ism)


def safe_name(text: str) -> str:
    """text with every character other than letters, digits, '.', '-' and '_' as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def array_fields(result: IsmResult) -> dict[str, Any]:
    """What the .npz holds: coordinates are 1-based on the contig or record."""
    seq = result.sequence
    return {
        "ism": result.ism,
        "ref": result.ref.astype(np.float32),
        "importance": result.importance.astype(np.float32),
        "positions": np.arange(seq.first, seq.last) + seq.window_start + 1,
        "sequence": np.array(decode(seq.window[seq.first : seq.last])),
        "window": np.array(decode(seq.window)),
        "window_start": np.array(seq.window_start + 1),
        "contig": np.array(seq.contig),
        "name": np.array(seq.name),
        "targets": np.array(result.target_names),
        "target_indices": np.array(result.target_indices),
        "channels": np.array(ALPHABET),
    }


def plot_target(result: IsmResult, t: int) -> Figure:
    """A matplotlib Figure: the importance logo above the heatmap of ism[:, :, t]."""
    import logomaker
    import pandas as pd
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    seq = result.sequence
    coords = np.arange(seq.first, seq.last) + seq.window_start + 1
    bases = seq.window[seq.first : seq.last]
    heights = np.zeros((len(coords), 4))
    known = bases != N_CODE
    order = [ALPHABET.index(b) for b in LOGO_ORDER]
    importance = np.nan_to_num(result.importance[:, t])
    heights[known, [LOGO_ORDER.index(ALPHABET[b]) for b in bases[known]]] = importance[known]
    width = float(np.clip(len(coords) / 10, 8, 80))
    fig = Figure(figsize=(width, 4.5), layout="constrained")
    logo_ax, map_ax = fig.subplots(2, height_ratios=(1, 1))
    logomaker.Logo(pd.DataFrame(heights, columns=list(LOGO_ORDER), index=coords), ax=logo_ax)
    logo_ax.set_ylabel("importance\n(-mean diff)")
    logo_ax.set_title(
        f"{seq.name}: in-silico mutagenesis, target {result.target_names[t]} "
        f"(reference score {result.ref[t]:.4g})",
        loc="left",
        fontsize="medium",
    )
    diff = result.ism[:, order, t].T
    limit = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0
    norm = TwoSlopeNorm(0.0, -(limit or 1e-9), limit or 1e-9)
    image = map_ax.imshow(
        diff,
        aspect="auto",
        cmap="RdBu_r",
        norm=norm,
        interpolation="nearest",
        extent=(coords[0] - 0.5, coords[-1] + 0.5, 3.5, -0.5),
    )
    for ax in (logo_ax, map_ax):
        ax.set_xlim(coords[0] - 0.5, coords[-1] + 0.5)
    map_ax.set_yticks(range(4), list(LOGO_ORDER))
    map_ax.set_xlabel(f"position on {seq.contig} (1-based)")
    fig.colorbar(image, ax=[logo_ax, map_ax], label="alt - ref", shrink=0.5, anchor=(0, 0))
    return fig


SUMMARY_COLUMNS = (
    "name",
    "contig",
    "window_start",
    "window_end",
    "mutated_first",
    "mutated_last",
    "mutated_positions",
    "target",
    "ref_score",
    "max_abs_diff",
    "max_abs_diff_position",
    "max_abs_diff_base",
)


def plot_file_name(stem: str, target_index: int, target_name: str) -> str:
    return f"{stem}.{target_index}.{safe_name(target_name)}{artifacts.ISM_PLOT_SUFFIX}"


def summary_row(result: IsmResult, t: int) -> list[object]:
    """One line of summary.tsv: the sequence, a target, and its largest change."""
    seq = result.sequence
    diff = np.abs(np.nan_to_num(result.ism[:, :, t]))
    p, b = np.unravel_index(int(np.argmax(diff)), diff.shape)
    at = seq.window_start + 1
    return [
        seq.name,
        seq.contig,
        at,
        at + len(seq.window) - 1,
        at + seq.first,
        at + seq.last - 1,
        len(seq.mutated),
        result.target_names[t],
        f"{result.ref[t]:.6g}",
        f"{diff[p, b]:.6g}",
        at + seq.first + int(p),
        ALPHABET[int(b)],
    ]


def _write_npz(fields: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as fh:  # a file, not a name: numpy would append .npz
        np.savez_compressed(fh, **fields)


def write_ism(
    results: Iterable[IsmResult], out_dir: str | os.PathLike[str], plot: bool = True
) -> int:
    """Write <name>.npz per sequence, <name>.<target index>.<target>.png per sequence and
    target (plot), and summary.tsv into out_dir, replaced as a whole when all are written;
    returns the number of sequences."""
    out = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".ism-", dir=artifacts.staging_parent(out)))
    stems: set[str] = set()
    try:
        with artifacts.atomic_text(staging / artifacts.ISM_SUMMARY_FILE) as summary:
            summary.write("\t".join(SUMMARY_COLUMNS) + "\n")
            for result in results:
                stem = safe_name(result.sequence.name)
                if stem in stems:
                    raise PredictError(
                        f"{result.sequence.name}: a second sequence with this name (file name "
                        f"{stem}); names must be unique"
                    )
                stems.add(stem)
                fields = array_fields(result)
                artifacts.write_atomically(
                    staging / f"{stem}{artifacts.ISM_ARRAY_SUFFIX}",
                    partial(_write_npz, fields),
                )
                for t, (index, name) in enumerate(
                    zip(result.target_indices, result.target_names, strict=True)
                ):
                    summary.write("\t".join(str(v) for v in summary_row(result, t)) + "\n")
                    if plot:
                        png = staging / plot_file_name(stem, index, name)
                        artifacts.write_atomically(
                            png, partial(plot_target(result, t).savefig, format="png", dpi=100)
                        )
        artifacts.publish_dir(staging, out, artifacts.ISM_SUMMARY_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(stems)

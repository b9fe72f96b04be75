"""`danq data from-bed`: a DeepSEA-style data set from a genome FASTA and peak files.

The recipe (DeepSEA, Zhou & Troyanskaya 2015), every choice a `from_bed:` setting:
- the genome is cut into `bin_size` bins (200 bp) on a grid from each contig's start; a bin is
  kept only when the `window` (1000 bp) centred on it lies inside the contig;
- a bin is positive for a target when the target's peaks, merged first, cover at least
  `positive_coverage` (half) of it (bioframe overlaps; one label column per sheet line);
- kept: every bin positive for at least one target (with `bins: peaks`, every bin touching a
  peak), plus negatives sampled from the other bins (from bins touching no peak with `bins:
  peaks`), `negative_ratio` per positive bin in each split; `gc_matched` sampling draws them
  per GC stratum (`gc_bins` strata of the window's GC share) in proportion to the positives of
  that stratum, so both share one GC distribution; `random` draws uniformly. Negatives are
  Bernoulli draws at those rates with a generator seeded per (seed, contig, chunk), so the
  counts match the ratio in expectation and the output is the same for the same inputs;
- whole chromosomes are held out (`valid_chroms`, `test_chroms`); windows overlapping the
  blacklist or holding more than `max_n_share` N are dropped;
- each split is written in the DeepSEA layout by danq.io.deepsea.SplitWriter, as
  `danq data synth` writes it: forward windows in genomic order, then their reverse
  complements in the same order, labels repeated (always: the layout and the data gate
  require both halves; `prepare.halves: forward` drops the second one from the shards); plus
  <split>_bins.bed (the bin of each forward sample) and metadata.json (targets, categories,
  genome fingerprint, settings, counts).

Memory does not grow with the genome: pass 1 streams each contig in chunks of `chunk_bins`
bins, labelling them and measuring GC and N, and keeps only a compact record per candidate
bin on disk (bin number, GC stratum, packed labels) and GC histograms in memory; the sampling
rates follow from the histograms; pass 2 replays the chunk records, draws the negatives and
writes the windows chunk by chunk. The output folder appears whole or not at all.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bioframe
import numpy as np
import pandas as pd
import pysam
from tqdm import tqdm

from danq.artifacts import (
    DATA_BINS_SUFFIX,
    DATA_METADATA_FILE,
    FROM_BED_GENERATOR,
    GENOME_METADATA_KEY,
    publish_dir,
    staging_parent,
)
from danq.config import SPLITS, FromBedConfig, Split
from danq.data.encoding import N_CODE, codes_to_onehot, encode
from danq.errors import ConfigError, DataError
from danq.io.bed import bed_frame, read_bed
from danq.io.deepsea import SplitWriter
from danq.io.genome import genome_fingerprint, open_genome

DEFAULT_CATEGORY = "all"
_G_CODE, _C_CODE = 1, 2  # danq.data.encoding: A=0, G=1, C=2, T=3


@dataclass(frozen=True)
class PeakTarget:
    """One line of the peak sheet: a target's name, its peak file and category."""

    name: str
    peaks: Path
    category: str


def read_peak_sheet(path: str | os.PathLike[str]) -> list[PeakTarget]:
    """The sheet's targets: tab-separated name, peak file (relative to the sheet), optional
    category; blank and `#` lines skipped, an optional header line starting with `name`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: peak sheet not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable text file ({err})") from None
    targets: list[PeakTarget] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if not targets and not first_line and fields[0].lower() == "name":
            continue  # the header
        where = f"{path} line {line_no}"
        if not 2 <= len(fields) <= 3 or not all(fields[:2]):
            raise DataError(
                f"{where}: expected name<TAB>peak file[<TAB>category], got {len(fields)} "
                "tab-separated field(s)"
            )
        name, peak_file = fields[0], fields[1]
        if name in first_line:
            raise DataError(
                f"{where}: target {name!r} is listed twice (first on line {first_line[name]})"
            )
        first_line[name] = line_no
        peaks = path.parent / peak_file
        if not peaks.is_file():
            raise DataError(f"{where}: peak file {str(peaks)!r} of target {name!r} not found")
        category = fields[2] if len(fields) == 3 and fields[2] else DEFAULT_CATEGORY
        targets.append(PeakTarget(name, peaks, category))
    if not targets:
        raise DataError(f"{path}: no targets (expected name<TAB>peak file lines)")
    return targets


def merged_peaks(targets: list[PeakTarget], contig_lengths: dict[str, int]) -> pd.DataFrame:
    """Every target's peaks merged (overlapping or touching ones joined): chrom, start, end,
    target (its index in the sheet), sorted."""
    frames = []
    for index, target in enumerate(targets):
        peaks = read_bed(target.peaks, contig_lengths)
        if peaks.empty:
            raise DataError(f"{target.peaks}: no peaks for target {target.name!r}")
        merged = bioframe.merge(peaks)[["chrom", "start", "end"]]
        frames.append(merged.assign(target=index))
    return bioframe.sort_bedframe(pd.concat(frames, ignore_index=True))


def split_of_contig(contig: str, cfg: FromBedConfig) -> Split:
    if contig in cfg.valid_chroms:
        return "valid"
    if contig in cfg.test_chroms:
        return "test"
    return "train"


def bin_range(length: int, cfg: FromBedConfig) -> tuple[int, int]:
    """Bins [first, stop) of a contig whose centred window lies inside it."""
    flank = (cfg.window - cfg.bin_size) // 2
    first = -(-flank // cfg.bin_size)
    stop = (length - flank - cfg.bin_size) // cfg.bin_size + 1
    return first, max(first, stop)


@dataclass(frozen=True)
class _Chunk:
    """Bins [first, stop) of one contig, and where pass 1 stored their candidates."""

    contig: str
    contig_index: int
    chunk_index: int
    split: Split
    first: int
    stop: int
    record: Path


class _Scan:
    """Pass 1 over the genome: per-chunk candidate records and per-split GC histograms."""

    def __init__(self, cfg: FromBedConfig, n_targets: int) -> None:
        self.cfg, self.n_targets = cfg, n_targets
        self.flank = (cfg.window - cfg.bin_size) // 2
        self.chunks: list[_Chunk] = []
        zeros = lambda: np.zeros(cfg.gc_bins, dtype=np.int64)  # noqa: E731
        self.positive_gc = {s: zeros() for s in SPLITS}
        self.pool_gc = {s: zeros() for s in SPLITS}
        self.counts = {
            s: {"bins_scanned": 0, "dropped_n": 0, "dropped_blacklist": 0} for s in SPLITS
        }

    def window_frame(self, contig: str, first: int, stop: int) -> pd.DataFrame:
        starts = np.arange(first, stop, dtype=np.int64) * self.cfg.bin_size - self.flank
        return pd.DataFrame({"chrom": contig, "start": starts, "end": starts + self.cfg.window})

    def scan_chunk(
        self,
        fasta: pysam.FastaFile,
        chunk: _Chunk,
        peaks: pd.DataFrame,
        blacklist: pd.DataFrame,
    ) -> None:
        cfg, size = self.cfg, self.cfg.bin_size
        n = chunk.stop - chunk.first
        lo = chunk.first * size - self.flank
        codes = encode(fasta.fetch(chunk.contig, lo, chunk.stop * size + self.flank))
        offsets = np.arange(n) * size
        gc_sum = np.concatenate([[0], np.cumsum((codes == _G_CODE) | (codes == _C_CODE))])
        n_sum = np.concatenate([[0], np.cumsum(codes == N_CODE)])
        gc_count = gc_sum[offsets + cfg.window] - gc_sum[offsets]
        n_count = n_sum[offsets + cfg.window] - n_sum[offsets]
        gc = gc_count / np.maximum(cfg.window - n_count, 1)
        gc_stratum = np.minimum((gc * cfg.gc_bins).astype(np.int64), cfg.gc_bins - 1)
        ok = n_count <= cfg.max_n_share * cfg.window
        counts = self.counts[chunk.split]
        counts["bins_scanned"] += n
        counts["dropped_n"] += int((~ok).sum())
        if not blacklist.empty:
            hits = bioframe.overlap(
                self.window_frame(chunk.contig, chunk.first, chunk.stop),
                blacklist,
                how="inner",
                return_index=True,
            )["index"].to_numpy(dtype=np.int64)
            listed = np.zeros(n, dtype=bool)
            listed[hits] = True
            counts["dropped_blacklist"] += int((listed & ok).sum())
            ok &= ~listed
        labels, touched = self.label_bins(chunk, peaks)
        positive = labels.any(axis=1)
        fixed, pool = ok & positive, ok & ~positive
        if cfg.bins == "peaks":  # bins touching a peak are kept, the rest is background
            fixed, pool = ok & (positive | touched), pool & ~touched
        self.positive_gc[chunk.split] += np.bincount(
            gc_stratum[ok & positive], minlength=cfg.gc_bins
        )
        self.pool_gc[chunk.split] += np.bincount(gc_stratum[pool], minlength=cfg.gc_bins)
        bins = np.arange(chunk.first, chunk.stop, dtype=np.uint32)
        np.savez(
            chunk.record,
            fixed=bins[fixed],
            fixed_labels=np.packbits(labels[fixed], axis=1),
            fixed_gc=gc[fixed].astype(np.float32),
            pool=bins[pool],
            pool_stratum=gc_stratum[pool].astype(np.uint16),
            pool_gc=gc[pool].astype(np.float32),
        )
        self.chunks.append(chunk)

    def label_bins(self, chunk: _Chunk, peaks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n bins, targets) 0/1 labels, and which bins any peak touches."""
        size, n = self.cfg.bin_size, chunk.stop - chunk.first
        lo, hi = chunk.first * size, chunk.stop * size
        nearby = peaks[(peaks["end"] > lo) & (peaks["start"] < hi)]
        starts = np.arange(chunk.first, chunk.stop, dtype=np.int64) * size
        bins = pd.DataFrame({"chrom": chunk.contig, "start": starts, "end": starts + size})
        hits = bioframe.overlap(bins, nearby, how="inner", return_overlap=True, return_index=True)
        covered = np.zeros((n, self.n_targets), dtype=np.int32)  # bp, at most bin_size
        np.add.at(
            covered,
            (hits["index"].to_numpy(dtype=np.int64), hits["target_"].to_numpy(dtype=np.int64)),
            (hits["overlap_end"] - hits["overlap_start"]).to_numpy(dtype=np.int64),
        )
        # At least the share of the bin, in whole bases: 100 of 200 bp is "half".
        needed = math.ceil(self.cfg.positive_coverage * size - 1e-9)
        return (covered >= needed).astype(np.uint8), np.asarray(covered.any(axis=1))


def negative_rates(
    cfg: FromBedConfig, positive_gc: np.ndarray, pool_gc: np.ndarray
) -> tuple[np.ndarray, float]:
    """Per GC stratum, the chance a pool bin is drawn as a negative; and the expected shortfall
    (negatives asked for that the pool cannot supply)."""
    pool = pool_gc.astype(np.float64)
    if cfg.negatives == "random":
        wanted = cfg.negative_ratio * positive_gc.sum() * pool / max(pool.sum(), 1.0)
    else:
        wanted = cfg.negative_ratio * positive_gc.astype(np.float64)
    rates = np.divide(wanted, pool, out=np.zeros_like(pool), where=pool > 0)
    shortfall = float(np.maximum(wanted - pool, 0.0).sum())
    return np.minimum(rates, 1.0), shortfall


def _chunk_samples(
    chunk: _Chunk, rates: np.ndarray, seed: int, n_targets: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk's kept bins in genomic order, their labels, GC shares and positive flags."""
    with np.load(chunk.record) as record:
        rng = np.random.default_rng([seed, chunk.contig_index, chunk.chunk_index])
        drawn = rng.random(len(record["pool"])) < rates[record["pool_stratum"]]
        bins = np.concatenate([record["fixed"], record["pool"][drawn]])
        fixed_labels = np.unpackbits(record["fixed_labels"], axis=1, count=n_targets)
        labels = np.concatenate(
            [fixed_labels, np.zeros((int(drawn.sum()), n_targets), dtype=np.uint8)]
        )
        gc = np.concatenate([record["fixed_gc"], record["pool_gc"][drawn]])
    order = np.argsort(bins, kind="stable")
    labels = labels[order]
    return bins[order].astype(np.int64), labels, gc[order], np.asarray(labels.any(axis=1))


def _scan_genome(
    fasta: pysam.FastaFile,
    contigs: list[str],
    cfg: FromBedConfig,
    peaks: pd.DataFrame,
    blacklist: pd.DataFrame,
    n_targets: int,
    record_dir: Path,
    progress: bool,
) -> _Scan:
    scan = _Scan(cfg, n_targets)
    ranges = {c: bin_range(fasta.get_reference_length(c), cfg) for c in contigs}
    total = sum(stop - first for first, stop in ranges.values())
    peaks_by_contig = dict(tuple(peaks.groupby("chrom", sort=False)))
    blacklist_by_contig = dict(tuple(blacklist.groupby("chrom", sort=False)))
    empty = peaks.iloc[:0]
    with tqdm(total=total, unit="bin", unit_scale=True, disable=not progress, desc="scan") as bar:
        for contig_index, contig in enumerate(contigs):
            first, stop = ranges[contig]
            for chunk_index, lo in enumerate(range(first, stop, cfg.chunk_bins)):
                chunk = _Chunk(
                    contig,
                    contig_index,
                    chunk_index,
                    split_of_contig(contig, cfg),
                    lo,
                    min(lo + cfg.chunk_bins, stop),
                    record_dir / f"{contig_index}-{chunk_index}.npz",
                )
                scan.scan_chunk(
                    fasta,
                    chunk,
                    peaks_by_contig.get(contig, empty),
                    blacklist_by_contig.get(contig, blacklist.iloc[:0]),
                )
                bar.update(chunk.stop - chunk.first)
    return scan


def _chunks_of(scan: _Scan, split: Split) -> Iterator[_Chunk]:
    return (c for c in scan.chunks if c.split == split)


def _split_counts(
    scan: _Scan, rates: dict[Split, np.ndarray], seed: int, n_targets: int
) -> dict[Split, dict[str, Any]]:
    """Samples and label statistics per split, from the same draws the writer makes."""
    summary: dict[Split, dict[str, Any]] = {}
    for split in SPLITS:
        forward, positive_bins = 0, 0
        target_positives = np.zeros(n_targets, dtype=np.int64)
        gc_sums = {True: 0.0, False: 0.0}
        for chunk in _chunks_of(scan, split):
            _, labels, gc, positive = _chunk_samples(chunk, rates[split], seed, n_targets)
            forward += len(labels)
            positive_bins += int(positive.sum())
            target_positives += labels.sum(axis=0, dtype=np.int64)
            gc_sums[True] += float(gc[positive].sum())
            gc_sums[False] += float(gc[~positive].sum())
        negative_bins = forward - positive_bins
        summary[split] = {
            **scan.counts[split],
            "forward": forward,
            "positive_bins": positive_bins,
            "negative_bins": negative_bins,
            "target_positives": target_positives.tolist(),
            "gc_mean_positive": round(gc_sums[True] / max(positive_bins, 1), 6),
            "gc_mean_negative": round(gc_sums[False] / max(negative_bins, 1), 6),
        }
    return summary


def _write_split(
    fasta: pysam.FastaFile,
    scan: _Scan,
    split: Split,
    n_forward: int,
    out: Path,
    rates: np.ndarray,
    seed: int,
    n_targets: int,
    bar: tqdm,
) -> None:
    cfg, size, flank = scan.cfg, scan.cfg.bin_size, scan.flank
    written = 0
    with (
        SplitWriter(out / f"{split}.mat", split, 2 * n_forward, cfg.window, n_targets) as writer,
        open(out / f"{split}{DATA_BINS_SUFFIX}", "w", encoding="ascii") as bed,
    ):
        for chunk in _chunks_of(scan, split):
            bins, labels, _, _ = _chunk_samples(chunk, rates, seed, n_targets)
            if len(bins) == 0:
                continue
            lo = int(bins[0]) * size - flank
            codes = encode(fasta.fetch(chunk.contig, lo, int(bins[-1]) * size + size + flank))
            windows = np.lib.stride_tricks.sliding_window_view(codes, cfg.window)
            onehot = codes_to_onehot(windows[(bins - bins[0]) * size])
            writer.write(written, onehot, labels)
            writer.write(n_forward + written, onehot[:, ::-1, ::-1], labels)
            bed.writelines(f"{chunk.contig}\t{b * size}\t{b * size + size}\n" for b in bins)
            written += len(bins)
            bar.update(len(bins))


def _selected_contigs(fasta: pysam.FastaFile, cfg: FromBedConfig) -> list[str]:
    if cfg.contigs is None:
        return list(fasta.references)
    missing = [c for c in cfg.contigs if c not in fasta.references]
    if missing:
        raise ConfigError(f"from_bed.contigs: {missing} are not in the genome FASTA")
    return list(cfg.contigs)


def build_dataset(
    fasta_path: str | os.PathLike[str],
    sheet: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: FromBedConfig,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Write train/valid/test.mat, <split>_bins.bed and metadata.json into out_dir (local);
    returns the metadata. seed is used when cfg.seed is null."""
    seed = seed if cfg.seed is None else cfg.seed
    targets = read_peak_sheet(sheet)
    with open_genome(fasta_path) as fasta:
        contig_lengths = dict(zip(fasta.references, (int(n) for n in fasta.lengths)))
        contigs = _selected_contigs(fasta, cfg)
        peaks = merged_peaks(targets, contig_lengths)
        blacklist = (
            read_bed(cfg.blacklist, contig_lengths) if cfg.blacklist else bed_frame([], [], [])
        )
        out = Path(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=".from-bed-", dir=staging_parent(out)))
        try:
            record_dir = staging / "records"
            record_dir.mkdir()
            scan = _scan_genome(
                fasta, contigs, cfg, peaks, blacklist, len(targets), record_dir, progress
            )
            rates: dict[Split, np.ndarray] = {}
            shortfall: dict[Split, float] = {}
            for split in SPLITS:
                rates[split], shortfall[split] = negative_rates(
                    cfg, scan.positive_gc[split], scan.pool_gc[split]
                )
            counts = _split_counts(scan, rates, seed, len(targets))
            for split in SPLITS:
                if counts[split]["forward"] == 0:
                    chroms = {"valid": cfg.valid_chroms, "test": cfg.test_chroms}.get(
                        split, "the other contigs"
                    )
                    raise DataError(
                        f"no {split} samples: {chroms} hold no bin positive for a target "
                        f"(contigs binned: {contigs})"
                    )
                counts[split]["negatives_shortfall_expected"] = round(shortfall[split], 1)
            total = sum(c["forward"] for c in counts.values())
            with tqdm(total=total, unit="window", disable=not progress, desc="write") as bar:
                for split in SPLITS:
                    _write_split(
                        fasta,
                        scan,
                        split,
                        counts[split]["forward"],
                        staging,
                        rates[split],
                        seed,
                        len(targets),
                        bar,
                    )
            shutil.rmtree(record_dir)
            metadata = _metadata(targets, counts, cfg, seed, contigs)
            metadata[GENOME_METADATA_KEY] = genome_fingerprint(fasta_path, fasta, cfg.build)
            (staging / DATA_METADATA_FILE).write_text(
                json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            publish_dir(staging, out, commit_marker=DATA_METADATA_FILE)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return metadata


def _metadata(
    targets: list[PeakTarget],
    counts: dict[Split, dict[str, Any]],
    cfg: FromBedConfig,
    seed: int,
    contigs: list[str],
) -> dict[str, Any]:
    categories: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        categories.setdefault(target.category, []).append(index)
    return {
        "generator": FROM_BED_GENERATOR,
        "seed": seed,
        "seq_len": cfg.window,
        "bin_size": cfg.bin_size,
        "channels": "AGCT",
        "halves": "forward sequences first, reverse complements second, same order",
        "samples": {split: 2 * counts[split]["forward"] for split in SPLITS},
        "targets": [
            {"index": i, "name": t.name, "category": t.category, "peaks": str(t.peaks)}
            for i, t in enumerate(targets)
        ],
        "categories": categories,
        "contigs_binned": contigs,
        "settings": cfg.model_dump(),
        "counts": counts,
    }

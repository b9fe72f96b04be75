"""The data gate: nothing trains on DeepSEA-format data that fails it.

One streaming pass per split (bounded chunks, memory independent of N) reduces the data to
three summary tables:

| table | one row per | holds |
|---|---|---|
| splits | split | structural problem counts, GC, N share, CG/GC ratio, leaked sequences |
| targets | target | positives and prevalence per split, drift against train |
| chunks | chunk of samples | GC content and N share |

Structural facts (one-hot validity, 0/1 labels, reverse-complement halves, leakage) are
measured with numpy while streaming; every verdict, structural or statistical, is a Great
Expectations expectation over these tables, all listed in `gate_suite`. A failing
expectation is mapped back to plain words naming the file, samples and targets. Outputs:
report.json, the tables as CSV, and GE Data Docs (HTML) under data_docs/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd

from danq.config import Params, ValidateConfig
from danq.io import storage
from danq.io.deepsea import (
    SPLITS,
    DataError,
    SplitReader,
    _detect_container,
    _Mat5File,
    open_split,
    x_key,
    y_key,
)

Table = Literal["splits", "targets", "chunks"]
# Columns naming a row of each table: GE reports failing rows by them, Data Docs show them.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "splits": ("split",),
    "targets": ("target",),
    "chunks": ("split", "first_sample"),
}
RowKey = tuple[Any, ...]
REPORT_FILE = "report.json"
DATA_DOCS_DIR = "data_docs"
GC_BINS = 100
INTERLEAVE_PAIRS = 50
# One-hot position read as a little-endian uint32: channel c set <=> word == 1 << 8c.
A_WORD, G_WORD, C_WORD, T_WORD = (1 << (8 * c) for c in range(4))
NOT_BINARY_BITS = 0xFEFEFEFE  # any bit other than the lowest of each byte: a value > 1


# --------------------------------------------------------------------------- suite definition


@dataclass(frozen=True)
class GateExpectation:
    """One expectation of the gate: `column` of `table` must lie in [min_value, max_value]."""

    name: str
    table: Table
    column: str
    meaning: str
    blocking: bool = True
    min_value: float | None = None
    max_value: float | None = None
    splits: tuple[str, ...] = SPLITS
    needs_train: bool = False

    @property
    def threshold(self) -> str:
        if self.min_value is not None and self.max_value is not None:
            return f"{self.min_value} <= value <= {self.max_value}"
        if self.min_value is not None:
            return f">= {self.min_value}"
        return f"<= {self.max_value}"


def gate_suite(cfg: ValidateConfig) -> list[GateExpectation]:
    """The whole gate in one place; thresholds come from params.yaml `validate:`."""
    g = GateExpectation
    held_out = ("valid", "test")
    # fmt: off
    suite = [
        # Structure, measured with numpy while streaming (one row per split).
        g("layout", "splits", "layout_error", max_value=0,
          meaning="the file opens as a DeepSEA split: MATLAB v5 or v7.3 container, x and y "
          "keys, one-hot with 4 channels, 2-axis labels, uint8, as many labels as sequences"),
        g("onehot_values", "splits", "bad_value_samples", max_value=0,
          meaning="one-hot values are only 0 and 1"),
        g("onehot_single_base", "splits", "multi_base_samples", max_value=0,
          meaning="no position has two or more bases set (all-zero rows are N)"),
        g("labels_binary", "splits", "bad_labels", max_value=0,
          meaning="labels are only 0 and 1"),
        g("rc_halves", "splits", "rc_mismatched_pairs", max_value=0,
          meaning="the second half holds the reverse complements (A,G,C,T order) of the first "
          f"half in the same order ({cfg.rc_pairs_checked} sampled pairs checked)"),
        g("rc_labels", "splits", "rc_label_mismatches", max_value=0,
          meaning="each reverse complement carries the labels of its forward sequence"),
        g("same_targets", "splits", "target_count_mismatch", max_value=0, splits=held_out,
          needs_train=True, meaning="valid.mat and test.mat have as many targets as train.mat"),
        g("same_seq_len", "splits", "seq_len_mismatch", max_value=0, splits=held_out,
          needs_train=True, meaning="valid.mat and test.mat have the sequence length of train.mat"),
        # Sequence statistics.
        g("n_share", "chunks", "n_share", max_value=cfg.max_n_share,
          meaning=f"at most {cfg.max_n_share:.0%} unknown bases (N) in every chunk of "
          f"{cfg.chunk_size} samples"),
        g("channel_order", "splits", "cg_gc_ratio", max_value=cfg.cg_gc_ratio_max,
          meaning="channels read as A,G,C,T show genomic CG depletion: CG at most "
          f"{cfg.cg_gc_ratio_max}x as frequent as GC (above that the order looks like A,C,G,T)"),
        g("gc_mean_drift", "splits", "gc_mean_diff", max_value=cfg.gc_mean_tolerance,
          splits=held_out, needs_train=True,
          meaning=f"mean GC content within {cfg.gc_mean_tolerance} of train.mat"),
        g("gc_distribution", "splits", "gc_ks", max_value=cfg.gc_ks_max, blocking=False,
          splits=held_out, needs_train=True,
          meaning="per-sequence GC distribution close to train.mat (Kolmogorov-Smirnov "
          f"distance at most {cfg.gc_ks_max})"),
        g("leakage", "splits", "leaked_sequences", max_value=cfg.max_leaked_sequences,
          splits=held_out, needs_train=True,
          meaning=f"at most {cfg.max_leaked_sequences} forward sequences also appear in "
          "train.mat, as such or reverse-complemented (hash of the one-hot bytes)"),
        # Labels (one row per target).
        g("train_positives", "targets", "train_positives", min_value=cfg.min_positives_train,
          splits=("train",), needs_train=True,
          meaning=f"every target has at least {cfg.min_positives_train} positive(s) in train.mat"),
    ]
    for split in held_out:
        suite += [
            g(f"{split}_prevalence_drift", "targets", f"{split}_prevalence_diff",
              max_value=cfg.prevalence_tolerance, splits=(split,), needs_train=True,
              meaning=f"every target's prevalence in {split}.mat is within "
              f"{cfg.prevalence_tolerance} of its prevalence in train.mat"),
            g(f"{split}_prevalence_ratio", "targets", f"{split}_prevalence_ratio",
              max_value=cfg.prevalence_ratio_max, blocking=False, splits=(split,),
              needs_train=True,
              meaning=f"every target's prevalence in {split}.mat is within a factor "
              f"{cfg.prevalence_ratio_max} of train.mat (add-one smoothed)"),
            g(f"{split}_positives", "targets", f"{split}_positives", min_value=1,
              blocking=False, splits=(split,), needs_train=True,
              meaning=f"every target has a positive in {split}.mat (else its AUC is undefined)"),
        ]
    # fmt: on
    return suite


# --------------------------------------------------------------------------- streaming scan


def _sequence_hashes(x: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each sample's one-hot bytes."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.uint64)
    size = x[0].nbytes
    data = memoryview(np.ascontiguousarray(x)).cast("B")
    digests = b"".join(
        hashlib.blake2b(data[i * size : (i + 1) * size], digest_size=8).digest()
        for i in range(len(x))
    )
    return np.frombuffer(digests, dtype=np.uint64)


class _TrainIndex:
    """Sorted digests of train's forward sequences, for leakage look-ups."""

    def __init__(self, digests: np.ndarray, samples: np.ndarray) -> None:
        order = np.argsort(digests, kind="stable")
        self.digests, self.samples = digests[order], samples[order]

    def find(self, digests: np.ndarray) -> np.ndarray:
        """The train sample holding each digest, or -1."""
        if len(self.digests) == 0:
            return np.full(len(digests), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.digests, digests), len(self.digests) - 1)
        return np.where(self.digests[at] == digests, self.samples[at], -1)


def _reverse_complement(x: np.ndarray) -> np.ndarray:
    return x[..., ::-1, ::-1]


# What a second half that is not the reverse complement may hold instead (per forward sample).
_RC_LOOKALIKES: tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...] = (
    ("are copies of the first half (not reverse-complemented)", lambda f: f),
    ("are the first half reversed but not complemented", lambda f: f[::-1]),
    ("are the first half complemented but not reversed", lambda f: f[:, ::-1]),
    (
        "are reverse complements only if channels pair as 0-1 and 2-3, not A,G,C,T order",
        lambda f: f[::-1][:, [1, 0, 3, 2]],
    ),
    (
        "are reverse complements only if channels pair as 0-2 and 1-3 (an order like "
        "A,C,T,G); DeepSEA uses A,G,C,T",
        lambda f: f[::-1][:, [2, 3, 0, 1]],
    ),
)


class _RcPairs:
    """Checks sampled pairs (i, n/2 + i): x must be the reverse complement, y identical.

    Picked forward samples are kept (at most `n_pairs` one-hot rows) until their partner
    streams by.
    """

    def __init__(self, n: int, n_pairs: int) -> None:
        self.n, self.half = n, n // 2
        rng = np.random.default_rng(0)
        size = 0 if n % 2 else min(n_pairs, self.half)  # odd: no halves to pair
        self.picks = np.sort(rng.choice(self.half, size=size, replace=False))
        self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.x_mismatches: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.y_mismatches: list[int] = []
        self.interleaved = False

    def add(self, lo: int, x: np.ndarray, y: np.ndarray) -> None:
        hi = lo + len(x)
        if lo == 0:
            pairs = min(len(x) // 2, INTERLEAVE_PAIRS)
            if pairs:
                fwd, rev = x[0 : 2 * pairs : 2], x[1 : 2 * pairs : 2]
                self.interleaved = bool(
                    (rev == _reverse_complement(fwd)).all(axis=(1, 2)).mean() > 0.9
                )
        for i in self.picks[(self.picks >= lo) & (self.picks < hi)]:
            self.kept[int(i)] = (x[i - lo].copy(), y[i - lo].copy())
        partners = self.picks + self.half
        for j in partners[(partners >= lo) & (partners < hi)]:
            i = int(j) - self.half
            fwd_x, fwd_y = self.kept.pop(i)
            if not np.array_equal(x[j - lo], _reverse_complement(fwd_x)):
                self.x_mismatches.append((i, fwd_x, x[j - lo].copy()))
            if not np.array_equal(y[j - lo], fwd_y):
                self.y_mismatches.append(i)

    @property
    def mismatched_pairs(self) -> int:
        return 1 if self.n % 2 else len(self.x_mismatches)

    def problem(self, file: str) -> str | None:
        if self.n % 2:
            return (
                f"{file}: {self.n} samples, an odd number, so the file cannot hold forward "
                "sequences followed by their reverse complements"
            )
        if not self.x_mismatches:
            return None
        first = self.x_mismatches[0][0]
        text = (
            f"{file}: {len(self.x_mismatches)} of {len(self.picks)} checked pairs are not "
            f"reverse complements: sample n/2 + i must be the reverse complement of sample i "
            f"(first: samples {first} and {first + self.half})"
        )
        for phrase, lookalike in _RC_LOOKALIKES:
            if all(np.array_equal(rev, lookalike(fwd)) for _, fwd, rev in self.x_mismatches):
                return f"{text}; the second-half sequences {phrase}"
        if self.interleaved:
            return (
                f"{text}; the samples look interleaved (each sequence directly followed by its "
                "reverse complement) instead of all forward sequences, then all reverse "
                "complements"
            )
        return f"{text}; the second half is out of order or holds other sequences"

    def label_problem(self, file: str, y_name: str) -> str | None:
        if not self.y_mismatches:
            return None
        first = self.y_mismatches[0]
        return (
            f"{file} {y_name}: {len(self.y_mismatches)} of {len(self.picks)} checked reverse "
            f"complements have other labels than their forward sequence (first: samples "
            f"{first} and {first + self.half})"
        )


@dataclass
class _SplitScan:
    """What the gate measures in one split, filled chunk by chunk."""

    split: str
    file: str
    layout_error: str | None = None
    container: str | None = None
    layout: str | None = None
    n: int = 0
    seq_len: int = 0
    n_targets: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    first_example: dict[str, str] = field(default_factory=dict)
    bad_value_samples: int = 0
    bad_values_seen: set[int] = field(default_factory=set)
    multi_base_samples: int = 0
    bad_labels: int = 0
    bad_labels_seen: set[int] = field(default_factory=set)
    positions: int = 0
    unknown_positions: int = 0
    base_positions: int = 0
    gc_positions: int = 0
    cg_pairs: int = 0
    gc_pairs: int = 0
    base_counts: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    gc_histogram: np.ndarray = field(default_factory=lambda: np.zeros(GC_BINS, dtype=np.int64))
    positives: np.ndarray | None = None
    chunk_rows: list[dict[str, Any]] = field(default_factory=list)
    digests: list[np.ndarray] = field(default_factory=list)
    digest_samples: list[np.ndarray] = field(default_factory=list)
    leaked: int = 0
    leaked_as_rc: int = 0
    rc: _RcPairs | None = None

    @property
    def ok(self) -> bool:
        return self.layout_error is None

    def add_chunk(self, lo: int, x: np.ndarray, y: np.ndarray, train: _TrainIndex | None) -> None:
        count, length = x.shape[0], x.shape[1]
        words = x.view("<u4")[..., 0]  # (n, L): one 32-bit word per position
        bad_value = (words & NOT_BINARY_BITS) != 0
        multi_base = ~bad_value & ((words & (words - 1)) != 0)
        is_n = words == 0

        if bad_value.any():
            self.bad_value_samples += int(bad_value.any(axis=1).sum())
            self.bad_values_seen.update(np.unique(x[x > 1])[:5].tolist())
            self._first("onehot_values", lo, bad_value, "position", length)
        if multi_base.any():
            self.multi_base_samples += int(multi_base.any(axis=1).sum())
            self._first("onehot_single_base", lo, multi_base, "position", length)
        bad_label = y > 1
        if bad_label.any():
            self.bad_labels += int(bad_label.sum())
            self.bad_labels_seen.update(np.unique(y[bad_label])[:5].tolist())
            self._first("labels_binary", lo, bad_label, "target", y.shape[1])
        self.positives += (y == 1).sum(axis=0, dtype=np.int64)

        unknown_per_sample = is_n.sum(axis=1)
        gc_per_sample = ((words == G_WORD) | (words == C_WORD)).sum(axis=1)
        bases_per_sample = length - unknown_per_sample - (bad_value | multi_base).sum(axis=1)
        self.positions += count * length
        self.unknown_positions += int(unknown_per_sample.sum())
        self.base_positions += int(bases_per_sample.sum())
        self.gc_positions += int(gc_per_sample.sum())
        self.base_counts += [np.count_nonzero(words == w) for w in (A_WORD, G_WORD, C_WORD, T_WORD)]
        # Channel 2 then channel 1 reads CG in A,G,C,T order; channel 1 then 2 reads GC.
        self.cg_pairs += int(np.count_nonzero(x[:, :-1, 2] & x[:, 1:, 1]))
        self.gc_pairs += int(np.count_nonzero(x[:, :-1, 1] & x[:, 1:, 2]))
        has_bases = bases_per_sample > 0
        share = gc_per_sample[has_bases] / bases_per_sample[has_bases]
        self.gc_histogram += np.bincount(
            np.minimum((share * GC_BINS).astype(np.int64), GC_BINS - 1), minlength=GC_BINS
        )
        chunk_bases = int(bases_per_sample.sum())
        self.chunk_rows.append(
            {
                "split": self.split,
                "first_sample": lo,
                "last_sample": lo + count - 1,
                "gc_content": int(gc_per_sample.sum()) / chunk_bases if chunk_bases else np.nan,
                "n_share": int(unknown_per_sample.sum()) / (count * length),
            }
        )
        self._hash_forward(lo, x, has_bases, train)
        self.rc.add(lo, x, y)

    def _first(self, check: str, lo: int, flagged: np.ndarray, axis_name: str, size: int) -> None:
        if check not in self.first_example:
            sample, where = np.argwhere(flagged)[0]
            self.first_example[check] = f"sample {lo + sample}, {axis_name} {where} of {size}"

    def _hash_forward(
        self, lo: int, x: np.ndarray, has_bases: np.ndarray, train: _TrainIndex | None
    ) -> None:
        """Digest forward-half sequences (not all-N ones): index them for train, look up others."""
        stop = min(len(x), self.n // 2 - lo)
        if stop <= 0:
            return
        keep = np.flatnonzero(has_bases[:stop])
        forward = x[keep]
        digests = _sequence_hashes(forward)
        if self.split == "train":
            self.digests.append(digests)
            self.digest_samples.append(lo + keep)
            return
        if train is None:
            return
        direct = train.find(digests)
        as_rc = train.find(_sequence_hashes(np.ascontiguousarray(_reverse_complement(forward))))
        hits = (direct >= 0) | (as_rc >= 0)
        if hits.any() and "leakage" not in self.first_example:
            first = int(np.flatnonzero(hits)[0])
            partner = int(direct[first] if direct[first] >= 0 else as_rc[first])
            self.first_example["leakage"] = (
                f"{self.split} sample {lo + keep[first]} = train sample {partner}"
            )
        self.leaked += int(hits.sum())
        self.leaked_as_rc += int(((as_rc >= 0) & (direct < 0)).sum())

    def finish(self, x_name: str, y_name: str) -> None:
        """Turn totals and first examples into plain-words messages."""
        first, file = self.first_example, self.file
        if self.bad_value_samples:
            self.problems["onehot_values"] = (
                f"{file} {x_name}: {self.bad_value_samples} of {self.n} samples hold values "
                f"other than 0 and 1 (values seen: {_listed(self.bad_values_seen)}; first: "
                f"{first['onehot_values']})"
            )
        if self.multi_base_samples:
            self.problems["onehot_single_base"] = (
                f"{file} {x_name}: {self.multi_base_samples} of {self.n} samples have positions "
                f"with two or more bases set (first: {first['onehot_single_base']})"
            )
        if self.bad_labels:
            self.problems["labels_binary"] = (
                f"{file} {y_name}: {self.bad_labels} labels are not 0 or 1 (values seen: "
                f"{_listed(self.bad_labels_seen)}; first: {first['labels_binary']})"
            )
        if self.leaked:
            as_rc = f"; {self.leaked_as_rc} of them reverse-complemented" * bool(self.leaked_as_rc)
            self.problems["leakage"] = (
                f"{file}: {self.leaked} of {self.n // 2} forward sequences also appear in "
                f"train.mat (first: {first['leakage']}{as_rc})"
            )
        for check, text in (
            ("rc_halves", self.rc.problem(file)),
            ("rc_labels", self.rc.label_problem(file, y_name)),
        ):
            if text:
                self.problems[check] = text

    def take_train_index(self) -> _TrainIndex:
        """The leakage index over this (train) split's forward digests, which it hands over."""
        digests = np.concatenate([np.zeros(0, np.uint64), *self.digests])
        samples = np.concatenate([np.zeros(0, np.int64), *self.digest_samples])
        self.digests, self.digest_samples = [], []
        return _TrainIndex(digests, samples)

    @property
    def gc_mean(self) -> float:
        return self.gc_positions / self.base_positions if self.base_positions else np.nan

    @property
    def cg_gc_ratio(self) -> float:
        return self.cg_pairs / self.gc_pairs if self.gc_pairs else np.nan

    def observed_over_expected(self, pairs: int) -> float:
        """Dinucleotide count over what independent G and C frequencies predict."""
        _, g, c, _ = self.base_counts
        bases = int(self.base_counts.sum())
        pair_slots = self.n * max(self.seq_len - 1, 0)
        if not (g and c and pair_slots):
            return np.nan
        return (pairs / pair_slots) / ((g / bases) * (c / bases))


def _listed(values: set[int]) -> str:
    return ", ".join(str(v) for v in sorted(values))


def _nan_note(path: str, split: str, chunk_size: int) -> str | None:
    """Which float arrays hold NaN, and where. The reader refuses float dtypes before reading
    any value, so this looks inside the container itself, chunk by chunk."""
    notes = []
    keys = (x_key(split), y_key(split))
    with storage.open_binary(path) as fh:
        hdf5 = _detect_container(fh.read(4104)) == "hdf5"
        fh.seek(0)
        if hdf5:
            with h5py.File(fh, "r") as h5:
                for key in keys:
                    if key in h5 and h5[key].dtype.kind == "f":
                        sample_last = split == "train"  # as the bundle stores train.mat
                        notes.append(_nan_text(key, _h5_blocks(h5[key], sample_last, chunk_size)))
        else:
            mat = _Mat5File(fh, path.rsplit("/", 1)[-1])
            for key in keys:
                var = mat.vars.get(key)
                if var is not None and var.class_dtype.kind == "f":
                    n = var.shape[0]
                    blocks = (
                        (lo, mat.read_rows(var, lo, min(lo + chunk_size, n)))
                        for lo in range(0, n, chunk_size)
                    )
                    notes.append(_nan_text(key, blocks))
    return "; ".join(note for note in notes if note) or None


def _h5_blocks(
    array: h5py.Dataset, sample_last: bool, chunk_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    n = array.shape[-1] if sample_last else array.shape[0]
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        yield lo, (np.moveaxis(array[..., lo:hi], -1, 0) if sample_last else array[lo:hi])


def _nan_text(key: str, blocks: Iterable[tuple[int, np.ndarray]]) -> str | None:
    """'key holds NaN in k of n samples (first: sample i)' over sample-major blocks."""
    nan_samples, total, first = 0, 0, None
    for lo, block in blocks:
        per_sample = np.isnan(block).reshape(len(block), -1).any(axis=1)
        nan_samples += int(per_sample.sum())
        total += len(block)
        if first is None and per_sample.any():
            first = lo + int(np.flatnonzero(per_sample)[0])
    if not nan_samples:
        return None
    return f"{key} holds NaN in {nan_samples} of {total} samples (first: sample {first})"


def _scan_split(
    path: str, split: str, cfg: ValidateConfig, seq_len: int | None, train: _TrainIndex | None
) -> _SplitScan:
    """Stream one split once; a layout or read error ends its scan with that message."""
    scan = _SplitScan(split, path.rsplit("/", 1)[-1])
    try:
        reader = open_split(path, split, seq_len=seq_len)
    except DataError as err:
        scan.layout_error = str(err)
        if "dtype float" in scan.layout_error:  # the reader's words for a float array
            try:
                note = _nan_note(path, split, cfg.chunk_size)
            except (OSError, DataError, KeyError, ValueError):
                note = None
            if note:
                scan.layout_error += f"; {note}"
        return scan
    with reader:
        scan.container, scan.layout = reader.container, reader.layout
        scan.n, scan.seq_len, scan.n_targets = reader.n, reader.seq_len, reader.n_targets or 0
        scan.layout_error = _dtype_or_size_problem(reader)
        if scan.layout_error:
            return scan
        scan.positives = np.zeros(scan.n_targets, dtype=np.int64)
        scan.rc = _RcPairs(reader.n, cfg.rc_pairs_checked)
        try:
            for lo in range(0, reader.n, cfg.chunk_size):
                x, y = reader.read_raw(lo, min(lo + cfg.chunk_size, reader.n))
                scan.add_chunk(lo, x, y, train)
        except DataError as err:
            scan.layout_error = str(err)
            return scan
        scan.finish(reader.x_name, reader.y_name)
    return scan


def _dtype_or_size_problem(reader: SplitReader) -> str | None:
    """The reader accepts any integer dtype; training reads uint8 only."""
    for name, dtype in ((reader.x_name, reader.x_dtype), (reader.y_name, reader.y_dtype)):
        if dtype != np.uint8:
            return f"{reader.name} {name}: stored as {dtype}, DeepSEA data is uint8 0/1"
    if reader.n == 0:
        return f"{reader.name}: holds no samples"
    return None


# --------------------------------------------------------------------------- summary tables


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest gap between two histograms' cumulative distributions."""
    if not a.sum() or not b.sum():
        return np.nan
    return float(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum()).max())


def _splits_table(scans: dict[str, _SplitScan]) -> pd.DataFrame:
    train = scans["train"]
    rows = []
    for split, s in scans.items():
        row: dict[str, Any] = {"split": split, "file": s.file, "layout_error": float(not s.ok)}
        if s.ok:
            compare = train.ok and split != "train"
            row |= {
                "samples": s.n,
                "seq_len": s.seq_len,
                "n_targets": s.n_targets,
                "bad_value_samples": s.bad_value_samples,
                "multi_base_samples": s.multi_base_samples,
                "bad_labels": s.bad_labels,
                "rc_mismatched_pairs": s.rc.mismatched_pairs,
                "rc_label_mismatches": len(s.rc.y_mismatches),
                "target_count_mismatch": float(s.n_targets != train.n_targets) if compare else None,
                "seq_len_mismatch": float(s.seq_len != train.seq_len) if compare else None,
                "n_share": s.unknown_positions / s.positions,
                "gc_mean": s.gc_mean,
                "gc_mean_diff": abs(s.gc_mean - train.gc_mean) if compare else None,
                "gc_ks": _ks_distance(s.gc_histogram, train.gc_histogram) if compare else None,
                "cg_oe": s.observed_over_expected(s.cg_pairs),
                "gc_oe": s.observed_over_expected(s.gc_pairs),
                "cg_gc_ratio": s.cg_gc_ratio,
                "leaked_sequences": s.leaked if compare else None,
            }
        rows.append(row)
    return _numeric(pd.DataFrame(rows), keep=("split", "file"))


def _targets_table(scans: dict[str, _SplitScan]) -> pd.DataFrame:
    train = scans["train"]
    n_targets = train.n_targets if train.ok else 0
    table = pd.DataFrame({"target": np.arange(n_targets)})
    for split, s in scans.items():
        usable = s.ok and train.ok and s.n_targets == n_targets
        table[f"{split}_positives"] = s.positives if usable else np.nan
        table[f"{split}_prevalence"] = s.positives / s.n if usable else np.nan
    train_smoothed = (table["train_positives"] + 1) / (train.n + 2) if train.ok else np.nan
    for split in ("valid", "test"):
        table[f"{split}_prevalence_diff"] = (
            table[f"{split}_prevalence"] - table["train_prevalence"]
        ).abs()
        smoothed = (table[f"{split}_positives"] + 1) / (scans[split].n + 2)
        table[f"{split}_prevalence_ratio"] = np.maximum(
            smoothed / train_smoothed, train_smoothed / smoothed
        )
    return _numeric(table, keep=("target",))


def _chunks_table(scans: dict[str, _SplitScan]) -> pd.DataFrame:
    rows = [row for s in scans.values() if s.ok for row in s.chunk_rows]
    columns = ["split", "first_sample", "last_sample", "gc_content", "n_share"]
    return _numeric(
        pd.DataFrame(rows, columns=columns), keep=("split", "first_sample", "last_sample")
    )


def _numeric(table: pd.DataFrame, keep: tuple[str, ...]) -> pd.DataFrame:
    """Float columns (NaN for 'not measured') so GE treats missing values alike."""
    for column in table.columns:
        if column not in keep:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table


# --------------------------------------------------------------------------- report


@dataclass
class Check:
    """One expectation's verdict for one split. passed is None when it could not be checked."""

    name: str
    split: str
    blocking: bool
    passed: bool | None
    observed: float | None
    threshold: str
    message: str
    suite: str
    column: str


@dataclass
class ValidationReport:
    data_dir: str
    checks: list[Check]
    splits: dict[str, dict[str, Any]]
    thresholds: dict[str, Any]
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        """True only when every blocking check ran and passed."""
        return all(c.passed for c in self.checks if c.blocking)

    @property
    def failures(self) -> list[Check]:
        """Blocking checks that failed or could not run."""
        return [c for c in self.checks if c.blocking and not c.passed]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.blocking and c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "passed": self.passed,
            "blocking_failures": len(self.failures),
            "warnings": len(self.warnings),
            "elapsed_s": round(self.elapsed_s, 3),
            "thresholds": self.thresholds,
            "splits": self.splits,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _targets_phrase(targets: list[int]) -> str:
    listed = ", ".join(str(t) for t in targets[:10]) + (", ..." if len(targets) > 10 else "")
    return f"target {targets[0]}" if len(targets) == 1 else f"{len(targets)} targets ({listed})"


def _explain(
    spec: GateExpectation, split: str, failing: pd.DataFrame, scans: dict[str, _SplitScan]
) -> str:
    """Plain words for a failing check, naming the file, samples or targets."""
    scan, file = scans[split], scans[split].file
    if spec.name == "layout":
        return str(scan.layout_error)
    if spec.name in scan.problems:
        return scan.problems[spec.name]
    row = failing.iloc[0]
    train = scans["train"]
    if spec.name == "same_targets":
        return (
            f"{file} has {scan.n_targets} targets but train.mat has {train.n_targets}: every "
            "split must label the same targets in the same order"
        )
    if spec.name == "same_seq_len":
        return f"{file} holds {scan.seq_len}-bp sequences but train.mat {train.seq_len}-bp ones"
    if spec.name == "n_share":
        worst = failing.loc[failing["n_share"].idxmax()]
        return (
            f"{file}: {len(failing)} of {len(scan.chunk_rows)} chunks have more than "
            f"{spec.max_value:.0%} unknown bases (N) (worst: samples {int(worst.first_sample)}-"
            f"{int(worst.last_sample)}, {worst.n_share:.0%} N); are positions masked or empty?"
        )
    if spec.name == "channel_order":
        return (
            f"{file}: channels look like A,C,G,T order; DeepSEA uses A,G,C,T. Read as A,G,C,T, "
            f"CG appears {row.cg_oe:.2f}x and GC {row.gc_oe:.2f}x as often as base frequencies "
            f"predict (CG/GC ratio {row.cg_gc_ratio:.2f}), but genomic DNA is depleted of CG, "
            "not GC"
        )
    if spec.name == "gc_mean_drift":
        return (
            f"{file}: mean GC content {row.gc_mean:.1%} vs {train.gc_mean:.1%} in train.mat "
            f"(difference {row.gc_mean_diff:.3f}, allowed {spec.max_value})"
        )
    if spec.name == "gc_distribution":
        return (
            f"{file}: per-sequence GC content is distributed unlike train.mat "
            f"(Kolmogorov-Smirnov distance {row.gc_ks:.2f}, allowed {spec.max_value})"
        )
    targets = failing["target"].astype(int).tolist()
    verb = "has" if len(targets) == 1 else "have"
    if spec.name == "train_positives":
        need = int(spec.min_value or 1)
        what = "no positive" if need == 1 else f"fewer than {need} positives"
        return f"{_targets_phrase(targets)} {verb} {what} in train.mat: nothing to learn from"
    if spec.name in ("valid_positives", "test_positives"):
        return (
            f"{_targets_phrase(targets)} {verb} no positive in {file}: ROC and PR AUC are "
            "undefined there"
        )
    worst = failing.loc[failing[spec.column].idxmax()]
    size = f"a factor {spec.max_value}" if spec.column.endswith("_ratio") else spec.max_value
    return (
        f"{file}: {len(targets)} of {len(scans['train'].positives)} targets differ in prevalence "
        f"from train.mat by more than {size} (worst: target {int(worst.target)}, "
        f"{worst[f'{split}_prevalence']:.1%} in {file} vs {worst.train_prevalence:.1%} in "
        "train.mat)"
    )


def _skip_reason(spec: GateExpectation, split: str, scans: dict[str, _SplitScan]) -> str:
    if not scans[split].ok:
        return f"not checked: {scans[split].file} failed the layout check"
    if spec.needs_train and not scans["train"].ok:
        return "not checked: needs train.mat, which failed the layout check"
    if spec.table == "targets" and scans[split].n_targets != scans["train"].n_targets:
        return f"not checked: {scans[split].file} and train.mat have different target counts"
    return "not checked: nothing valid to measure (see the other failures)"


def _checks_from_results(
    suite: list[GateExpectation],
    tables: dict[str, pd.DataFrame],
    unexpected: dict[str, set[RowKey]],
    scans: dict[str, _SplitScan],
) -> list[Check]:
    checks = []
    for spec in suite:
        table = tables[spec.table]
        for split in spec.splits:
            rows = table if "split" not in table else table[table["split"] == split]
            rows = rows[rows[spec.column].notna()]
            keys = zip(*(rows[column] for column in ROW_KEYS[spec.table]), strict=True)
            failing = rows[[key in unexpected[spec.name] for key in keys]]
            passed: bool | None = failing.empty if len(rows) else None
            observed = None
            if len(rows):
                values = rows[spec.column]
                observed = float(values.min() if spec.min_value is not None else values.max())
            if passed is None:
                message = _skip_reason(spec, split, scans)
            elif passed:
                message = spec.meaning
            else:
                message = _explain(spec, split, failing, scans)
            checks.append(
                Check(
                    spec.name,
                    split,
                    spec.blocking,
                    passed,
                    observed,
                    spec.threshold,
                    message,
                    f"deepsea_{spec.table}",
                    spec.column,
                )
            )
    return checks


# --------------------------------------------------------------------------- Great Expectations


def _run_great_expectations(
    suite: list[GateExpectation], tables: dict[str, pd.DataFrame], docs_dir: Path
) -> dict[str, set[RowKey]]:
    """Validate each table against its part of the suite and build Data Docs into docs_dir.

    Returns, per expectation name, the keys (ROW_KEYS) of the rows GE found out of bounds.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        "danq_gate",
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("deepsea_summaries")
    unexpected: dict[str, set[RowKey]] = {}
    for name, table in tables.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        gx_suite = context.suites.add(gx.ExpectationSuite(name=f"deepsea_{name}"))
        for spec in suite:
            if spec.table == name:
                gx_suite.add_expectation(
                    gx.expectations.ExpectColumnValuesToBeBetween(
                        column=spec.column,
                        min_value=spec.min_value,
                        max_value=spec.max_value,
                        description=f"{spec.name}: {spec.meaning} "
                        f"({'blocking' if spec.blocking else 'warning only'})",
                        meta={"check": spec.name, "blocking": spec.blocking},
                    )
                )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"gate_{name}", data=batch, suite=gx_suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": table},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(ROW_KEYS[name]),
            },
        )
        for outcome in result.results:
            if outcome.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"Great Expectations failed on {name}: "
                    f"{outcome.exception_info.get('exception_message')}"
                )
            indices = outcome.result.get("unexpected_index_list") or []
            unexpected[outcome.expectation_config.meta["check"]] = {
                tuple(row[column] for column in ROW_KEYS[name]) for row in indices
            }
    context.build_data_docs(site_names=["danq_gate"])
    return unexpected


# --------------------------------------------------------------------------- entry points


def validate_dataset(
    data_dir: str | os.PathLike[str],
    cfg: ValidateConfig,
    out_dir: str | os.PathLike[str],
    seq_len: int | None = None,
) -> ValidationReport:
    """Run the gate over train/valid/test.mat in data_dir (local or gs://); write the outputs.

    out_dir receives report.json, splits.csv, targets.csv, chunks.csv and data_docs/, all at
    once (built in a temporary folder, then renamed or uploaded).
    """
    started = time.monotonic()
    data_dir = str(data_dir)
    scans: dict[str, _SplitScan] = {}
    train_index = None
    for split in SPLITS:
        scans[split] = _scan_split(
            storage.join(data_dir, f"{split}.mat"), split, cfg, seq_len, train_index
        )
        if split == "train" and scans[split].ok:
            train_index = scans[split].take_train_index()
    tables = {
        "splits": _splits_table(scans),
        "targets": _targets_table(scans),
        "chunks": _chunks_table(scans),
    }
    suite = gate_suite(cfg)
    staging = Path(tempfile.mkdtemp(prefix=".validation-", dir=_staging_parent(out_dir)))
    try:
        unexpected = _run_great_expectations(suite, tables, staging / DATA_DOCS_DIR)
        report = ValidationReport(
            data_dir=data_dir,
            checks=_checks_from_results(suite, tables, unexpected, scans),
            splits={
                split: {
                    "file": s.file,
                    "container": s.container,
                    "layout": s.layout,
                    "samples": s.n,
                    "seq_len": s.seq_len,
                    "targets": s.n_targets,
                    "readable": s.ok,
                }
                for split, s in scans.items()
            },
            thresholds=cfg.model_dump(),
        )
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        report.elapsed_s = time.monotonic() - started
        (staging / REPORT_FILE).write_text(report.to_json())
        _publish(staging, str(out_dir))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _staging_parent(out_dir: str | os.PathLike[str]) -> str | None:
    """Next to a local out_dir (same filesystem, so the final rename is atomic)."""
    if storage.is_remote(out_dir):
        return None
    parent = Path(out_dir).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return str(parent)


def _publish(staging: Path, out_dir: str) -> None:
    """Replace out_dir by the staged outputs in one step (locally) or report.json last (gs://)."""
    if storage.is_remote(out_dir):
        storage.remove_tree(out_dir)
        # report.json goes last: its presence marks a complete upload.
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == REPORT_FILE):
            storage.upload(entry, storage.join(out_dir, entry.name))
        return
    target = Path(out_dir)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `danq validate`."""
    parser.add_argument(
        "--data", help="DeepSEA-format folder, local or gs:// (default: paths.data_dir)"
    )
    parser.add_argument("--out", help="report folder (default: <paths.work_dir>/validation)")
    parser.add_argument(
        "--seq-len", type=int, help="expected sequence length in bp (default: take train.mat's)"
    )


def run(args: argparse.Namespace, params: Params) -> int:
    """Run `danq validate`: 0 when every blocking check passes, 1 otherwise."""
    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, "validation")
    report = validate_dataset(data, params.validate_, out, seq_len=args.seq_len)
    not_run = 0
    for check in report.failures:
        if check.passed is None:
            not_run += 1
        else:
            print(f"FAILED {check.name} ({check.split}): {check.message}", file=sys.stderr)
    if not_run:
        print(f"{not_run} more blocking checks could not run (see {REPORT_FILE})", file=sys.stderr)
    for check in report.warnings:
        print(f"warning {check.name} ({check.split}): {check.message}", file=sys.stderr)
    verdict = "passed" if report.passed else f"FAILED ({len(report.failures)} blocking checks)"
    print(
        f"data gate {verdict}: {len(report.checks)} checks, {len(report.warnings)} warnings, "
        f"{report.elapsed_s:.1f} s; report: {storage.join(str(out), REPORT_FILE)}, Data Docs: "
        f"{storage.join(str(out), DATA_DOCS_DIR, 'index.html')}"
    )
    return 0 if report.passed else 1

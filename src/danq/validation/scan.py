"""The streaming scan: one pass over each split in bounded chunks, measuring what the gate
checks (one-hot validity, labels, reverse-complement halves, base composition, leakage into
train) with numpy, with memory independent of the number of samples."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from danq.config import SPLITS, ValidateConfig
from danq.errors import DataError
from danq.io import mat5, storage
from danq.io.deepsea import HEAD_BYTES, SplitReader, detect_container, open_split, x_key, y_key

GC_BINS = 100
INTERLEAVE_PAIRS = 50
# One-hot position read as a little-endian uint32: channel c set <=> word == 1 << 8c.
A_WORD, G_WORD, C_WORD, T_WORD = (1 << (8 * c) for c in range(4))
NOT_BINARY_BITS = 0xFEFEFEFE  # any bit other than the lowest of each byte: a value > 1
NAN_BLOCK_BYTES = 64 * 2**20


def _sequence_hashes(x: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each sample's one-hot bytes."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.uint64)
    size = x[0].nbytes
    data = np.ascontiguousarray(x).data.cast("B")
    digests = b"".join(
        hashlib.blake2b(data[i * size : (i + 1) * size], digest_size=8).digest()
        for i in range(len(x))
    )
    return np.frombuffer(digests, dtype=np.uint64)


class TrainIndex:
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


class RcPairs:
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
class SplitScan:
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
    # Sized by scan_split once the split's targets and samples are known.
    positives: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chunk_rows: list[dict[str, Any]] = field(default_factory=list)
    digests: list[np.ndarray] = field(default_factory=list)
    digest_samples: list[np.ndarray] = field(default_factory=list)
    leaked: int = 0
    leaked_as_rc: int = 0
    rc: RcPairs = field(default_factory=lambda: RcPairs(n=0, n_pairs=0))

    @property
    def ok(self) -> bool:
        return self.layout_error is None

    def add_chunk(self, lo: int, x: np.ndarray, y: np.ndarray, train: TrainIndex | None) -> None:
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
        self, lo: int, x: np.ndarray, has_bases: np.ndarray, train: TrainIndex | None
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

    def take_train_index(self) -> TrainIndex:
        """The leakage index over this (train) split's forward digests, which it hands over."""
        digests = np.concatenate([np.zeros(0, np.uint64), *self.digests])
        samples = np.concatenate([np.zeros(0, np.int64), *self.digest_samples])
        self.digests, self.digest_samples = [], []
        return TrainIndex(digests, samples)

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
        hdf5 = detect_container(fh.read(HEAD_BYTES)) == "hdf5"
        fh.seek(0)
        if hdf5:
            with h5py.File(fh, "r") as h5:
                for key in keys:
                    if key in h5 and h5[key].dtype.kind == "f":
                        array = h5[key]
                        sample_last = split == "train"  # as the bundle stores train.mat
                        per_sample = array.shape[:-1] if sample_last else array.shape[1:]
                        rows = _rows_per_block(per_sample, array.dtype, chunk_size)
                        notes.append(_nan_text(key, _h5_blocks(array, sample_last, rows)))
        else:
            with mat5.Mat5File(fh, path.rsplit("/", 1)[-1]) as mat:
                for key in keys:
                    var = mat.vars.get(key)
                    if var is not None and var.class_dtype.kind == "f":
                        n = var.shape[0]
                        rows = _rows_per_block(var.shape[1:], var.dtype, chunk_size)
                        blocks = (
                            (lo, mat.read_rows(var, lo, min(lo + rows, n)))
                            for lo in range(0, n, rows)
                        )
                        notes.append(_nan_text(key, blocks))
    return "; ".join(note for note in notes if note) or None


def _rows_per_block(per_sample: tuple[int, ...], dtype: np.dtype, chunk_size: int) -> int:
    """Samples read at a time when looking for NaN: chunk_size, fewer if a block of float
    samples would pass NAN_BLOCK_BYTES (float64 is 8 times the uint8 a chunk is sized for)."""
    sample_bytes = max(1, math.prod(per_sample) * dtype.itemsize)
    return max(1, min(chunk_size, NAN_BLOCK_BYTES // sample_bytes))


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


def scan_split(
    path: str, split: str, cfg: ValidateConfig, seq_len: int | None, train: TrainIndex | None
) -> SplitScan:
    """Stream one split once; a layout or read error ends its scan with that message."""
    scan = SplitScan(split, path.rsplit("/", 1)[-1])
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
        scan.rc = RcPairs(reader.n, cfg.rc_pairs_checked)
        try:
            for lo in range(0, reader.n, cfg.chunk_size):
                x, y = reader.read_raw(lo, min(lo + cfg.chunk_size, reader.n))
                assert y is not None  # open_split requires labels
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


def scan_dataset(
    data_dir: str, cfg: ValidateConfig, seq_len: int | None = None
) -> dict[str, SplitScan]:
    """Scan train.mat, then valid.mat and test.mat, looking their sequences up in train's."""
    scans: dict[str, SplitScan] = {}
    train_index = None
    for split in SPLITS:
        path = storage.join(data_dir, f"{split}.mat")
        scans[split] = scan_split(path, split, cfg, seq_len, train_index)
        if split == "train" and scans[split].ok:
            train_index = scans[split].take_train_index()
    return scans

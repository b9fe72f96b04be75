"""`danq predict`: score DNA sequences with a trained DanQ model and write a TSV.

Input is a FASTA file (plain or gzip-compressed; records of up to limits.max_record_length
bases; IUPAC codes other than A/C/G/T, N included, become all-zero "unknown" positions) or a
DeepSEA-format prediction file (HDF5 `testxdata` (N, 4, L); MATLAB v5 is read too). Every
window is scored on both strands and the two outputs are averaged (reverse-complement
averaging).

Window policy. The model's input length L is read from the model. A window is L consecutive
positions of the record starting at 0-based offset `start`; positions before the record's
first base or past its last base are N.
- `center` (default): one window per record, centred on it: `start = (length - L) // 2`.
  A shorter record is padded with N on both sides (the odd N on the left), a longer one is
  cut down to its middle L bases (the odd base dropped on the right).
- `tile`: windows of L at `stride` (default L: adjacent, non-overlapping) covering the whole
  record; the fewest windows that cover it, with the tiling centred on the record so that any
  overhang (N padding) is split between the two ends. A record of at most L bases gets the
  single centred window.
The TSV has one row per window: `id`, `window_start`, `window_end`, then one column per target
(probabilities, 6 significant digits). Coordinates are 1-based, inclusive, and clipped to the
record (the padding is not counted). In `tile` mode the id is `record:start-end`; in `center`
mode it is the record id. DeepSEA-format rows are `seq_<i>` (0-based row index), 1 to L.

Models and their target names are loaded by danq.model.loading; FASTA is read by
danq.io.fasta.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from danq.artifacts import atomic_text
from danq.config import WINDOW_POLICIES, WindowPolicy
from danq.data.encoding import N_CODE, codes_to_onehot, encode, reverse_complement_onehot
from danq.errors import PredictError
from danq.io import fasta
from danq.io.deepsea import open_prediction_input

if TYPE_CHECKING:
    import keras

DEEPSEA_SUFFIXES = (".h5", ".hdf5", ".mat")

RowLabel = tuple[str, int, int]  # row id, 1-based first and last position covered


# --------------------------------------------------------------------------- windows


def window_starts(length: int, seq_len: int, windows: WindowPolicy, stride: int) -> range:
    """0-based record offsets of the windows scored for a record of `length` bases, as a
    range: a long record tiled at a small stride has millions, never held in a list."""
    if windows == "center" or length <= seq_len:
        start = (length - seq_len) // 2
        return range(start, start + 1)
    n_windows = -(-(length - seq_len) // stride) + 1
    span = (n_windows - 1) * stride + seq_len
    first = (length - span) // 2
    return range(first, first + n_windows * stride, stride)


def window_codes(codes: np.ndarray, start: int, seq_len: int) -> np.ndarray:
    """Base codes of record positions [start, start + seq_len), N outside the record."""
    window = np.full(seq_len, N_CODE, dtype=np.uint8)
    lo, hi = max(start, 0), min(start + seq_len, len(codes))
    window[lo - start : hi - start] = codes[lo:hi]
    return window


def fasta_batches(
    path: str, seq_len: int, batch_size: int, windows: WindowPolicy, stride: int
) -> Iterator[tuple[list[RowLabel], np.ndarray]]:
    """The windows of every record (see the module doc), one-hot encoded batch_size at a time
    (a batch may span records): memory holds one record and one batch, whatever the number
    of windows."""
    if not fasta.is_text(path):
        raise PredictError(
            f"{path}: not a text file (binary content); expected FASTA, plain or "
            f"gzip-compressed (DeepSEA-format input needs a {'/'.join(DEEPSEA_SUFFIXES)} name)"
        )
    labels: list[RowLabel] = []
    codes: list[np.ndarray] = []
    for record_id, sequence in fasta.read_fasta(path):
        record = encode(sequence)
        # Windows start at most seq_len before the record and end at most seq_len after it:
        # pad once with N so that every window is a row of a sliding view.
        padded = np.full(len(record) + 2 * seq_len, N_CODE, dtype=np.uint8)
        padded[seq_len : seq_len + len(record)] = record
        padded_windows = np.lib.stride_tricks.sliding_window_view(padded, seq_len)
        starts = window_starts(len(record), seq_len, windows, stride)
        taken = 0
        while taken < len(starts):
            part = starts[taken : taken + batch_size - len(labels)]
            taken += len(part)
            codes.append(padded_windows[np.asarray(part) + seq_len])
            for start in part:
                first, last = max(start, 0) + 1, min(start + seq_len, len(record))
                row_id = record_id if windows == "center" else f"{record_id}:{first}-{last}"
                labels.append((row_id, first, last))
            if len(labels) == batch_size:
                yield labels, codes_to_onehot(np.concatenate(codes))
                labels, codes = [], []
    if labels:
        yield labels, codes_to_onehot(np.concatenate(codes))


def _hdf5_batches(
    path: str, seq_len: int, batch_size: int
) -> Iterator[tuple[list[RowLabel], np.ndarray]]:
    with open_prediction_input(path) as reader:
        if reader.seq_len != seq_len:
            raise PredictError(
                f"{reader.name}: sequences are {reader.seq_len} bp but the model takes "
                f"{seq_len} bp; DeepSEA-format input must match the model (use FASTA to have "
                "sequences of other lengths windowed)"
            )
        for start, x, _ in reader.iter_chunks(batch_size):
            yield [(f"seq_{start + i}", 1, seq_len) for i in range(len(x))], x


# --------------------------------------------------------------------------- scoring


def model_seq_len(model: keras.Model) -> int:
    seq_len = model.input_shape[1]
    if not isinstance(seq_len, int):
        raise PredictError(f"model input shape {model.input_shape}: no fixed sequence length")
    return seq_len


def model_n_targets(model: keras.Model) -> int:
    return int(model.output_shape[-1])


def score_with_reverse_complement(model: keras.Model, onehot: np.ndarray) -> np.ndarray:
    """Mean of the model's outputs on each window (n, L, 4) and on its reverse complement."""
    x = onehot.astype(np.float32)
    # One call on both strands: half the per-call overhead of two calls.
    both = np.asarray(model.predict_on_batch(np.concatenate([x, reverse_complement_onehot(x)])))
    return (both[: len(x)] + both[len(x) :]) / 2


def _write_predictions(
    model: keras.Model,
    batches: Iterator[tuple[list[RowLabel], np.ndarray]],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
) -> int:
    if len(target_names) != model_n_targets(model):
        raise PredictError(
            f"{len(target_names)} target names for a model with {model_n_targets(model)} outputs"
        )
    row_format = "%s\t%d\t%d" + "\t%.6g" * len(target_names) + "\n"
    rows = 0
    with atomic_text(out_tsv) as fh:
        fh.write("\t".join(["id", "window_start", "window_end", *target_names]) + "\n")
        for labels, onehot in batches:
            scores = score_with_reverse_complement(model, onehot)
            for label, row in zip(labels, scores.tolist(), strict=True):
                fh.write(row_format % (*label, *row))
            rows += len(labels)
    return rows


def predict_fasta(
    model: keras.Model,
    fasta_path: str | os.PathLike[str],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
    batch_size: int = 100,
    windows: WindowPolicy = "center",
    stride: int | None = None,
) -> int:
    """Score every window of every FASTA record (see the module doc); return the row count."""
    seq_len = model_seq_len(model)
    _check_batch_size(batch_size)
    stride = _checked_stride(windows, stride, seq_len)
    batches = fasta_batches(str(fasta_path), seq_len, batch_size, windows, stride)
    return _write_predictions(model, batches, out_tsv, target_names)


def predict_hdf5(
    model: keras.Model,
    hdf5_path: str | os.PathLike[str],
    out_tsv: str | os.PathLike[str],
    target_names: list[str],
    batch_size: int = 100,
) -> int:
    """Score a DeepSEA-format prediction file (testxdata (N, 4, L)); return the row count."""
    _check_batch_size(batch_size)
    batches = _hdf5_batches(str(hdf5_path), model_seq_len(model), batch_size)
    return _write_predictions(model, batches, out_tsv, target_names)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise PredictError(f"batch size must be at least 1, got {batch_size}")


def _checked_stride(windows: WindowPolicy, stride: int | None, seq_len: int) -> int:
    if windows not in WINDOW_POLICIES:
        raise PredictError(f"windows {windows!r}: expected one of {', '.join(WINDOW_POLICIES)}")
    if stride is None:
        return seq_len
    if windows != "tile":
        raise PredictError("a stride applies to tile windows only")
    if not 1 <= stride <= seq_len:
        raise PredictError(
            f"stride {stride}: must be between 1 and the model's window length {seq_len} "
            "so that the windows cover the record"
        )
    return stride


def is_deepsea_input(path: str | os.PathLike[str]) -> bool:
    """Whether the input is named as a DeepSEA-format file rather than FASTA."""
    return str(path).lower().endswith(DEEPSEA_SUFFIXES)

"""First-layer convolution filters as position frequency matrices (PFMs).

`scan_filters` turns each filter into a PFM the way DanQ (Quang & Xie 2016) and Basset (Kelley
et al. 2016) did: scan sequences, take every window where the filter's activation exceeds
`threshold` x its largest activation over the scanned sequences, aligned at the activation
position (the window the valid convolution saw), and count its bases. Two passes over the same
sequences (the maximum first, then the counts); only the counts are kept, so memory does not
grow with the number of sites. `weights_to_pfm` reads a PFM off the weights themselves, which
is what a motif-initialised filter holds before training.

PFMs are (width, 4) arrays in the data's channel order A, G, C, T.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np

from danq.data.encoding import N_CODE, codes_to_onehot
from danq.errors import PredictError

MOTIF_CONV_LAYER = "motif_conv"  # the first convolution's name in danq.model.network

# A re-iterable source of base-code batches (B, L) uint8: called once per pass.
CodeBatches = Callable[[], Iterator[np.ndarray]]


@dataclass(frozen=True)
class FilterScan:
    """Per filter: base counts of its sites (F, width, 4), number of sites, the largest
    activation over the scanned sequences; and what was scanned."""

    counts: np.ndarray
    n_sites: np.ndarray
    max_activation: np.ndarray
    n_sequences: int
    threshold: float

    @property
    def n_filters(self) -> int:
        return int(self.counts.shape[0])

    def pfms(self) -> list[np.ndarray]:
        """Each filter's PFM: a column's counts over their sum (N bases are not counted);
        uniform where no base was counted (a filter without sites)."""
        totals = self.counts.sum(axis=-1, keepdims=True)
        uniform = np.full_like(self.counts, 0.25)
        frequencies = np.divide(self.counts, totals, out=uniform, where=totals > 0)
        return list(frequencies)


def motif_conv(model: keras.Model) -> keras.layers.Layer:
    try:
        return model.get_layer(MOTIF_CONV_LAYER)
    except ValueError:
        raise PredictError(
            f"model {model.name!r} has no layer {MOTIF_CONV_LAYER!r}: not a DanQ model"
        ) from None


def weights_to_pfm(kernel: np.ndarray) -> list[np.ndarray]:
    """A PFM per filter of a (width, 4, F) kernel: each column's positive part of weights +
    0.25, normalised to sum 1 (uniform where nothing is positive).

    This inverts DanQ-JASPAR's initialisation, which writes PFM - 0.25 into a filter
    (danq.model.network.jaspar_filter_weights): there the motif's columns come back exactly,
    and the small random weights around it give near-uniform columns. For a trained filter
    it is only a rough view (the scale of its weights is arbitrary); its sites (scan_filters)
    are what it learned."""
    shifted = np.maximum(np.asarray(kernel, dtype=np.float64) + 0.25, 0.0)
    totals = shifted.sum(axis=1, keepdims=True)
    uniform = np.full_like(shifted, 0.25)
    frequencies = np.divide(shifted, totals, out=uniform, where=totals > 0)
    return [frequencies[:, :, f] for f in range(frequencies.shape[-1])]


def _activation_model(model: keras.Model) -> keras.Model:
    return keras.Model(model.inputs, motif_conv(model).output)


def _limited(batches: CodeBatches, max_sequences: int) -> Iterator[np.ndarray]:
    left = max_sequences
    for codes in batches():
        if left <= 0:
            return
        codes = codes[:left]
        left -= len(codes)
        yield codes


def scan_filters(
    model: keras.Model, batches: CodeBatches, threshold: float, max_sequences: int
) -> FilterScan:
    """Count, for every filter, the bases of the windows whose activation exceeds threshold x
    the filter's maximum over the first max_sequences sequences of batches."""
    if not 0.0 < threshold < 1.0:
        raise PredictError(f"threshold {threshold}: must be between 0 and 1")
    activations = _activation_model(model)
    width, _, n_filters = motif_conv(model).get_weights()[0].shape

    def activation_batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for codes in _limited(batches, max_sequences):
            onehot = codes_to_onehot(codes).astype(np.float32)
            yield codes, np.asarray(activations.predict_on_batch(onehot))

    maximum = np.zeros(n_filters)
    n_sequences = 0
    for codes, act in activation_batches():
        maximum = np.maximum(maximum, act.max(axis=(0, 1)))
        n_sequences += len(codes)
    if n_sequences == 0:
        raise PredictError("no sequences to scan")
    # ReLU activations: a filter never above 0 has no sites.
    cutoff = np.where(maximum > 0, threshold * maximum, np.inf)
    counts = np.zeros((n_filters, width * (N_CODE + 1)), dtype=np.int64)
    columns = np.arange(width)
    for codes, act in activation_batches():
        sequence, position, filter_index = np.nonzero(act > cutoff)
        bases = codes[sequence[:, None], position[:, None] + columns]  # (sites, width)
        cells = filter_index[:, None] * counts.shape[1] + columns * (N_CODE + 1) + bases
        counts += np.bincount(cells.ravel(), minlength=counts.size).reshape(counts.shape)
    by_base = counts.reshape(n_filters, width, N_CODE + 1)
    n_sites = by_base[:, 0, :].sum(axis=-1)  # each site counts once in every column
    return FilterScan(
        counts=by_base[:, :, :N_CODE].astype(np.float64),
        n_sites=n_sites,
        max_activation=maximum,
        n_sequences=n_sequences,
        threshold=threshold,
    )


def shard_batches(shard_dir: str, batch_size: int) -> CodeBatches:
    """A split's shards as base-code batches, in stored order."""
    from danq.data.dataset import make_dataset

    def batches() -> Iterator[np.ndarray]:
        for codes, _ in make_dataset(shard_dir, batch_size, codes_only=True):
            yield codes.numpy()

    return batches


def fasta_batches(path: str, model: keras.Model, batch_size: int) -> CodeBatches:
    """Each FASTA record's centred window of the model's length (as `danq predict` centres
    it), as base-code batches."""
    from danq.predict import model_seq_len
    from danq.prediction.ism import fasta_sequences

    seq_len = model_seq_len(model)

    def batches() -> Iterator[np.ndarray]:
        windows = []
        for sequence in fasta_sequences(path, seq_len):
            windows.append(sequence.window)
            if len(windows) == batch_size:
                yield np.stack(windows)
                windows = []
        if windows:
            yield np.stack(windows)

    return batches

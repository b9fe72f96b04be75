"""Synthetic DeepSEA-format train.mat files of any size, written with the package's writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danq.io.deepsea import SplitWriter, open_split

WRITE_CHUNK = 10_000
LABEL_PREVALENCE = 0.02  # about DeepSEA's mean share of positive labels


def random_chunk(
    rng: np.random.Generator, n: int, seq_len: int, n_targets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random bases as uint8 one-hot (n, seq_len, 4) and sparse 0/1 labels."""
    codes = rng.integers(0, 4, size=(n, seq_len), dtype=np.uint8)
    x = np.eye(4, dtype=np.uint8)[codes]
    y = (rng.random((n, n_targets), dtype=np.float32) < LABEL_PREVALENCE).astype(np.uint8)
    return x, y


def write_random_split(
    path: Path, split: str, n: int, seq_len: int, n_targets: int, seed: int = 0
) -> Path:
    """A DeepSEA-layout split of n random samples (train: MATLAB v7.3 / HDF5), written chunk by
    chunk; an existing file with the same shape is reused (writing 1 M samples takes minutes).
    """
    if path.exists():
        with open_split(path, split) as reader:
            if (reader.n, reader.seq_len, reader.n_targets) == (n, seq_len, n_targets):
                return path
    rng = np.random.default_rng(seed)
    with SplitWriter(path, split, n, seq_len, n_targets) as writer:
        for start in range(0, n, WRITE_CHUNK):
            x, y = random_chunk(rng, min(WRITE_CHUNK, n - start), seq_len, n_targets)
            writer.write(start, x, y)
    return path

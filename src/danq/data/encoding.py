"""DNA encodings in the DeepSEA convention: one-hot channels in the order A, G, C, T.

Sequences travel through the package in two forms:
- one-hot uint8 arrays (..., L, 4), exactly as stored in the DeepSEA .mat files, where an
  unknown base (N) is an all-zero row;
- base codes uint8 (..., L) with A=0, G=1, C=2, T=3 and N=4, one byte per base, as stored
  in the training shards.
In AGCT order the complement of channel c is channel 3 - c, so the reverse complement is
"reverse the positions and reverse the channels".
"""

from __future__ import annotations

import numpy as np

ALPHABET = "AGCT"
N_CODE = 4

_ENCODE = np.full(256, N_CODE, dtype=np.uint8)
for _code, _base in enumerate(ALPHABET):
    _ENCODE[ord(_base)] = _code
    _ENCODE[ord(_base.lower())] = _code
_DECODE = np.frombuffer((ALPHABET + "N").encode(), dtype=np.uint8)
# Complement in code space; N stays N.
_COMPLEMENT = np.array([3, 2, 1, 0, N_CODE], dtype=np.uint8)
_IUPAC = set("ACGTNRYSWKMBDHV")


def encode(sequence: str) -> np.ndarray:
    """Text (A/C/G/T, any case; N and other IUPAC codes as N) to base codes."""
    return _ENCODE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def is_dna(sequence: str) -> bool:
    return set(sequence.upper()) <= _IUPAC


def decode(codes: np.ndarray) -> str:
    return _DECODE[np.asarray(codes, dtype=np.uint8)].tobytes().decode("ascii")


def codes_to_onehot(codes: np.ndarray) -> np.ndarray:
    """(..., L) base codes to (..., L, 4) uint8 one-hot; N becomes an all-zero row."""
    eye = np.vstack([np.eye(4, dtype=np.uint8), np.zeros((1, 4), dtype=np.uint8)])
    return eye[codes]


def onehot_to_codes(onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., L, 4) one-hot to base codes, and a boolean mask of invalid positions.

    A position is valid when exactly one channel is 1 (a base) or all are 0 (N); invalid
    positions (two bases set, values other than 0/1) are coded N and flagged in the mask.
    """
    counts = onehot.sum(axis=-1, dtype=np.int32)
    invalid = (counts > 1) | (onehot > 1).any(axis=-1)
    codes = np.argmax(onehot, axis=-1).astype(np.uint8)
    codes[(counts == 0) | invalid] = N_CODE
    return codes, invalid


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    return _COMPLEMENT[codes[..., ::-1]]


def reverse_complement_onehot(onehot: np.ndarray) -> np.ndarray:
    return onehot[..., ::-1, ::-1]

"""Filter PFMs compared with JASPAR by TOMTOM (memelite), and written as MEME motifs.

memelite.tomtom takes (4, width) matrices in A, C, G, T order (MEME's); the package's PFMs are
(width, 4) in A, G, C, T, converted by `to_acgt`. q-values are Benjamini-Hochberg over each
filter's comparisons with every motif of the release (MEME's tomtom does the same per query).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from danq import artifacts
from danq.data.jaspar import motifs_by_id, vertebrate_pfms

AGCT_TO_ACGT = [0, 2, 1, 3]
RELEASE_KEY = "explain_filters.jaspar_release"
BEST_MATCHES = 3  # matches kept per filter


@dataclass(frozen=True)
class MotifMatch:
    jaspar_id: str
    name: str
    p_value: float
    q_value: float
    offset: int
    strand: str  # "+": the JASPAR motif as it is, "-": its reverse complement


@dataclass(frozen=True)
class FilterMatches:
    """A filter's best matches, best first (empty when the filter was not compared), and the
    JASPAR ids it matches at q below the threshold given to match_jaspar."""

    filter_index: int
    matches: list[MotifMatch]
    significant: dict[str, float]


def to_acgt(pfm: np.ndarray) -> np.ndarray:
    """(width, 4) A,G,C,T to MEME's (4, width) A,C,G,T."""
    return np.ascontiguousarray(np.asarray(pfm, dtype=np.float64)[:, AGCT_TO_ACGT].T)


def information_content(pfm: np.ndarray) -> float:
    """Bits over a uniform background, summed over the columns."""
    p = np.asarray(pfm, dtype=np.float64)
    plogp = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return float((2.0 + plogp.sum(axis=-1)).sum())


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    from scipy.stats import false_discovery_control

    return np.asarray(false_discovery_control(np.clip(p_values, 0.0, 1.0), method="bh"))


def match_jaspar(
    pfms: list[np.ndarray],
    release: str,
    compared: list[bool],
    max_q: float,
) -> list[FilterMatches]:
    """TOMTOM of each compared PFM against JASPAR CORE vertebrates of release."""
    from memelite import tomtom

    jaspar = vertebrate_pfms(release, RELEASE_KEY)
    ids = list(jaspar)
    chosen = [i for i, keep in enumerate(compared) if keep]
    found = {i: FilterMatches(i, [], {}) for i in range(len(pfms))}
    if chosen:
        p, _, offsets, _, strands = tomtom(
            [to_acgt(pfms[i]) for i in chosen], [to_acgt(jaspar[m]) for m in ids]
        )
        names: dict[str, str] = {}
        for row, index in enumerate(chosen):
            q = benjamini_hochberg(p[row])
            best = np.argsort(p[row], kind="stable")[:BEST_MATCHES]
            missing = [ids[t] for t in best if ids[t] not in names]
            names.update(
                {mid: name for mid, name, _ in motifs_by_id(missing, release, RELEASE_KEY)}
            )
            found[index] = FilterMatches(
                index,
                [
                    MotifMatch(
                        ids[t],
                        names[ids[t]],
                        float(p[row, t]),
                        float(q[t]),
                        int(offsets[row, t]),
                        "-" if strands[row, t] else "+",
                    )
                    for t in best
                ],
                {ids[t]: float(q[t]) for t in np.flatnonzero(q < max_q)},
            )
    return [found[i] for i in range(len(pfms))]


def meme_text(pfms: list[np.ndarray], names: list[str], n_sites: list[int]) -> str:
    """MEME minimal motif format (ALPHABET ACGT, both strands, uniform background), with each
    motif's number of sites (memelite's write_meme records nsites=1 for every motif)."""
    lines = [
        "MEME version 4",
        "",
        "ALPHABET= ACGT",
        "",
        "strands: + -",
        "",
        "Background letter frequencies",
        "A 0.25 C 0.25 G 0.25 T 0.25",
        "",
    ]
    for pfm, name, sites in zip(pfms, names, n_sites, strict=True):
        acgt = to_acgt(pfm)
        lines.append(f"MOTIF {name}")
        lines.append(
            f"letter-probability matrix: alength= 4 w= {acgt.shape[1]} nsites= {sites} E= 0"
        )
        lines.extend(" ".join(f"{v:.6f}" for v in column) for column in acgt.T)
        lines.append("")
    return "\n".join(lines)


def write_meme(
    path: str | os.PathLike[str], pfms: list[np.ndarray], names: list[str], n_sites: list[int]
) -> None:
    artifacts.write_text(path, meme_text(pfms, names, n_sites))

"""JASPAR motifs read offline from the SQLite databases shipped inside pyjaspar."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from danq.data.encoding import ALPHABET
from danq.errors import ConfigError


def _database(release: str, key: str):
    from pyjaspar import jaspar_releases, jaspardb

    if release not in jaspar_releases:
        raise ConfigError(f"{key}: {release!r} is not one of {sorted(jaspar_releases)}")
    return jaspardb(release=release)


def _pfm(motif) -> np.ndarray:
    # pyjaspar keys the counts A,C,G,T; the data's channels are A,G,C,T.
    counts = np.array([motif.counts[base] for base in ALPHABET], dtype=np.float64).T
    return counts / counts.sum(axis=1, keepdims=True)


@lru_cache(maxsize=4)
def vertebrate_pfms(release: str, key: str = "model.jaspar_release") -> dict[str, np.ndarray]:
    """JASPAR CORE vertebrate motifs as (length, 4) probability matrices, channels A,G,C,T."""
    motifs = _database(release, key).fetch_motifs(collection="CORE", tax_group=["vertebrates"])
    return {motif.matrix_id: _pfm(motif) for motif in motifs}


def motifs_by_id(
    ids: list[str], release: str, key: str = "synth.motifs"
) -> list[tuple[str, str, np.ndarray]]:
    """(matrix id, TF name, PFM in A,G,C,T) for each id, in order."""
    db = _database(release, "synth.jaspar_release")
    found = []
    for motif_id in ids:
        motif = db.fetch_motif_by_id(motif_id)
        if motif is None:
            raise ConfigError(f"{key}: {motif_id!r} is not a matrix id in {release}")
        found.append((motif.matrix_id, motif.name, _pfm(motif)))
    return found

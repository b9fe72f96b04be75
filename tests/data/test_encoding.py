"""AGCT encodings and reverse complements on known sequences."""

from __future__ import annotations

import numpy as np

from danq.data.encoding import (
    codes_to_onehot,
    decode,
    encode,
    onehot_to_codes,
    reverse_complement_codes,
    reverse_complement_onehot,
)


def test_channel_order_is_agct() -> None:
    onehot = codes_to_onehot(encode("AGCTN"))
    expected = np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.uint8
    )
    np.testing.assert_array_equal(onehot, expected)


def test_reverse_complement_of_known_sequences() -> None:
    assert decode(reverse_complement_codes(encode("AAGCTTN"))) == "NAAGCTT"
    assert decode(reverse_complement_codes(encode("ACCGGTTA"))) == "TAACCGGT"
    # In AGCT order "reverse positions and reverse channels" is the reverse complement.
    onehot = codes_to_onehot(encode("GATTACA"))
    codes, invalid = onehot_to_codes(reverse_complement_onehot(onehot))
    assert decode(codes) == "TGTAATC" and not invalid.any()


def test_lower_case_and_iupac_codes_become_n() -> None:
    assert decode(encode("acgtRYn")) == "ACGTNNN"


def test_invalid_onehot_positions_are_flagged() -> None:
    onehot = codes_to_onehot(encode("ACGT"))
    onehot[1, 0] = 1  # two bases set
    onehot[2, 2] = 2  # not binary
    _, invalid = onehot_to_codes(onehot)
    assert invalid.tolist() == [False, True, True, False]

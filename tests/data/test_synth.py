"""The synthetic benchmark: DeepSEA layout, real motif signal, grammar, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from danq.artifacts import DATA_METADATA_FILE
from danq.config import SynthConfig
from danq.data.encoding import reverse_complement_onehot
from danq.data.jaspar import motifs_by_id
from danq.data.synth import grammar, sharpen, write_dataset
from danq.data.targets import read_metadata
from danq.io.deepsea import open_split

SMALL = dict(n_train=120, n_valid=40, n_test=40, seq_len=200, chunk_size=50)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "first", SynthConfig(**SMALL), seed=3)
    again = write_dataset(tmp_path / "again", SynthConfig(**SMALL), seed=3)
    assert digest(again) == digest(first)
    other = write_dataset(tmp_path / "other", SynthConfig(**SMALL), seed=4)
    assert digest(other)["train.mat"] != digest(first)["train.mat"]


def test_chunking_is_part_of_the_recipe_but_sizes_are_exact(tmp_path: Path) -> None:
    cfg = SynthConfig(**{**SMALL, "n_train": 101, "chunk_size": 50})
    out = write_dataset(tmp_path, cfg, seed=1)
    with open_split(out / "train.mat") as reader:
        assert reader.n == 202


def test_splits_hold_forward_then_reverse_complement_halves(tiny_data: Path) -> None:
    for split, n_forward in (("train", 120), ("valid", 40), ("test", 40)):
        with open_split(tiny_data / f"{split}.mat") as reader:
            assert reader.n == 2 * n_forward and reader.seq_len == 200
            x, y = reader.read(0, reader.n)
        np.testing.assert_array_equal(x[n_forward:], reverse_complement_onehot(x[:n_forward]))
        np.testing.assert_array_equal(y[n_forward:], y[:n_forward])
        assert x.dtype == np.uint8 and y.dtype == np.uint8


def test_gc_content_and_n_runs_are_realistic(tmp_path: Path) -> None:
    cfg = SynthConfig(**{**SMALL, "n_train": 400, "n_sequence_share": 0.2})
    out = write_dataset(tmp_path, cfg, seed=5)
    with open_split(out / "train.mat") as reader:
        x, _ = reader.read(0, 400)
    bases = x.sum()
    gc = x[:, :, 1:3].sum() / bases  # channels G and C
    assert abs(gc - 0.41) < 0.03
    with_n = (x.sum(axis=2) == 0).any(axis=1).mean()
    assert 0.1 < with_n < 0.3


def test_metadata_records_the_grammar(tiny_data: Path) -> None:
    meta = read_metadata(tiny_data)
    assert meta["channels"] == "AGCT"
    rules = grammar(len(meta["motifs"]))
    assert len(meta["targets"]) == len(rules)
    assert set(meta["categories"]) == {
        "single",
        "central",
        "pair",
        "order",
        "count",
        "logic",
        "noise",
    }
    ctcf = meta["targets"][0]
    assert ctcf["name"] == "single:CTCF" and ctcf["motifs"] == ["MA0139.1"]
    assert json.loads((tiny_data / DATA_METADATA_FILE).read_text()) == meta
    assert read_metadata(tiny_data / "nowhere") is None


def best_match_score(x: np.ndarray, pfm: np.ndarray) -> np.ndarray:
    """Best log-odds match of a PFM on either strand, per sequence."""
    log_odds = np.log2((pfm + 0.01) / 0.25)
    width = len(log_odds)
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), width, axis=1)
    forward = np.einsum("nlcw,wc->nl", windows, log_odds)
    reverse = np.einsum("nlcw,wc->nl", windows, log_odds[::-1, ::-1])
    return np.maximum(forward, reverse).max(axis=1)


def test_labels_carry_real_motif_signal(tmp_path: Path) -> None:
    cfg = SynthConfig(**{**SMALL, "n_train": 300, "label_noise": 0.0})
    out = write_dataset(tmp_path, cfg, seed=11)
    with open_split(out / "train.mat") as reader:
        x, y = reader.read(0, 300)
    ((_, _, ctcf_pfm),) = motifs_by_id(["MA0139.1"], cfg.jaspar_release)
    scores = best_match_score(x, ctcf_pfm)
    positives, negatives = scores[y[:, 0] == 1], scores[y[:, 0] == 0]
    # Every CTCF-positive sequence holds a strong CTCF site; negatives rarely do.
    assert positives.min() > np.quantile(negatives, 0.5)
    assert np.median(positives) > np.median(negatives) + 5


def test_grammar_targets_are_not_just_motif_presence(tmp_path: Path) -> None:
    cfg = SynthConfig(**{**SMALL, "n_train": 400, "label_noise": 0.0})
    out = write_dataset(tmp_path, cfg, seed=12)
    meta = read_metadata(out)
    with open_split(out / "train.mat") as reader:
        _, y = reader.read(0, 400)
    # Decoys: sequences with both motifs of a pair rule but too far apart are negative.
    pair = next(t for t in meta["targets"] if t["category"] == "pair")
    single_a = next(
        t
        for t in meta["targets"]
        if t["category"] == "single" and t["motifs"] == pair["motifs"][:1]
    )
    assert 0.05 < y[:, pair["index"]].mean() < y[:, single_a["index"]].mean()
    noise = meta["categories"]["noise"]
    assert all(0.02 < y[:, t].mean() < 0.25 for t in noise)


def test_motif_temperature_plants_instances_nearer_the_consensus(tmp_path: Path) -> None:
    ((_, _, ctcf_pfm),) = motifs_by_id(["MA0139.1"], SynthConfig().jaspar_release)
    sharp = sharpen(ctcf_pfm, 0.5)
    np.testing.assert_allclose(sharp.sum(axis=1), 1.0)
    assert (sharp.max(axis=1) >= ctcf_pfm.max(axis=1)).all()
    assert sharpen(ctcf_pfm, 1.0) is ctcf_pfm  # the default samples JASPAR's matrix as is
    scores = {}
    for temperature in (1.0, 0.5):
        cfg = SynthConfig(**{**SMALL, "n_train": 200, "motif_temperature": temperature})
        out = write_dataset(tmp_path / str(temperature), cfg, seed=11, splits=("train",))
        assert read_metadata(out)["motif_temperature"] == temperature
        with open_split(out / "train.mat") as reader:
            x, y = reader.read(0, 200)
        # Same seed, same positions: only the sampled instances differ.
        scores[temperature] = best_match_score(x, ctcf_pfm)[y[:, 0] == 1]
    assert np.median(scores[0.5]) > np.median(scores[1.0]) + 2

"""The ceiling of the synthetic benchmark: a training-free PWM-scan oracle that knows the grammar.

`danq data synth` plants JASPAR motifs by a known rule per target (danq.data.synth). The oracle
knows that recipe. It scans each test sequence for every motif on both strands; a window's
log-odds score (the motif's probability matrix against the sequences' own base composition)
is the log2 likelihood ratio of "a planted instance" against "background", so with the prior
the grammar implies (the copies of the motif its rules plant per sequence, spread over all
positions and both strands) Bayes' rule gives the probability that a site starts there.
Each target's rule is then applied to these site probabilities, sites taken as independent:

| rule | oracle score |
|---|---|
| single | P(at least one site) |
| central | P(at least one site inside the central bin) |
| pair | 1 - exp(-expected number of a, b site pairs within the distance window) |
| order | the same over pairs on one strand with a upstream of b |
| count | P(two or more sites) |
| logic | P(a present) * (1 - P(b present)) |
| noise | a constant: the labels are coin flips |

What it cannot know is which windows were planted: background can look like a weak motif and
a sampled instance can be weak, so the oracle is a ceiling to compare models with, not 1.0.
The same scan scored by motif presence alone (each rule as the product of its motifs'
presence, logic as a's) shows what a detector without grammar reaches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from danq import artifacts
from danq.artifacts import DATA_METADATA_FILE, SYNTH_GENERATOR
from danq.data.encoding import N_CODE, onehot_to_codes
from danq.data.jaspar import motifs_by_id
from danq.data.synth import CENTRAL_BIN, Rule, grammar, sharpen
from danq.data.targets import read_metadata
from danq.errors import DataError
from danq.evaluation.metrics import (
    json_safe,
    per_target_auroc_aupr,
    per_target_table,
    summarise,
)
from danq.io import storage
from danq.io.deepsea import open_split

PSEUDOCOUNT = 0.001  # added to each PFM probability before the log-odds, then renormalised
N_PENALTY = -20.0  # bits: a window holding an N is not a site (synth never plants over N)
NOISE_SCORE = 0.5
# How synth sampled and placed the motifs, as its metadata.json records them.
RECIPE_KEYS = ("motif_temperature", "positive_rate", "decoy_rate")
SPLIT = "test"


@dataclass(frozen=True)
class ScanSettings:
    pseudocount: float = PSEUDOCOUNT
    background: str = "base composition of the scanned sequences, strand-symmetric"
    strands: str = "both"
    site_model: str = (
        "at most one planted site per motif, uniform over positions and strands; "
        "log-odds score = log2 likelihood ratio"
    )


def check_synthetic(data_dir: str) -> dict[str, Any]:
    """The metadata of a folder written by `danq data synth`; DataError for any other data."""
    path = storage.join(str(data_dir), DATA_METADATA_FILE)
    metadata = read_metadata(data_dir)
    if metadata is None:
        raise DataError(
            f"{path}: not found; the oracle scores only data written by `{SYNTH_GENERATOR}`, "
            "whose metadata.json records the planted motifs and rules"
        )
    generator = metadata.get("generator")
    if generator != SYNTH_GENERATOR:
        raise DataError(
            f"{path}: generator is {generator!r}, not {SYNTH_GENERATOR!r}; the oracle needs "
            "the planted grammar of the synthetic data"
        )
    return metadata


def _rules(metadata: dict[str, Any], path: str) -> tuple[list[Rule], list[str]]:
    """The grammar the data was generated with, checked against its recorded target names."""
    names = [m["name"] for m in metadata["motifs"]]
    rules = grammar(len(names))
    recorded = [t["name"] for t in metadata["targets"]]
    expected = [rule.name(names) for rule in rules]
    if recorded != expected:
        raise DataError(
            f"{path}: targets {recorded} do not follow this version's grammar {expected}; "
            "regenerate the data with `danq data synth`"
        )
    return rules, recorded


def _background(codes: np.ndarray) -> np.ndarray:
    """A,G,C,T frequencies of the sequences, averaged over both strands (N excluded)."""
    counts = np.bincount(codes.ravel(), minlength=N_CODE + 1)[:N_CODE].astype(np.float64)
    counts = (counts + counts[::-1]) / 2  # in AGCT order the complement of c is 3 - c
    return counts / counts.sum()


def expected_copies(
    rules: list[Rule], n_motifs: int, positive_rate: float, decoy_rate: float
) -> np.ndarray:
    """Copies of each motif the grammar plants per sequence on average: every rule plants its
    motifs in its positive arrangement (positive_rate) or its decoy (decoy_rate)."""
    copies = np.zeros(n_motifs)
    for rule in rules:
        if rule.category == "noise":
            continue
        first, *rest = rule.motifs
        positive = {"single": 1, "count": 2}.get(rule.category, 1)
        decoy = 0 if rule.category == "single" else 1  # single's decoy plants nothing
        copies[first] += positive * positive_rate + decoy * decoy_rate
        for m in rest:  # pair and order plant b in both arrangements, logic in its decoy only
            copies[m] += decoy_rate + (positive_rate if rule.category != "logic" else 0.0)
    return copies


def _log_odds(pfm: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(length, 5) log2 likelihood ratios, forward and reverse complement; N is never a site."""
    probs = (pfm + PSEUDOCOUNT) / (1 + 4 * PSEUDOCOUNT)
    forward = np.hstack([np.log2(probs / background), np.full((len(pfm), 1), N_PENALTY)])
    # Reverse complement: positions reversed, A<->T and G<->C (channel 3 - c), N stays N.
    return forward, forward[::-1][:, [3, 2, 1, 0, 4]]


def site_probabilities(
    codes: np.ndarray, pfm: np.ndarray, background: np.ndarray, copies: float
) -> np.ndarray:
    """(n, 2, positions): the posterior that a site starts at each position, per strand
    (forward, reverse), with the prior spreading `copies` sites uniformly over both strands."""
    n, seq_len = codes.shape
    positions = seq_len - len(pfm) + 1
    bits = np.zeros((n, 2, positions))
    for strand, matrix in enumerate(_log_odds(pfm, background)):
        for j in range(len(pfm)):
            bits[:, strand] += matrix[j][codes[:, j : j + positions]]
    prior = min(copies / (2 * positions), 0.5)
    odds = prior / (1 - prior) * np.exp2(bits)
    return odds / (1 + odds)


def _any(sites: np.ndarray) -> np.ndarray:
    """P(at least one) of independent site probabilities, over all but the first axis."""
    flat = np.clip(sites.reshape(len(sites), -1), 0.0, 1 - 1e-15)
    return -np.expm1(np.log1p(-flat).sum(axis=1))


def _window_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each i, the sum of values[:, lo[i] : hi[i] + 1] (bounds clipped to the array)."""
    width = values.shape[1]
    cum = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, axis=1)], axis=1)
    lo = np.clip(lo, 0, width)
    hi = np.clip(hi + 1, 0, width)
    return cum[:, np.maximum(hi, lo)] - cum[:, lo]


def _either_strand(sites: np.ndarray) -> np.ndarray:
    return 1 - (1 - sites[:, 0]) * (1 - sites[:, 1])


def _pair(a: np.ndarray, b: np.ndarray, length_a: int, length_b: int, distance: int) -> np.ndarray:
    """P(a site of a and one of b with centres at most `distance` apart), from the expected
    number of such pairs."""
    starts = np.arange(a.shape[2])
    offset = (length_a - length_b) / 2  # b's start minus a's start when the centres coincide
    lo = np.ceil(starts + offset - distance).astype(np.int64)
    hi = np.floor(starts + offset + distance).astype(np.int64)
    pairs = (_either_strand(a) * _window_sums(_either_strand(b), lo, hi)).sum(axis=1)
    return -np.expm1(-pairs)


def _order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a upstream of b on the strand both lie on: start_a < start_b forward, > reverse)."""
    starts = np.arange(a.shape[2])
    last = np.full_like(starts, b.shape[2] - 1)
    after = _window_sums(b[:, 0], starts + 1, last)
    before = _window_sums(b[:, 1], np.zeros_like(starts), starts - 1)
    pairs = (a[:, 0] * after + a[:, 1] * before).sum(axis=1)
    return -np.expm1(-pairs)


def _at_least_two(sites: np.ndarray) -> np.ndarray:
    """P(two or more sites) of independent per-position site probabilities (Poisson binomial)."""
    site = np.clip(_either_strand(sites), 0.0, 1 - 1e-12)
    none = np.exp(np.log1p(-site).sum(axis=1))
    return 1 - none * (1 + (site / (1 - site)).sum(axis=1))


def _rule_score(rule: Rule, sites: list[np.ndarray], lengths: list[int]) -> np.ndarray:
    first = rule.motifs[0]
    a = sites[first]
    if rule.category == "single":
        return _any(a)
    if rule.category == "central":
        seq_len = a.shape[2] + lengths[first] - 1
        lo = seq_len // 2 - CENTRAL_BIN // 2
        hi = seq_len // 2 + CENTRAL_BIN // 2 - lengths[first]  # the last start inside the bin
        return _any(a[:, :, lo : hi + 1])
    if rule.category == "count":
        return _at_least_two(a)
    second = rule.motifs[1]
    b = sites[second]
    if rule.category == "logic":
        return _any(a) * (1 - _any(b))
    if rule.category == "pair":
        return _pair(a, b, lengths[first], lengths[second], rule.max_distance)
    if rule.category == "order":
        return _order(a, b)
    raise ValueError(rule.category)


def _presence_score(rule: Rule, sites: list[np.ndarray]) -> np.ndarray:
    """A detector without grammar: its motifs' presence, wherever and however they lie."""
    used = rule.motifs[:1] if rule.category == "logic" else rule.motifs
    score = np.ones(len(sites[0]))
    for m in used:
        score = score * _any(sites[m])
    return score


def score_sequences(
    codes: np.ndarray,
    pfms: list[np.ndarray],
    rules: list[Rule],
    background: np.ndarray,
    copies: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Oracle scores and presence-only scores, each (n, targets), of (n, L) base codes, for
    motifs planted `copies` times per sequence on average."""
    sites = [
        site_probabilities(codes, pfm, background, c) for pfm, c in zip(pfms, copies, strict=True)
    ]
    lengths = [len(pfm) for pfm in pfms]
    oracle = np.full((len(codes), len(rules)), NOISE_SCORE)
    presence = np.full((len(codes), len(rules)), NOISE_SCORE)
    for t, rule in enumerate(rules):
        if rule.category != "noise":
            oracle[:, t] = _rule_score(rule, sites, lengths)
            presence[:, t] = _presence_score(rule, sites)
    return oracle, presence


def _read_forward(path: str, seq_len: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Base codes and labels of the forward half of a synthetic split file."""
    with open_split(path, SPLIT, seq_len=seq_len) as reader:
        if reader.n % 2:
            raise DataError(f"{path}: {reader.n} samples cannot pair forward with reverse halves")
        codes, labels = [], []
        for _, x, y in reader.iter_chunks(chunk_size, 0, reader.n // 2):
            codes.append(onehot_to_codes(x)[0])
            assert y is not None  # open_split requires labels
            labels.append(y)
    return np.concatenate(codes), np.concatenate(labels)


def oracle_metrics(data_dir: str, chunk_size: int = 2000) -> tuple[dict[str, Any], str]:
    """The oracle's metrics.json document and per_target.tsv text for data_dir's test split."""
    metadata = check_synthetic(data_dir)
    meta_path = storage.join(str(data_dir), DATA_METADATA_FILE)
    rules, names = _rules(metadata, meta_path)
    missing = [key for key in RECIPE_KEYS if key not in metadata]
    if missing:
        raise DataError(
            f"{meta_path}: no {', '.join(missing)}: written by an older `{SYNTH_GENERATOR}`; "
            "regenerate the data"
        )
    recipe = {key: metadata[key] for key in RECIPE_KEYS}
    motifs = motifs_by_id([m["id"] for m in metadata["motifs"]], metadata["jaspar_release"])
    test_path = storage.join(str(data_dir), f"{SPLIT}.mat")
    codes, labels = _read_forward(test_path, metadata["seq_len"], chunk_size)
    if labels.shape[1] != len(rules):
        raise DataError(
            f"{test_path}: {labels.shape[1]} targets, but {meta_path} lists {len(rules)}"
        )
    background = _background(codes)
    pfms = [sharpen(m[2], recipe["motif_temperature"]) for m in motifs]
    copies = expected_copies(rules, len(pfms), recipe["positive_rate"], recipe["decoy_rate"])
    oracle, presence = score_sequences(codes, pfms, rules, background, copies)
    categories = metadata["categories"]
    auroc, aupr = per_target_auroc_aupr(labels, oracle)
    summary = summarise(auroc, aupr, categories)
    presence_summary = summarise(*per_target_auroc_aupr(labels, presence), categories)
    keys = ("auroc", "aupr", "n_scoreable", "n_skipped", "skipped")
    metrics = {
        "variant": "oracle",
        "split": SPLIT,
        "n_test": int(len(labels)),
        "n_targets": len(rules),
        "overall": {k: summary[k] for k in keys},
        "categories": summary["categories"],
        "presence_only": {
            "overall": {k: presence_summary[k] for k in keys},
            "categories": presence_summary["categories"],
        },
        "scan": {
            **asdict(ScanSettings()),
            "background_agct": [round(float(f), 6) for f in background],
            "motifs": [m["id"] for m in metadata["motifs"]],
            "jaspar_release": metadata["jaspar_release"],
            **recipe,
        },
        "data": str(data_dir),
    }
    return json_safe(metrics), per_target_table(names, categories, labels, auroc, aupr)


def write_oracle(data_dir: str, out_dir: str, chunk_size: int = 2000) -> dict[str, Any]:
    """Score data_dir's test split with the oracle; write metrics.json and per_target.tsv."""
    metrics, table = oracle_metrics(data_dir, chunk_size)
    out = Path(out_dir)
    artifacts.write_text(out / artifacts.PER_TARGET_FILE, table)
    artifacts.write_json(out / artifacts.METRICS_FILE, metrics)
    return metrics

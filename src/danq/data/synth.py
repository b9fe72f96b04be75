"""A synthetic DeepSEA-format benchmark with real motifs and a regulatory grammar.

Real JASPAR motifs (read offline from pyjaspar) are planted into random background DNA of
realistic GC content with vertebrate-like CpG depletion. Each target follows one rule over
the planted motif instances:

| category | rule | what it takes to learn |
|---|---|---|
| single | motif present anywhere, either strand | one convolution filter |
| central | motif inside the central 200-bp bin (DeepSEA's label bin) | position |
| pair | two motifs within a distance window | long-range context |
| order | motif a upstream of motif b on the same strand | order and orientation |
| count | at least two copies of a motif (homotypic cluster) | counting |
| logic | motif a present and motif b absent (a repressor) | interaction |
| noise | independent coin flips | nothing: a floor for the model |

For every rule, "decoy" arrangements (pairs too far apart, wrong order, a single copy, the
repressor present) are planted as often as the positive arrangement, so a model that only
detects motifs cannot score the grammar targets well; the BiLSTM has something to add.

Each split is written exactly like the DeepSEA bundle: forward sequences in the first half,
their reverse complements in the same order in the second half, labels repeated, uint8
one-hot in A,G,C,T order. Generation is chunked and seeded per chunk, so files are
byte-identical for the same parameters and memory stays bounded for any size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from danq import artifacts
from danq.artifacts import DATA_METADATA_FILE, write_text
from danq.config import SPLITS, SynthConfig
from danq.data.encoding import N_CODE, codes_to_onehot, reverse_complement_codes
from danq.data.jaspar import motifs_by_id
from danq.io.deepsea import SplitWriter

CENTRAL_BIN = 200
NOISE_PREVALENCE = 0.1
CPG_DECAY = 0.75  # share of CG dinucleotides mutated away, as in vertebrate genomes


@dataclass(frozen=True)
class Rule:
    category: str
    motifs: tuple[int, ...] = ()
    max_distance: int = 0

    def name(self, motif_names: list[str]) -> str:
        names = [motif_names[m] for m in self.motifs]
        return {
            "single": lambda: f"single:{names[0]}",
            "central": lambda: f"central:{names[0]}",
            "pair": lambda: f"pair:{names[0]}+{names[1]}<={self.max_distance}bp",
            "order": lambda: f"order:{names[0]}>{names[1]}",
            "count": lambda: f"count:{names[0]}>=2",
            "logic": lambda: f"logic:{names[0]}&!{names[1]}",
            "noise": lambda: f"noise:{self.motifs[0] if self.motifs else 0}",
        }[self.category]()


def grammar(n_motifs: int) -> list[Rule]:
    """The target rules for n_motifs motifs (indices into the configured motif list)."""
    m = list(range(n_motifs))
    at = lambda i: m[i % n_motifs]  # noqa: E731 - wraps around short motif lists
    return [
        *(Rule("single", (at(i),)) for i in range(4)),
        Rule("central", (at(4),)),
        Rule("central", (at(5),)),
        Rule("pair", (at(0), at(1)), 50),
        Rule("pair", (at(2), at(3)), 50),
        Rule("pair", (at(4), at(6)), 100),
        Rule("order", (at(5), at(7))),
        Rule("order", (at(1), at(2))),
        Rule("count", (at(6),)),
        Rule("count", (at(3),)),
        Rule("logic", (at(7), at(0))),
        Rule("noise", (0,)),
        Rule("noise", (1,)),
    ]


@dataclass
class PlantedSite:
    motif: int
    start: int
    strand: int  # +1 forward, -1 reverse
    length: int

    @property
    def center(self) -> float:
        return self.start + self.length / 2


@dataclass
class _Sequence:
    """One sample being built: base codes, occupied positions and planted sites."""

    codes: np.ndarray
    occupied: np.ndarray
    sites: list[PlantedSite] = field(default_factory=list)


class _Planter:
    def __init__(self, pfms: list[np.ndarray], seq_len: int, rng: np.random.Generator) -> None:
        self.cum = [np.cumsum(p, axis=1) for p in pfms]
        self.lengths = [len(p) for p in pfms]
        self.seq_len = seq_len
        self.rng = rng

    def instance(self, motif: int, strand: int) -> np.ndarray:
        draws = self.rng.random((self.lengths[motif], 1))
        codes = (draws > self.cum[motif][:, :3]).sum(axis=1).astype(np.uint8)
        return codes if strand > 0 else reverse_complement_codes(codes)

    def place(
        self, seq: _Sequence, motif: int, strand: int, lo: int = 0, hi: int | None = None
    ) -> PlantedSite | None:
        """Plant a sampled instance with its start in [lo, hi), not overlapping other sites."""
        length = self.lengths[motif]
        hi = self.seq_len - length if hi is None else min(hi, self.seq_len - length)
        lo = max(lo, 0)
        for _ in range(20):
            if hi <= lo:
                return None
            start = int(self.rng.integers(lo, hi + 1))
            if not seq.occupied[start : start + length].any():
                seq.codes[start : start + length] = self.instance(motif, strand)
                seq.occupied[start : start + length] = True
                site = PlantedSite(motif, start, strand, length)
                seq.sites.append(site)
                return site
        return None

    def strand(self) -> int:
        return 1 if self.rng.random() < 0.5 else -1

    def near(
        self, seq: _Sequence, first: PlantedSite, motif: int, lo_gap: int, hi_gap: int, strand: int
    ) -> PlantedSite | None:
        """Plant motif at a gap of [lo_gap, hi_gap] bp after `first` (upstream if strand < 0)."""
        length = self.lengths[motif]
        if strand > 0:
            lo = first.start + first.length + lo_gap
            return self.place(seq, motif, strand, lo, lo + hi_gap - lo_gap)
        hi = first.start - lo_gap - length
        return self.place(seq, motif, strand, hi - (hi_gap - lo_gap), hi)


def _plant_positive(p: _Planter, seq: _Sequence, rule: Rule, decoy: bool) -> None:
    L = p.seq_len
    a = rule.motifs[0]
    if rule.category == "single" and not decoy:
        p.place(seq, a, p.strand())
    elif rule.category == "central":
        half = CENTRAL_BIN // 2
        if decoy:  # same motif, outside the label bin
            lo, hi = (0, L // 2 - half - 60) if p.rng.random() < 0.5 else (L // 2 + half + 1, L)
            p.place(seq, a, p.strand(), lo, hi)
        else:
            p.place(seq, a, p.strand(), L // 2 - half, L // 2 + half - p.lengths[a])
    elif rule.category == "pair":
        b, strand = rule.motifs[1], p.strand()
        first = p.place(seq, a, p.strand())
        if first is not None:
            if decoy:  # both motifs, but too far apart
                gap = (rule.max_distance + 60, rule.max_distance + 300)
            else:
                gap = (0, max(0, rule.max_distance - p.lengths[a] // 2 - p.lengths[b] // 2 - 2))
            p.near(seq, first, b, *gap, strand if p.rng.random() < 0.5 else -strand)
    elif rule.category == "order":
        b, strand = rule.motifs[1], p.strand()
        if decoy:  # wrong order, or the right order on opposite strands
            if p.rng.random() < 0.5:
                first = p.place(seq, b, strand)
                if first is not None:
                    p.near(seq, first, a, 5, 150, strand)
            else:
                first = p.place(seq, a, strand)
                if first is not None:
                    p.near(seq, first, b, 5, 150, -strand)
        else:
            first = p.place(seq, a, strand)
            if first is not None:
                p.near(seq, first, b, 5, 150, strand)
    elif rule.category == "count":
        p.place(seq, a, p.strand())
        if not decoy:
            p.place(seq, a, p.strand())
    elif rule.category == "logic":
        p.place(seq, a, p.strand())
        if decoy:
            p.place(seq, rule.motifs[1], p.strand())


def _label(rule: Rule, sites: list[PlantedSite], seq_len: int) -> bool:
    by_motif = lambda m: [s for s in sites if s.motif == m]  # noqa: E731
    a = by_motif(rule.motifs[0]) if rule.motifs else []
    if rule.category == "single":
        return bool(a)
    if rule.category == "central":
        lo, hi = seq_len // 2 - CENTRAL_BIN // 2, seq_len // 2 + CENTRAL_BIN // 2
        return any(s.start >= lo and s.start + s.length <= hi for s in a)
    if rule.category == "pair":
        b = by_motif(rule.motifs[1])
        return any(abs(x.center - y.center) <= rule.max_distance for x in a for y in b)
    if rule.category == "order":
        b = by_motif(rule.motifs[1])
        # Upstream on the strand both sites lie on: strand-symmetric, so the reverse
        # complement of a positive sequence is positive too.
        return any(
            x.strand == y.strand and (x.start < y.start) == (x.strand > 0) for x in a for y in b
        )
    if rule.category == "count":
        return len(a) >= 2
    if rule.category == "logic":
        return bool(a) and not by_motif(rule.motifs[1])
    raise ValueError(rule.category)


def sharpen(pfm: np.ndarray, temperature: float) -> np.ndarray:
    """The matrix instances are sampled from: each row raised to 1/temperature, renormalised."""
    if temperature == 1.0:
        return pfm
    powered = pfm ** (1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def generate_chunk(
    cfg: SynthConfig,
    pfms: list[np.ndarray],
    rules: list[Rule],
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """n forward sequences as base codes (n, L) and their labels (n, T)."""
    codes, labels, _ = generate_chunk_with_sites(cfg, pfms, rules, n, rng)
    return codes, labels


def generate_chunk_with_sites(
    cfg: SynthConfig,
    pfms: list[np.ndarray],
    rules: list[Rule],
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[list[PlantedSite]]]:
    """generate_chunk, plus the motif instances planted in each sequence (the synthetic genome
    places them in its BED file)."""
    L = cfg.seq_len
    gc = np.clip(rng.normal(cfg.gc_mean, cfg.gc_sd, size=(n, 1)), 0.2, 0.8)
    # Draw the background a little GC-richer so that after CpG decay, which turns an expected
    # CPG_DECAY * (gc/2)**2 of positions from G/C to A/T, the sequence has the target GC.
    a = CPG_DECAY / 4
    gc = (1 - np.sqrt(1 - 4 * a * gc)) / (2 * a)
    # Cumulative A, G, C thresholds per sample: A and T share 1-gc, G and C share gc.
    thresholds = np.stack([(1 - gc) / 2, (1 - gc) / 2 + gc / 2, (1 - gc) / 2 + gc], axis=-1)
    draws = rng.random((n, L, 1))
    codes = (draws > thresholds).sum(axis=-1).astype(np.uint8)
    # CpG depletion: methylated CG decays to TG (or CA on this strand). Real DNA has it, and it
    # is what tells A,G,C,T channel order from A,C,G,T (the validation gate relies on it).
    cg = (codes[:, :-1] == 2) & (codes[:, 1:] == 1)
    decays = cg & (rng.random(cg.shape) < CPG_DECAY)
    to_tg = decays & (rng.random(cg.shape) < 0.5)
    codes[:, :-1][to_tg] = 3
    codes[:, 1:][decays & ~to_tg] = 0
    labels = np.zeros((n, len(rules)), dtype=np.uint8)
    planter = _Planter(pfms, L, rng)
    sites = []
    for i in range(n):
        seq = _Sequence(codes[i], np.zeros(L, dtype=bool))
        sites.append(seq.sites)
        if rng.random() < cfg.n_sequence_share:  # an assembly gap at one end
            run = int(rng.integers(5, 60))
            at = slice(0, run) if rng.random() < 0.5 else slice(L - run, L)
            seq.codes[at], seq.occupied[at] = N_CODE, True
        for rule in rules:
            if rule.category == "noise":
                continue
            roll = rng.random()
            if roll < cfg.positive_rate:
                _plant_positive(planter, seq, rule, decoy=False)
            elif roll < cfg.positive_rate + cfg.decoy_rate:
                _plant_positive(planter, seq, rule, decoy=True)
        for t, rule in enumerate(rules):
            if rule.category == "noise":
                labels[i, t] = rng.random() < NOISE_PREVALENCE
            else:
                labels[i, t] = _label(rule, seq.sites, L)
    flips = rng.random(labels.shape) < cfg.label_noise
    return codes, labels ^ flips.astype(np.uint8), sites


def _write_split(
    path: Path,
    split: str,
    n_forward: int,
    cfg: SynthConfig,
    pfms: list[np.ndarray],
    rules: list[Rule],
    seed: int,
) -> np.ndarray:
    """Write one split; returns the number of positives per target (forward half)."""
    positives = np.zeros(len(rules), dtype=np.int64)
    split_id = SPLITS.index(split)
    with SplitWriter(path, split, 2 * n_forward, cfg.seq_len, len(rules)) as writer:
        for chunk_index, start in enumerate(range(0, n_forward, cfg.chunk_size)):
            count = min(cfg.chunk_size, n_forward - start)
            rng = np.random.default_rng([seed, split_id, chunk_index])
            codes, labels = generate_chunk(cfg, pfms, rules, count, rng)
            onehot = codes_to_onehot(codes)
            writer.write(start, onehot, labels)
            writer.write(n_forward + start, onehot[:, ::-1, ::-1], labels)
            positives += labels.sum(axis=0, dtype=np.int64)
    return positives


@dataclass(frozen=True)
class TargetInfo:
    index: int
    name: str
    category: str
    rule: str
    motifs: list[str]
    max_distance: int


def write_dataset(
    out_dir: str | os.PathLike[str], cfg: SynthConfig, seed: int, splits: Sequence[str] = SPLITS
) -> Path:
    """Write train.mat, valid.mat, test.mat (or only `splits`) and metadata.json into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    motifs = motifs_by_id(list(cfg.motifs), cfg.jaspar_release)
    ids = [m[0] for m in motifs]
    names = [m[1] for m in motifs]
    pfms = [sharpen(m[2], cfg.motif_temperature) for m in motifs]
    rules = grammar(len(motifs))
    sizes = {"train": cfg.n_train, "valid": cfg.n_valid, "test": cfg.n_test}
    prevalence = {}
    for split in splits:
        positives = _write_split(out / f"{split}.mat", split, sizes[split], cfg, pfms, rules, seed)
        prevalence[split] = [round(float(p) / sizes[split], 6) for p in positives]
    targets = [
        asdict(
            TargetInfo(
                index=t,
                name=rule.name(names),
                category=rule.category,
                rule=rule.category,
                motifs=[ids[m] for m in rule.motifs] if rule.category != "noise" else [],
                max_distance=rule.max_distance,
            )
        )
        for t, rule in enumerate(rules)
    ]
    categories: dict[str, list[int]] = {}
    for target in targets:
        categories.setdefault(target["category"], []).append(target["index"])
    metadata = {
        "generator": artifacts.SYNTH_GENERATOR,
        "seed": seed,
        "seq_len": cfg.seq_len,
        "channels": "AGCT",
        "halves": "forward sequences first, reverse complements second, same order",
        "samples": {split: 2 * sizes[split] for split in splits},
        "jaspar_release": cfg.jaspar_release,
        "motif_temperature": cfg.motif_temperature,
        "positive_rate": cfg.positive_rate,
        "decoy_rate": cfg.decoy_rate,
        "motifs": [{"id": i, "name": n, "length": len(p)} for i, n, p in motifs],
        "targets": targets,
        "categories": categories,
        "prevalence_forward": prevalence,
    }
    write_text(out / DATA_METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return out

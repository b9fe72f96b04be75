"""Must-show of issue 16: on a model trained on the synthetic set, SNVs that break a planted
motif's core change that motif's target more than SNVs away from motifs, and ISM puts the
importance on the motif.

A small DanQ is trained on `danq data synth` sequences (the grammar's generator, 6,000
sequences of 200 bp and their reverse complements, 1,500 steps); the synthetic genome is
tiled with sequences of the same grammar, and its VCF's motif-core and background SNVs are
scored by `danq variant-effect`'s library function. For each target whose rule is "the motif
is present" (single) or "present in the central bin" (central), the AUROC of |diff| separates
the SNVs breaking that motif's core (positives) from the background SNVs (negatives).
Measured with training seeds 2-5 (this machine, 2 cores): on the targets the model learned
(held-out AUROC >= 0.9) the separation AUROC was 0.79-0.99, their mean 0.91-0.95. Seed 2,
used here: held-out AUROC 0.84-0.99, separation AUROC 0.87 (CTCF) to 0.98 (HNF4A), 0.93 on
average over the 6 targets. A target the model did not learn (held-out AUROC 0.6-0.7, as
GATA1's short motif and HNF4A in some seeds) does not separate, so it is not asserted on.
The ISM test measured a median ratio of about 200 (67-1,139 over 9 windows).
"""

from __future__ import annotations

import csv

import numpy as np
import pysam
import pytest

from danq.config import DropoutConfig, ModelConfig, SynthConfig, SynthGenomeConfig, TrainConfig
from danq.data.encoding import codes_to_onehot
from danq.data.jaspar import motifs_by_id
from danq.data.synth import generate_chunk, grammar, sharpen
from danq.data.synth_genome import write_genome
from danq.evaluation.metrics import per_target_auroc_aupr
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.prediction.effects import score_variants
from danq.prediction.genome import open_genome
from danq.prediction.ism import genome_sequences, saturation_mutagenesis

pytestmark = pytest.mark.slow  # trains a model (~30-60 s on 2 cores)

SEED = 2
SYNTH = SynthConfig(seq_len=200, motif_temperature=0.5)
GENOME = SynthGenomeConfig(
    contigs=2, contig_length=20_000, seed=SEED, motif_core_variants=300, background_variants=300
)
MODEL = ModelConfig(
    preset="custom", conv_filters=32, conv_width=15, pool_size=10, lstm_units=16, dense_units=64
)
LEARNED = 0.9  # held-out AUROC from which a target counts as learned
MIN_LEARNED_TARGETS = 4
MIN_SEPARATION = 0.7  # per learned target (measured minimum 0.79)
MIN_MEAN_SEPARATION = 0.85  # mean over learned targets (measured 0.91-0.95)
FAR = 10  # bp from every planted instance: "away from motifs" for the ISM comparison


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """(model, target names, held-out AUROC per target, genome folder, effects rows)."""
    found = motifs_by_id(list(SYNTH.motifs), SYNTH.jaspar_release)
    pfms = [sharpen(pfm, SYNTH.motif_temperature) for _, _, pfm in found]
    rules = grammar(len(pfms))
    names = [rule.name([name for _, name, _ in found]) for rule in rules]
    codes, labels = generate_chunk(SYNTH, pfms, rules, 6000, np.random.default_rng(SEED))
    x = codes_to_onehot(codes).astype(np.float32)
    x = np.concatenate([x, x[:, ::-1, ::-1]])
    y = np.concatenate([labels, labels]).astype(np.float32)
    policy = dropout_policy(DropoutConfig(), "baseline")
    model = build_danq(MODEL, SYNTH.seq_len, len(rules), policy, seed=SEED)
    compile_danq(model, TrainConfig(learning_rate=0.003), auroc=False)
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    held_codes, held_labels = generate_chunk(
        SYNTH, pfms, rules, 1000, np.random.default_rng(SEED + 100)
    )
    held_scores = model.predict(codes_to_onehot(held_codes).astype(np.float32), verbose=0)
    held_auroc, _ = per_target_auroc_aupr(held_labels, held_scores)

    root = tmp_path_factory.mktemp("motif_breaking")
    write_genome(root / "genome", GENOME, SYNTH)
    with open_genome(root / "genome" / "genome.fa") as genome:
        score_variants(
            model,
            root / "genome" / "variants.vcf.gz",
            genome,
            names,
            root / "effects.tsv",
            batch_size=512,
            progress=None,
        )
    with (root / "effects.tsv").open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    motif_targets = {
        f"{found[rule.motifs[0]][0]}_{found[rule.motifs[0]][1]}": t
        for t, rule in enumerate(rules)
        if rule.category in ("single", "central")
    }
    return model, names, held_auroc, root / "genome", rows, motif_targets


def test_motif_core_snvs_change_their_motifs_target_more_than_background(trained) -> None:
    _, names, held_auroc, genome_dir, rows, motif_targets = trained
    with pysam.VariantFile(str(genome_dir / "variants.vcf.gz")) as vcf:
        classes = {(r.chrom, r.pos): (r.info["SYNTH_CLASS"], r.info.get("MOTIF")) for r in vcf}
    snv_class = [classes[(row["chrom"], int(row["pos"]))] for row in rows]
    background = [i for i, (category, _) in enumerate(snv_class) if category == "background"]
    separation = {}
    for motif, t in motif_targets.items():
        core = [i for i, c in enumerate(snv_class) if c == ("motif_core", motif)]
        abs_diff = np.array([float(rows[i][f"{names[t]}:abs_diff"]) for i in core + background])
        is_core = np.array([1] * len(core) + [0] * len(background), dtype=np.uint8)
        auroc, _ = per_target_auroc_aupr(is_core[:, None], abs_diff[:, None])
        separation[names[t]] = float(auroc[0])
    learned = [names[t] for t in motif_targets.values() if held_auroc[t] >= LEARNED]
    print(
        "held-out AUROC:",
        {names[t]: round(float(held_auroc[t]), 3) for t in motif_targets.values()},
        "| motif-core vs background |diff| AUROC:",
        {name: round(auc, 3) for name, auc in separation.items()},
    )
    assert len(learned) >= MIN_LEARNED_TARGETS
    assert all(separation[name] > MIN_SEPARATION for name in learned), separation
    assert np.mean([separation[name] for name in learned]) > MIN_MEAN_SEPARATION


def test_ism_puts_the_importance_on_a_planted_motif(trained) -> None:
    """In 200-bp windows centred on planted instances of learned motifs, the mean |ISM diff|
    on the instance's bases exceeds that on bases FAR bp or more from every planted instance."""
    model, names, held_auroc, genome_dir, _, motif_targets = trained
    with open(genome_dir / "motifs.bed") as fh:
        bed = [(c, int(s), int(e), name) for c, s, e, name, *_ in (line.split("\t") for line in fh)]
    ratios = []
    for motif, t in motif_targets.items():
        if held_auroc[t] < LEARNED:
            continue
        instances = [b for b in bed if b[3] == motif and b[1] > 200][:3]
        regions = [f"{c}:{(s + e) // 2 - 99}-{(s + e) // 2 + 100}" for c, s, e, _ in instances]
        sequences = genome_sequences(str(genome_dir / "genome.fa"), regions, SYNTH.seq_len)
        for (contig, start, end, _), sequence in zip(instances, sequences, strict=True):
            result = saturation_mutagenesis(model, sequence, [t], [names[t]], batch_size=600)
            positions = sequence.window_start + np.arange(SYNTH.seq_len)
            effect = np.nanmean(np.abs(result.ism[:, :, 0]), axis=1)
            on_motif = (positions >= start) & (positions < end)
            far = np.ones(len(positions), dtype=bool)
            for c, s, e, _ in bed:
                if c == contig:
                    far &= (positions < s - FAR) | (positions >= e + FAR)
            if far.sum() >= 20:
                ratios.append(np.nanmean(effect[on_motif]) / np.nanmean(effect[far]))
    print("ISM mean |diff| on the motif / far from motifs:", np.round(ratios, 2))
    assert len(ratios) >= 6 and np.median(ratios) > 10

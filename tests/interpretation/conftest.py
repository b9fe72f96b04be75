"""A small DanQ trained on the synthetic grammar, shared by the interpretation tests that need
a model that has learned the planted motifs (the slow ones): trained once per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from danq.config import DropoutConfig, ModelConfig, SynthConfig, TrainConfig
from danq.data.encoding import codes_to_onehot
from danq.data.jaspar import motifs_by_id
from danq.data.synth import Rule, generate_chunk, grammar, sharpen
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq

SYNTH = SynthConfig(seq_len=200, motif_temperature=0.5)
SYNTH_MODEL = ModelConfig(
    preset="custom", conv_filters=32, conv_width=15, pool_size=10, lstm_units=16, dense_units=64
)
SYNTH_SEED = 2


@dataclass(frozen=True)
class SynthModel:
    model: Any  # keras.Model
    found: list[tuple[str, str, np.ndarray]]  # JASPAR id, TF name, PFM of the planted motifs
    pfms: list[np.ndarray]  # the sharpened matrices instances were sampled from
    rules: list[Rule]
    names: list[str]  # target names


@pytest.fixture(scope="session")
def synth_model() -> SynthModel:
    """6,000 `danq data synth` sequences of 200 bp and their reverse complements, 8 epochs
    (~30-45 s on 2 shared cores), seed SYNTH_SEED."""
    found = motifs_by_id(list(SYNTH.motifs), SYNTH.jaspar_release)
    pfms = [sharpen(pfm, SYNTH.motif_temperature) for _, _, pfm in found]
    rules = grammar(len(pfms))
    names = [rule.name([name for _, name, _ in found]) for rule in rules]
    codes, labels = generate_chunk(SYNTH, pfms, rules, 6000, np.random.default_rng(SYNTH_SEED))
    x = codes_to_onehot(codes).astype(np.float32)
    policy = dropout_policy(DropoutConfig(), "baseline")
    model = build_danq(SYNTH_MODEL, SYNTH.seq_len, len(rules), policy, seed=SYNTH_SEED)
    compile_danq(model, TrainConfig(learning_rate=0.003), auroc=False)
    model.fit(
        np.concatenate([x, x[:, ::-1, ::-1]]),
        np.concatenate([labels, labels]).astype(np.float32),
        batch_size=64,
        epochs=8,
        verbose=0,
    )
    return SynthModel(model, found, pfms, rules, names)

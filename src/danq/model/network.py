"""The DanQ network (Quang & Xie 2016): motif convolution, BiLSTM, dense multi-task head.

`build_danq` builds the baseline and the random-dropout variant alike (the dropout policy sets
the rates) and, for DanQ-JASPAR, initialises about half of the motif filters from JASPAR CORE
vertebrate motifs read offline from pyjaspar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np
from keras import layers

from danq.config import ModelConfig, TrainConfig
from danq.data.jaspar import vertebrate_pfms
from danq.model.dropout import LSTM_DROPOUT, POOL_DROPOUT, DropoutPolicy, RandomRateDropout


@dataclass(frozen=True)
class MotifFilter:
    """Where a JASPAR motif was written into the motif convolution's kernel."""

    filter_index: int
    motif_id: str
    reverse_complement: bool
    offset: int
    length: int


def jaspar_filter_weights(
    n_filters: int, width: int, release: str, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[MotifFilter]]:
    """Motif-convolution kernel (width, 4, n_filters) and bias with JASPAR motifs in about half
    of the filters, initialised as the DanQ authors did.

    Each chosen motif fills two filters, its PFM and its reverse complement, minus 0.25, at a
    random offset inside the filter, with a bias drawn from U(-1, 0). Motifs longer than the
    filter are skipped, not trimmed: a trimmed PFM is no longer the motif, and only 3 of the
    879 JASPAR2024 vertebrate motifs exceed DanQ's 26 bp (2 exceed DanQ-JASPAR's 30 bp). Keras
    computes cross-correlation, so the motif is written as is, not flipped. The other filters
    keep Keras's default initialisation (Glorot uniform kernel, zero bias).
    """
    rng = np.random.default_rng(seed)
    glorot = keras.initializers.GlorotUniform(seed=int(rng.integers(2**31)))
    kernel = keras.ops.convert_to_numpy(glorot((width, 4, n_filters), dtype="float32"))
    bias = np.zeros(n_filters, dtype=np.float32)

    fitting = {mid: pfm for mid, pfm in vertebrate_pfms(release).items() if len(pfm) <= width}
    motif_ids = sorted(fitting)
    n_motifs = min(n_filters // 4, len(motif_ids))
    placed = []
    for i, pick in enumerate(rng.choice(len(motif_ids), size=n_motifs, replace=False)):
        motif_id = motif_ids[pick]
        pfm = fitting[motif_id]
        # Reverse complement in A,G,C,T: reverse both the positions and the channels.
        for strand, matrix in enumerate((pfm, pfm[::-1, ::-1])):
            index = 2 * i + strand
            offset = int(rng.integers(width - len(pfm) + 1))
            kernel[offset : offset + len(pfm), :, index] = matrix - 0.25
            bias[index] = rng.uniform(-1.0, 0.0)
            placed.append(MotifFilter(index, motif_id, bool(strand), offset, len(pfm)))
    return kernel, bias, placed


def build_danq(
    model_cfg: ModelConfig,
    seq_len: int,
    n_targets: int,
    policy: DropoutPolicy,
    seed: int | None = None,
) -> keras.Model:
    """DanQ for one-hot sequences (seq_len, 4), channels A,G,C,T; one sigmoid per target."""
    model_cfg.check_fits(seq_len)
    if seed is not None:
        # Seeds every initializer and dropout mask generator built below.
        keras.utils.set_random_seed(seed)

    sequence = keras.Input((seq_len, 4), dtype="float32", name="sequence")
    x = layers.Conv1D(
        model_cfg.conv_filters,
        model_cfg.conv_width,
        padding="valid",
        activation="relu",
        name="motif_conv",
    )(sequence)
    x = layers.MaxPooling1D(model_cfg.pool_size, strides=model_cfg.pool_size, name="motif_pool")(x)
    x = RandomRateDropout(policy.initial_rate(POOL_DROPOUT), name=POOL_DROPOUT)(x)
    # Default activations, no recurrent dropout and no unrolling keep the cuDNN kernel on GPU.
    x = layers.Bidirectional(
        layers.LSTM(model_cfg.lstm_units, return_sequences=True), merge_mode="concat", name="bilstm"
    )(x)
    x = RandomRateDropout(policy.initial_rate(LSTM_DROPOUT), name=LSTM_DROPOUT)(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(model_cfg.dense_units, activation="relu", name="dense")(x)
    # float32 output keeps the probabilities and the loss stable under mixed precision.
    targets = layers.Dense(n_targets, activation="sigmoid", dtype="float32", name="targets")(x)
    model = keras.Model(sequence, targets, name="danq")

    if model_cfg.jaspar_init:
        kernel, bias, _ = jaspar_filter_weights(
            model_cfg.conv_filters, model_cfg.conv_width, model_cfg.jaspar_release, seed
        )
        model.get_layer("motif_conv").set_weights([kernel, bias])
    return model


def compile_danq(
    model: keras.Model,
    train_cfg: TrainConfig,
    jit_compile: bool | Literal["auto"] = "auto",
    auroc: bool = True,
) -> keras.Model:
    """RMSprop and binary cross-entropy averaged over the targets, as in the paper.

    "auto" leaves XLA off on GPU, where the cuDNN LSTM kernel cannot be XLA-compiled.
    """
    metrics = [keras.metrics.AUC(curve="ROC", multi_label=True, name="auroc")] if auroc else []
    model.compile(
        optimizer=keras.optimizers.RMSprop(
            learning_rate=train_cfg.learning_rate, rho=train_cfg.rho
        ),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model

"""The DanQ network (Quang & Xie 2016): motif convolution, BiLSTM, dense multi-task head.

`build_danq` builds the baseline and the random-dropout variant alike (the dropout policy sets
the rates) and, for DanQ-JASPAR, initialises motif filters from JASPAR CORE vertebrate motifs
read offline from pyjaspar (`model.jaspar_init`, see `jaspar_filter_weights`).

Where this differs from the original code (Keras 0.2 on Theano, DanQ_train.py and
DanQ-JASPAR_train.py), on purpose:
- LSTM gates: Keras 0.x's LSTM used `inner_activation="hard_sigmoid"`, Theano's
  clip(0.2 x + 0.5, 0, 1); here the gates use the logistic sigmoid, Keras 3's default, because
  only the default activations run on the cuDNN LSTM kernel on GPU. Keras 3's own
  "hard_sigmoid" is clip(x / 6 + 0.5, 0, 1), not Theano's either. There is no setting for
  the original's gates: the effect of the difference has not been measured. Cell and
  output activation (tanh), Glorot-uniform input and orthogonal recurrent weights and a
  forget-gate bias of one are as in Keras 0.x.
- RMSprop: both versions divide by sqrt(accumulator + epsilon); Keras 0.x's epsilon was 1e-6,
  Keras 3's default is 1e-7. `train.epsilon` sets it (default 1e-7, the Keras 3 value; 1e-6
  reproduces the original). Learning rate 1e-3 and rho 0.9 are as in the original.
- Motif-convolution weights: Keras 0.x's Convolution1D drew them from U(-0.05, 0.05); here
  Keras 3's Glorot uniform, except for the filters `jaspar_init: original` leaves random,
  which use U(-0.05, 0.05) as the original did.
- Theano's convolution flips the kernel, so DanQ-JASPAR_train.py wrote each motif reversed;
  Keras 3 on TensorFlow computes cross-correlation, so the motifs are written as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np
from keras import layers

from danq.config import ModelConfig, TrainConfig
from danq.data.jaspar import vertebrate_pfms
from danq.errors import ConfigError
from danq.model.dropout import LSTM_DROPOUT, POOL_DROPOUT, DropoutPolicy, RandomRateDropout


@dataclass(frozen=True)
class MotifFilter:
    """Where a JASPAR motif was written into the motif convolution's kernel."""

    filter_index: int
    motif_id: str
    reverse_complement: bool
    offset: int
    length: int


JasparInit = Literal["sample", "original"]

# DanQ-JASPAR_train.py kept each motif at least 3 bp from either end of its 30-bp filter.
ORIGINAL_MARGIN = 3
# The motifs whose reverse complement DanQ-JASPAR_train.py added (JASPAR 2016 list positions
# 19 and 97-101: Gata1, REST, CTCF, GATA1::TAL1, ESRRB, Pou5f1::Sox2), by base id so that
# other releases pick their own version of the same matrix.
ORIGINAL_REVERSE_COMPLEMENTS = ("MA0035", "MA0138", "MA0139", "MA0140", "MA0141", "MA0142")
# Keras 0.x's Convolution1D default initialisation, init="uniform": U(-0.05, 0.05).
KERAS0_UNIFORM_SCALE = 0.05


def jaspar_filter_weights(
    n_filters: int,
    width: int,
    release: str,
    seed: int | None = None,
    mode: JasparInit = "sample",
) -> tuple[np.ndarray, np.ndarray, list[MotifFilter]]:
    """Motif-convolution kernel (width, 4, n_filters) and bias with JASPAR CORE vertebrate
    motifs of `release` written into some of the filters.

    Each motif filter holds the motif's PFM minus 0.25 at an offset inside the filter and a
    bias drawn from U(-1, 0), as in the DanQ authors' code; the rest of the kernel stays random.
    Keras computes cross-correlation, so the motif is written as is, not flipped. Motifs too
    long for the filter are skipped, not trimmed: a trimmed PFM is no longer the motif.

    mode "original" follows DanQ-JASPAR_train.py: every motif of the release that fits with
    3-bp margins, in matrix-id order in filters 0.., then the reverse complements of the six
    motifs the original added (ORIGINAL_REVERSE_COMPLEMENTS), each at a uniform random offset
    that keeps the margins; all other weights are drawn from U(-0.05, 0.05), Keras 0.x's
    default. With JASPAR2016 (the original's release, 519 motifs, all at most 21 bp) and
    1,024 filters of 30 bp that is 525 motif filters, as in the original. It needs
    conv_filters of at least that count (ConfigError otherwise).

    mode "sample" is this project's lighter variant, not the original's scheme:
    n_filters // 4 motifs drawn at random from those that fit (no margins), each written
    forward and as its reverse complement (about half the filters), the other filters keeping
    Keras 3's default initialisation (Glorot uniform kernel, zero bias).
    """
    rng = np.random.default_rng(seed)
    if mode == "original":
        return _original_filters(n_filters, width, release, rng)
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


def _original_filters(
    n_filters: int, width: int, release: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[MotifFilter]]:
    longest = width - 2 * ORIGINAL_MARGIN
    pfms = vertebrate_pfms(release)
    forward = [(mid, False) for mid in sorted(pfms) if len(pfms[mid]) <= longest]
    by_base = {mid.split(".")[0]: mid for mid, _ in forward}
    reverse = [(by_base[b], True) for b in ORIGINAL_REVERSE_COMPLEMENTS if b in by_base]
    motifs = forward + reverse
    if not forward:
        raise ConfigError(
            f"model.conv_width: {width}-bp filters leave no room for a {release} motif with "
            f"{ORIGINAL_MARGIN}-bp margins (jaspar_init: original)"
        )
    if len(motifs) > n_filters:
        raise ConfigError(
            f"model.conv_filters: {n_filters} filters cannot hold the {len(motifs)} motif "
            f"filters of jaspar_init: original ({len(forward)} {release} motifs that fit "
            f"{width}-bp filters with {ORIGINAL_MARGIN}-bp margins and {len(reverse)} reverse "
            "complements)"
        )
    kernel = rng.uniform(-KERAS0_UNIFORM_SCALE, KERAS0_UNIFORM_SCALE, (width, 4, n_filters))
    kernel = kernel.astype(np.float32)
    bias = np.zeros(n_filters, dtype=np.float32)
    placed = []
    for index, (motif_id, is_rc) in enumerate(motifs):
        pfm = pfms[motif_id]
        # Reverse complement in A,G,C,T: reverse both the positions and the channels.
        matrix = pfm[::-1, ::-1] if is_rc else pfm
        offset = int(rng.integers(ORIGINAL_MARGIN, width - ORIGINAL_MARGIN - len(pfm) + 1))
        kernel[offset : offset + len(pfm), :, index] = matrix - 0.25
        bias[index] = rng.uniform(-1.0, 0.0)
        placed.append(MotifFilter(index, motif_id, is_rc, offset, len(pfm)))
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
    # Default activations (sigmoid gates, not Keras 0.x's hard sigmoid: see the module
    # docstring), no recurrent dropout and no unrolling keep the cuDNN kernel on GPU.
    x = layers.Bidirectional(
        layers.LSTM(model_cfg.lstm_units, return_sequences=True), merge_mode="concat", name="bilstm"
    )(x)
    x = RandomRateDropout(policy.initial_rate(LSTM_DROPOUT), name=LSTM_DROPOUT)(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(model_cfg.dense_units, activation="relu", name="dense")(x)
    # float32 output keeps the probabilities and the loss stable under mixed precision.
    targets = layers.Dense(n_targets, activation="sigmoid", dtype="float32", name="targets")(x)
    model = keras.Model(sequence, targets, name="danq")

    if model_cfg.jaspar_init != "none":
        kernel, bias, _ = jaspar_filter_weights(
            model_cfg.conv_filters,
            model_cfg.conv_width,
            model_cfg.jaspar_release,
            seed,
            model_cfg.jaspar_init,
        )
        model.get_layer("motif_conv").set_weights([kernel, bias])
    return model


def compile_danq(
    model: keras.Model,
    train_cfg: TrainConfig,
    jit_compile: bool | Literal["auto"] = "auto",
    auroc: bool = True,
) -> keras.Model:
    """RMSprop and binary cross-entropy averaged over the targets, as in the paper (epsilon:
    see the module docstring).

    "auto" leaves XLA off on GPU, where the cuDNN LSTM kernel cannot be XLA-compiled.
    """
    metrics = [keras.metrics.AUC(curve="ROC", multi_label=True, name="auroc")] if auroc else []
    model.compile(
        optimizer=keras.optimizers.RMSprop(
            learning_rate=train_cfg.learning_rate, rho=train_cfg.rho, epsilon=train_cfg.epsilon
        ),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model

"""Dropout whose rate can change during training, and the policies that set it.

Baseline DanQ drops 0.2 after max-pooling and 0.5 after the BiLSTM. Random dropout (Li & Huang
2020) draws those rates uniformly from [0.1, 0.3] and [0.4, 0.6]; when to redraw (once per run,
per epoch or per batch) is a setting. Both variants use `RandomRateDropout`: its rate is a
variable read inside the compiled train step, so `DropoutRedrawCallback` can assign new rates
between batches without retracing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
from keras import ops

from danq.config import DropoutConfig, Variant

POOL_DROPOUT = "pool_dropout"
LSTM_DROPOUT = "lstm_dropout"

Redraw = Literal["never", "run", "epoch", "batch"]


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return float(rate)


@keras.saving.register_keras_serializable(package="danq")
class RandomRateDropout(keras.layers.Layer):
    """Inverted dropout whose rate is a non-trainable variable; identity at inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial_rate = _check_rate(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # A variable, not a Python float: the traced train step reads its current value,
        # so assigning a new rate never triggers a retrace.
        self.rate = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_rate),
            trainable=False,
            name="rate",
        )
        self.supports_masking = True

    def set_rate(self, rate: float) -> None:
        self.rate.assign(_check_rate(rate))

    def current_rate(self) -> float:
        return float(ops.convert_to_numpy(self.rate))

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        rate = ops.cast(self.rate, inputs.dtype)
        noise = keras.random.uniform(
            ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype
        )
        return ops.where(noise >= rate, inputs / (1.0 - rate), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.initial_rate, "seed": self.seed}


@dataclass(frozen=True)
class DropoutPolicy:
    """Rate range per dropout layer and when to redraw; a fixed rate is a range with low == high."""

    ranges: Mapping[str, tuple[float, float]]
    redraw: Redraw

    def initial_rate(self, layer_name: str) -> float:
        """Rate a layer starts with, before any draw: the middle of its range."""
        low, high = self.ranges[layer_name]
        return (low + high) / 2


def dropout_policy(cfg: DropoutConfig, variant: Variant) -> DropoutPolicy:
    if variant == "baseline":
        fixed = cfg.baseline
        return DropoutPolicy(
            ranges={POOL_DROPOUT: (fixed.pool, fixed.pool), LSTM_DROPOUT: (fixed.lstm, fixed.lstm)},
            redraw="never",
        )
    if variant == "random_dropout":
        drawn = cfg.random_dropout
        return DropoutPolicy(
            ranges={
                POOL_DROPOUT: (drawn.pool.low, drawn.pool.high),
                LSTM_DROPOUT: (drawn.lstm.low, drawn.lstm.high),
            },
            redraw=drawn.redraw,
        )
    raise ValueError(f"unknown dropout variant {variant!r}: expected baseline or random_dropout")


class DropoutRedrawCallback(keras.callbacks.Callback):
    """Draws new dropout rates on the policy's schedule and assigns them to the model's layers.

    Draws depend only on the seed and the epoch index: the run's draw comes from the seed's own
    stream, and each epoch's draws (one per epoch or one per batch) from a stream keyed by the
    epoch. Resuming with `fit(initial_epoch=k)` after `set_state(get_state())` therefore repeats
    the uninterrupted run's draws from epoch k on, whatever the callback order or wherever the
    interrupted run stopped.
    """

    def __init__(self, policy: DropoutPolicy, seed: int | None = None) -> None:
        super().__init__()
        self.policy = policy
        self._entropy = np.random.SeedSequence(seed).entropy
        self._epoch_rng: np.random.Generator | None = None
        self._rate_sums = dict.fromkeys(policy.ranges, 0.0)
        self._batches = 0
        # Rate each layer used during each finished epoch (the mean of its per-batch draws
        # under the "batch" schedule, so the history stays small on millions of batches).
        self.epoch_rates: list[dict[str, float]] = []

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state that reproduces all future draws."""
        return {"entropy": str(self._entropy)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._entropy = int(state["entropy"])

    def current_rates(self) -> dict[str, float]:
        """Rate each dropout layer of the model holds now, keyed by layer name."""
        return {name: self._layer(name).current_rate() for name in self.policy.ranges}

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.policy.redraw == "run":
            self._assign(self._draw(np.random.default_rng(np.random.SeedSequence(self._entropy))))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_rng = self._rng_for_epoch(epoch)
        self._rate_sums = dict.fromkeys(self.policy.ranges, 0.0)
        self._batches = 0
        if self.policy.redraw == "epoch":
            self._assign(self._draw(self._epoch_rng))

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.policy.redraw == "batch":
            assert self._epoch_rng is not None  # Keras begins the epoch before its batches
            rates = self._draw(self._epoch_rng)
            self._assign(rates)
            for name, rate in rates.items():
                self._rate_sums[name] += rate
            self._batches += 1

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._batches:
            self.epoch_rates.append({n: s / self._batches for n, s in self._rate_sums.items()})
        else:
            self.epoch_rates.append(self.current_rates())

    def _rng_for_epoch(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=(epoch,)))

    def _draw(self, rng: np.random.Generator) -> dict[str, float]:
        return {
            name: float(rng.uniform(low, high)) for name, (low, high) in self.policy.ranges.items()
        }

    def _assign(self, rates: Mapping[str, float]) -> None:
        for name, rate in rates.items():
            self._layer(name).set_rate(rate)

    def _layer(self, name: str) -> RandomRateDropout:
        return self.model.get_layer(name)

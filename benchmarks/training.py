"""Training throughput of full-size DanQ: our input pipeline vs plain Keras vs PyTorch.

All three train the same architecture on the same CPU in one process, one measurement of
each approach per round, so that load from other processes hits them alike. Each
measurement runs `steps + 1` batches and times the last `steps`: the first absorbs
iterator start-up (shuffle-buffer fill, first-call tracing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from benchmarks.records import Figure, Summary
from danq.config import DropoutConfig, ModelConfig, TrainConfig
from danq.data.dataset import make_dataset
from danq.data.shards import read_manifest
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.training.batches import training_batches
from danq.training.settings import configure_devices


@dataclass(frozen=True)
class TrainingSettings:
    preset: str = "danq"
    batch_size: int = 100
    steps: int = 3
    repeats: int = 3
    jit_compile: bool | str = "auto"  # for our pipeline's model; plain Keras keeps Keras's default
    torch: bool = True
    seed: int = 1234


class BatchClock(keras.callbacks.Callback):
    """Wall time at the end of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.ends.append(time.perf_counter())

    def samples_per_s(self, batch_size: int) -> float:
        steps = len(self.ends) - 1
        return steps * batch_size / (self.ends[-1] - self.ends[0])


def forward_flops_per_sample(model_cfg: ModelConfig, seq_len: int, n_targets: int) -> float:
    """Multiply-adds x 2 of the convolution, both LSTM directions and the dense layers."""
    conv_out = seq_len - model_cfg.conv_width + 1
    positions = model_cfg.pooled_length(seq_len)
    units, filters = model_cfg.lstm_units, model_cfg.conv_filters
    conv = conv_out * filters * model_cfg.conv_width * 4
    lstm = 2 * positions * 4 * units * (filters + units)
    dense = positions * 2 * units * model_cfg.dense_units + model_cfg.dense_units * n_targets
    return 2.0 * (conv + lstm + dense)


def training_flops_per_sample(model_cfg: ModelConfig, seq_len: int, n_targets: int) -> float:
    # The backward pass costs about twice the forward pass.
    return 3.0 * forward_flops_per_sample(model_cfg, seq_len, n_targets)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of numpy's BLAS on a square matmul: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b  # first call loads the BLAS threads
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * size**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def in_memory_arrays(shard_dir: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n samples of the shards as float32 one-hot x and labels y: the plain-Keras
    and PyTorch input."""
    x, y = next(iter(make_dataset(shard_dir, n)))
    return x.numpy(), y.numpy()


class Approach(Protocol):
    name: str
    label: str

    def measure(self, batch_size: int, steps: int) -> float:
        """samples/s over `steps` timed batches."""
        ...


class OurPipeline:
    """`danq train`'s path: training_batches over shards (shuffled) into compile_danq's model."""

    name, label = "ours", "DanQ via our tf.data pipeline (danq.training.batches.training_batches)"

    def __init__(self, shard_dir: str, settings: TrainingSettings, n_targets: int, seq_len: int):
        configure_devices()  # mixed precision on GPU, as `danq train` does
        cfg = TrainConfig(batch_size=settings.batch_size, seed=settings.seed)
        model_cfg = ModelConfig(preset=settings.preset)
        policy = dropout_policy(DropoutConfig(), "baseline")
        self.model = build_danq(model_cfg, seq_len, n_targets, policy, settings.seed)
        compile_danq(self.model, cfg, jit_compile=settings.jit_compile)
        self.batches, _ = training_batches(shard_dir, cfg, 0, 1)
        # The references are built after this: plain Keras code trains in float32.
        keras.mixed_precision.set_global_policy("float32")

    def measure(self, batch_size: int, steps: int) -> float:
        clock = BatchClock()
        self.model.fit(
            self.batches,
            steps_per_epoch=steps + 1,
            epochs=1,
            callbacks=[clock],
            shuffle=False,  # the dataset shuffles, as in `danq train`
            verbose=0,
        )
        return clock.samples_per_s(batch_size)


class PlainKeras:
    """The same model as plain Keras code trains it: model.fit on in-memory numpy arrays,
    RMSprop and binary cross-entropy with Keras's default compile settings."""

    name, label = "plain_keras", "same model, model.fit on in-memory numpy arrays"

    def __init__(self, x: np.ndarray, y: np.ndarray, settings: TrainingSettings):
        model_cfg = ModelConfig(preset=settings.preset)
        policy = dropout_policy(DropoutConfig(), "baseline")
        self.model = build_danq(model_cfg, x.shape[1], y.shape[1], policy, settings.seed)
        compile_danq(self.model, TrainConfig(batch_size=settings.batch_size), auroc=False)
        self.x, self.y = x, y

    def measure(self, batch_size: int, steps: int) -> float:
        clock = BatchClock()
        n = (steps + 1) * batch_size
        self.model.fit(
            self.x[:n], self.y[:n], batch_size=batch_size, epochs=1, callbacks=[clock], verbose=0
        )
        return clock.samples_per_s(batch_size)


class TorchPort:
    name, label = "torch", "PyTorch 2.13 port (benchmarks/torch_danq.py)"

    def __init__(self, x: np.ndarray, y: np.ndarray, settings: TrainingSettings):
        import torch

        from benchmarks.torch_danq import TorchDanQConfig, TorchTrainer

        model_cfg = ModelConfig(preset=settings.preset)
        cfg = TorchDanQConfig(
            seq_len=x.shape[1],
            n_targets=y.shape[1],
            conv_filters=model_cfg.conv_filters,
            conv_width=model_cfg.conv_width,
            pool_size=model_cfg.pool_size,
            lstm_units=model_cfg.lstm_units,
            dense_units=model_cfg.dense_units,
        )
        self.trainer = TorchTrainer(cfg, settings.seed)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def measure(self, batch_size: int, steps: int) -> float:
        ends = []
        for step in range(steps + 1):
            lo = step * batch_size
            self.trainer.step(self.x[lo : lo + batch_size], self.y[lo : lo + batch_size])
            ends.append(time.perf_counter())
        return steps * batch_size / (ends[-1] - ends[0])


def interleaved(approaches: list[Approach], settings: TrainingSettings) -> dict[str, Summary]:
    """samples/s of each approach over `repeats` rounds, after one warm-up round."""
    for approach in approaches:
        approach.measure(settings.batch_size, 1)  # tracing, XLA compilation, allocator warm-up
    rates: dict[str, list[float]] = {a.name: [] for a in approaches}
    for _ in range(settings.repeats):
        for approach in approaches:
            rates[approach.name].append(approach.measure(settings.batch_size, settings.steps))
    return {name: Summary.of(values) for name, values in rates.items()}


def training_throughput(shard_dir: str, settings: TrainingSettings) -> list[Figure]:
    manifest = read_manifest(shard_dir)
    x, y = in_memory_arrays(shard_dir, (settings.steps + 1) * settings.batch_size)
    ours = OurPipeline(shard_dir, settings, manifest.n_targets, manifest.seq_len)
    plain = PlainKeras(x, y, settings)
    torch_port = TorchPort(x, y, settings) if settings.torch else None
    approaches: list[Approach] = [ours, plain] + ([torch_port] if torch_port else [])
    rates = interleaved(approaches, settings)

    flops = training_flops_per_sample(
        ModelConfig(preset=settings.preset), manifest.seq_len, manifest.n_targets
    )
    peak = matmul_peak_gflops()
    details = {
        "preset": settings.preset,
        "trainable_parameters": sum(int(np.prod(w.shape)) for w in ours.model.trainable_weights),
        "batch_size": settings.batch_size,
        "timed_steps_per_repeat": settings.steps,
        "jit_compile": ours.model.jit_compile,
        "plain_keras_jit_compile": plain.model.jit_compile,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tf_threads": [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ],
    }
    figures = [
        Figure(
            "training throughput vs plain Keras",
            "samples/s",
            rates[ours.name],
            ours.label,
            rates[plain.name],
            plain.label,
            target=1.0,
            details=details,
        )
    ]
    if torch_port is not None:
        figures.append(
            Figure(
                "training throughput vs PyTorch port",
                "samples/s",
                rates[ours.name],
                ours.label,
                rates[torch_port.name],
                torch_port.label,
                target=1.5,
            )
        )
    gflops = [rate * flops / 1e9 for rate in rates[ours.name].values]
    figures.append(
        Figure(
            "training compute vs fp32 matmul peak",
            "GFLOP/s",
            Summary.of(gflops),
            f"our training throughput x {flops / 1e9:.2f} GFLOP per sample",
            Summary.of([peak]),
            "numpy fp32 2048x2048 matmul, best of 5, same run",
            notes="the ratio is the fraction of the machine's matmul peak reached",
            details={"training_gflop_per_sample": flops / 1e9},
        )
    )
    return figures

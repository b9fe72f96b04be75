"""tf.data input pipeline throughput: shards -> one-hot batches, as training reads them."""

from __future__ import annotations

import time

from benchmarks.records import Figure, Summary
from danq.data.dataset import make_dataset

GPU_FEED_SAMPLES_PER_S = 20_000  # the absolute rate the issue asks for, so a GPU is kept busy
CONSUMPTION_TARGET = 20.0


def batches_per_s(shard_dir: str, batch_size: int, n_batches: int, shuffle: bool) -> float:
    """samples/s of make_dataset, timed after the first batch (shuffle-buffer fill excluded)."""
    batches = iter(make_dataset(shard_dir, batch_size, shuffle=shuffle, seed=len(shard_dir)))
    next(batches)
    started = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    return n_batches * batch_size / (time.perf_counter() - started)


def pipeline_throughput(
    shard_dir: str, batch_size: int, n_batches: int, repeats: int, consumption: Summary | None
) -> list[Figure]:
    """Shuffled (as `danq train` reads) and in order (as evaluation reads), vs the model."""
    rates = {
        shuffle: Summary.of(
            [batches_per_s(shard_dir, batch_size, n_batches, shuffle) for _ in range(repeats)]
        )
        for shuffle in (True, False)
    }
    label = f"make_dataset, batches of {batch_size}, shuffle buffer 10,000"
    figures = [
        Figure(
            "input pipeline vs GPU feed rate",
            "samples/s",
            rates[True],
            label,
            Summary.of([GPU_FEED_SAMPLES_PER_S]),
            "fixed target: 20,000 samples/s (not measured)",
            target=1.0,
            details={"ordered_samples_per_s": rates[False].median},
            notes=f"in order (no shuffle): {rates[False].median:,.0f} samples/s",
        )
    ]
    if consumption is not None:
        figures.append(
            Figure(
                "input pipeline vs model consumption",
                "samples/s",
                rates[True],
                label,
                consumption,
                "full DanQ training throughput, same run",
                target=CONSUMPTION_TARGET,
            )
        )
    return figures

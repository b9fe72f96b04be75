"""A short training run in its own process, for the peak-RSS measurement: `danq train`'s
input pipeline (danq.training.batches.training_batches, shuffle buffer included) feeding the
model."""

from __future__ import annotations

import argparse

from danq.config import DropoutConfig, ModelConfig, TrainConfig
from danq.data.shards import read_manifest
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.training.batches import training_batches
from danq.training.settings import configure_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", required=True, help="prepared train shard folder")
    parser.add_argument("--preset", default="danq")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    manifest = read_manifest(args.shards)
    configure_devices()
    cfg = TrainConfig(batch_size=args.batch_size)
    policy = dropout_policy(DropoutConfig(), "baseline")
    model = build_danq(
        ModelConfig(preset=args.preset), manifest.seq_len, manifest.n_targets, policy, cfg.seed
    )
    compile_danq(model, cfg)
    batches, _ = training_batches(args.shards, cfg, 0, 1)
    model.fit(batches, steps_per_epoch=args.steps, epochs=1, shuffle=False, verbose=0)


if __name__ == "__main__":
    main()

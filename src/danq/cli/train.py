"""`danq train`: train one variant, tracked in MLflow and resumable."""

from __future__ import annotations

import argparse
import os

from danq.config import VARIANTS, Params


def cmd_train(args: argparse.Namespace, params: Params) -> int:
    from danq.io import storage
    from danq.training.loop import train_variant

    variant = args.variant
    result = train_variant(
        params,
        variant,
        args.shards or storage.join(params.work_dir, "shards"),
        args.out or os.path.join(params.work_dir, "models", variant),
        args.data or params.data_dir,
        force=args.force,
        restart=args.restart,
        checkpoint_dir=args.checkpoint_dir or os.path.join(params.work_dir, "checkpoints", variant),
    )
    if result.already_finished:
        print(
            f"{variant}: {result.out_dir} holds a finished run ({result.run_id}); "
            "--force trains again"
        )
    stop = (
        f"early stop at epoch {result.stopped_epoch}"
        if result.stopped_epoch
        else f"{result.epochs_run} epochs"
    )
    print(
        f"{result.variant}: best epoch {result.best_epoch} (val_loss {result.best_val_loss:.4f}), "
        f"{stop}, {result.wall_time_s:.0f} s -> {result.model_path}; MLflow {result.model_uri}"
    )
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `danq train` (declared here so that --help does not load TensorFlow)."""
    parser.add_argument("--variant", required=True, choices=VARIANTS, help="model variant")
    parser.add_argument(
        "--shards", help="prepared shards with train/ and valid/ (default: <work_dir>/shards)"
    )
    parser.add_argument("--out", help="output folder (default: <work_dir>/models/<variant>)")
    parser.add_argument(
        "--checkpoint-dir",
        help="per-epoch resume state (default: <work_dir>/checkpoints/<variant>)",
    )
    parser.add_argument(
        "--data", help="source data folder, for the data-version tags (default: data_dir)"
    )
    parser.add_argument(
        "--force", action="store_true", help="train again even if --out holds a finished run"
    )
    parser.add_argument(
        "--restart", action="store_true", help="discard a saved checkpoint and start over"
    )


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train one variant (baseline or random_dropout), tracked and resumable",
        description="Train DanQ or random-dropout DanQ from the shards: RMSprop, early "
        "stopping on validation loss, best weights kept; every epoch checkpointed so the same "
        "command resumes a killed run; everything tracked in MLflow.",
    )
    add_train_arguments(train)
    train.set_defaults(handler=cmd_train)

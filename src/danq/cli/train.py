"""`danq train`: train one variant, tracked in MLflow and resumable."""

from __future__ import annotations

import argparse
import os

from danq.config import VARIANTS, Params


def cmd_train(args: argparse.Namespace, params: Params) -> int:
    from danq.evaluation.seeds import planned_runs, seed_params, write_seed_index
    from danq.io import storage
    from danq.training.loop import train_variant

    variant = args.variant
    out = args.out or os.path.join(params.work_dir, "models", variant)
    checkpoints = args.checkpoint_dir or os.path.join(params.work_dir, "checkpoints", variant)
    runs = planned_runs(params)
    # train.seeds > 1: one single-seed run per seed, in sequence, in out/seed-<i>/.
    for run in runs:
        result = train_variant(
            seed_params(params, run.index) if run.folder else params,
            variant,
            args.shards or storage.join(params.work_dir, "shards"),
            os.path.join(out, run.folder) if run.folder else out,
            args.data or params.data_dir,
            force=args.force,
            restart=args.restart,
            checkpoint_dir=os.path.join(checkpoints, run.folder) if run.folder else checkpoints,
        )
        label = f"{variant} seed {run.seed}" if run.folder else variant
        if result.already_finished:
            print(
                f"{label}: {result.out_dir} holds a finished run ({result.run_id}); "
                "--force trains again"
            )
        stop = (
            f"early stop at epoch {result.stopped_epoch}"
            if result.stopped_epoch
            else f"{result.epochs_run} epochs"
        )
        print(
            f"{label}: best epoch {result.best_epoch} (val_loss {result.best_val_loss:.4f}), "
            f"{stop}, {result.wall_time_s:.0f} s -> {result.model_path}; MLflow {result.model_uri}"
        )
    if len(runs) > 1:
        write_seed_index(out, variant, runs)
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `danq train` (declared here so that --help does not load TensorFlow)."""
    parser.add_argument("--variant", required=True, choices=VARIANTS, help="model variant")
    parser.add_argument(
        "--shards", help="prepared shards with train/ and valid/ (default: <work_dir>/shards)"
    )
    parser.add_argument(
        "--out",
        help="output folder (default: <work_dir>/models/<variant>; with train.seeds > 1, one "
        "seed-<i>/ folder per seed in it)",
    )
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
        "command resumes a killed run; everything tracked in MLflow. train.seeds = N trains N "
        "runs in sequence (seeds train.seed .. train.seed + N - 1), N times the time.",
    )
    add_train_arguments(train)
    train.set_defaults(handler=cmd_train)

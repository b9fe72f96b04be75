"""`danq predict`: score sequences with a model."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from danq.config import WINDOW_POLICIES, Params
from danq.errors import PredictError

if TYPE_CHECKING:
    from danq.model.integrity import VerifiedModel


def cmd_predict(args: argparse.Namespace, params: Params) -> int:
    from danq import predict

    batch_size = args.batch_size or params.evaluate.batch_size
    started = time.monotonic()
    loaded, names, names_source = load_scoring_model(args, params)
    model = loaded.model
    seq_len = predict.model_seq_len(model)
    deepsea = predict.is_deepsea_input(args.input)
    check_options(args, batch_size, seq_len, deepsea)
    if deepsea:
        rows = predict.predict_hdf5(model, args.input, args.out, names, batch_size)
        policy = "whole sequences"
    else:
        rows = predict.predict_fasta(
            model, args.input, args.out, names, batch_size, args.windows, args.stride
        )
        policy = f"{args.windows} windows of {seq_len} bp"
        if args.windows == "tile":
            policy += f", stride {args.stride or seq_len}"
    print(
        f"wrote {rows} rows x {len(names)} targets to {args.out} in "
        f"{time.monotonic() - started:.1f} s (model {describe(loaded)}; {policy}; both "
        f"strands averaged; target names from {names_source})"
    )
    return 0


def load_scoring_model(
    args: argparse.Namespace, params: Params
) -> tuple[VerifiedModel, list[str], str]:
    """The model of --model (default: the registered champion), verified against
    --model-sha256 before anything is read or written (a refused model leaves no output), and
    its target names with where they came from (--target-names, the model, the data)."""
    from danq import predict, tracking
    from danq.model.loading import load_verified_model, resolve_target_names

    model_uri = args.model or f"models:/{params.mlflow.registered_model}@champion"
    tracking_uri = tracking.resolve_uri(params.mlflow)
    loaded = load_verified_model(model_uri, tracking_uri, args.model_sha256)
    names, names_source = resolve_target_names(
        predict.model_n_targets(loaded.model),
        names_file=args.target_names,
        model_uri=loaded.source,  # the version loaded, even if the alias has moved since
        tracking_uri=tracking_uri,
        data_dir=params.paths.data_dir,
        model_metadata=loaded.metadata,
    )
    return loaded, names, names_source


def describe(loaded: VerifiedModel) -> str:
    """The model as asked for, the version it resolved to, and its sha256 and whether it was
    checked."""
    pinned = f" = {loaded.source}" if loaded.source != loaded.uri else ""
    checked = "verified" if loaded.verified else "not checked: no --model-sha256"
    return f"{loaded.uri}{pinned}, sha256 {loaded.sha256} {checked}"


def check_options(args: argparse.Namespace, batch_size: int, seq_len: int, deepsea: bool) -> None:
    """Refuse option combinations in the options' own words (the library checks them too)."""
    if deepsea and (args.windows != "center" or args.stride is not None):
        raise PredictError(
            f"{args.input}: DeepSEA-format sequences already have the model's length; "
            "--windows tile and --stride apply to FASTA input only"
        )
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")
    if args.stride is None:
        return
    if args.windows != "tile":
        raise PredictError("--stride applies to --windows tile only")
    if not 1 <= args.stride <= seq_len:
        raise PredictError(
            f"--stride {args.stride}: must be between 1 and the model's window length {seq_len} "
            "so that the windows cover the record"
        )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --model-sha256 and --target-names: what load_scoring_model reads."""
    parser.add_argument(
        "--model",
        help="model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<id>/model, "
        "an MLflow model folder or a .keras file (default: models:/<mlflow.registered_model>"
        "@champion). Registered and logged models load only if their file matches the sha256 "
        "recorded in the registry",
    )
    parser.add_argument(
        "--model-sha256",
        help="expected sha256 of a local --model (.keras file, or the .keras file of an MLflow "
        "model folder); without it a local model is loaded unchecked",
    )
    parser.add_argument(
        "--target-names", help="file with one target name per line (default: from the model)"
    )


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict",
        help="score FASTA or DeepSEA-format HDF5 sequences with a model",
        description="Score sequences with the champion (or any model URI), averaging each "
        "window with its reverse complement; writes a TSV of sequence x target.",
    )
    add_model_options(predict)
    predict.add_argument(
        "--input",
        required=True,
        help="FASTA (.fa, .fasta, optionally .gz; records up to limits.max_record_length bp, "
        "N allowed) or DeepSEA-format HDF5 (.h5, .hdf5, .mat with testxdata (N, 4, L))",
    )
    predict.add_argument("--out", required=True, help="output TSV (written atomically)")
    predict.add_argument(
        "--batch-size",
        type=int,
        help="windows scored per model call, each on both strands (default: evaluate.batch_size)",
    )
    predict.add_argument(
        "--windows",
        choices=WINDOW_POLICIES,
        default="center",
        help="center: one window of the model's length centred on each record (N-padded or "
        "cropped); tile: windows at --stride covering each record, one row each",
    )
    predict.add_argument(
        "--stride", type=int, help="tile step in bp (default: the window length; tile only)"
    )
    predict.set_defaults(handler=cmd_predict)

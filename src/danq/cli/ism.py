"""`danq ism`: in-silico saturation mutagenesis of genome regions or FASTA records."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from danq.cli.predict import add_model_options
from danq.config import Params
from danq.errors import PredictError

MAX_PLOTTED_TARGETS = 20  # one PNG per sequence and target: beyond this, ask which


def cmd_ism(args: argparse.Namespace, params: Params) -> int:
    from danq import predict
    from danq.cli.predict import describe, load_scoring_model
    from danq.prediction import ism

    check_sequence_source(args)
    batch_size = args.batch_size or params.evaluate.batch_size
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")
    started = time.monotonic()
    loaded, names, names_source = load_scoring_model(args, params)
    model = loaded.model
    targets = chosen_target_indices(args, names)
    plot = not args.no_plots
    seq_len = predict.model_seq_len(model)
    sequences, source = read_sequences(args, seq_len)
    chosen = [names[t] for t in targets]
    results = (
        ism.saturation_mutagenesis(model, sequence, targets, chosen, batch_size)
        for sequence in sequences
    )
    count = ism.write_ism(results, args.out, plot)
    print(
        f"wrote in-silico mutagenesis of {count} sequence(s) ({source}; windows of {seq_len} bp, "
        f"3 alternatives per position, both strands averaged) x {len(targets)} target(s) to "
        f"{args.out}/ in {time.monotonic() - started:.1f} s (model {describe(loaded)}; target "
        f"names from {names_source})"
    )
    return 0


def add_sequence_options(parser: argparse.ArgumentParser, region_use: str) -> None:
    """--fasta with --region, or --input, and --targets: the sequences and targets of the
    commands that explain single windows (ism, explain attributions)."""
    parser.add_argument("--fasta", help="genome FASTA (plain or bgzip; indexed when needed)")
    parser.add_argument(
        "--region",
        action="append",
        help=f"contig:start-end, 1-based inclusive (repeatable); {region_use}",
    )
    parser.add_argument("--input", help="FASTA of sequences (each record's centred window)")
    parser.add_argument(
        "--targets",
        help="comma-separated target names, or @file with one per line (default: all)",
    )


def check_sequence_source(args: argparse.Namespace) -> None:
    if bool(args.region) == bool(args.input):
        raise PredictError("give either --fasta with --region, or --input (a FASTA of sequences)")
    if args.region and not args.fasta:
        raise PredictError("--region needs --fasta, the genome the region is read from")


def chosen_target_indices(args: argparse.Namespace, names: list[str]) -> list[int]:
    """The --targets' indices among the model's names, at most MAX_PLOTTED_TARGETS when each
    gets a plot per sequence."""
    from danq.cli.variants import chosen_targets
    from danq.prediction.effects import target_indices

    targets = target_indices(names, chosen_targets(args.targets))
    if not args.no_plots and len(targets) > MAX_PLOTTED_TARGETS:
        raise PredictError(
            f"{len(targets)} targets would make {len(targets)} plots per sequence: choose at "
            f"most {MAX_PLOTTED_TARGETS} with --targets, or give --no-plots"
        )
    return targets


def read_sequences(args: argparse.Namespace, seq_len: int) -> tuple[Iterator[Any], str]:
    """The model windows to explain (danq.prediction.ism) and a description of their source."""
    from danq.prediction import ism

    if args.region:
        regions = ism.genome_sequences(args.fasta, args.region, seq_len)
        return iter(regions), f"{len(args.region)} region(s) of {args.fasta}"
    return ism.fasta_sequences(args.input, seq_len), f"the records of {args.input}"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ism",
        help="in-silico saturation mutagenesis: every single-base change of a window, scored",
        description="Score the 3 alternative bases at every position of the model's window "
        "centred on a genome region (or on each FASTA record, as `danq predict` centres it), "
        "both strands averaged; writes per sequence an .npz (ism: positions x A,G,C,T x "
        "targets, alt - ref, 0 at the reference base), per target a heatmap PNG under a "
        "logo of the importance track (-mean of the 3 alternatives' diffs), and summary.tsv.",
    )
    add_sequence_options(
        parser, "positions of the region inside the model's window centred on it are mutated"
    )
    add_model_options(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        help="mutant windows per model call, each on both strands (default: evaluate.batch_size)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the arrays only")
    parser.add_argument(
        "--out", required=True, help="output folder (replaced as a whole when finished)"
    )
    parser.set_defaults(handler=cmd_ism)

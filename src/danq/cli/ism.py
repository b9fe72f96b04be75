"""`danq ism`: in-silico saturation mutagenesis of genome regions or FASTA records."""

from __future__ import annotations

import argparse
import time

from danq.cli.predict import add_model_options
from danq.config import Params
from danq.errors import PredictError

MAX_PLOTTED_TARGETS = 20  # one PNG per sequence and target: beyond this, ask which


def cmd_ism(args: argparse.Namespace, params: Params) -> int:
    from danq import predict
    from danq.cli.predict import describe, load_scoring_model
    from danq.cli.variants import chosen_targets
    from danq.prediction import ism
    from danq.prediction.effects import target_indices

    if bool(args.region) == bool(args.input):
        raise PredictError("give either --fasta with --region, or --input (a FASTA of sequences)")
    if args.region and not args.fasta:
        raise PredictError("--region needs --fasta, the genome the region is read from")
    batch_size = args.batch_size or params.evaluate.batch_size
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")
    started = time.monotonic()
    loaded, names, names_source = load_scoring_model(args, params)
    model = loaded.model
    targets = target_indices(names, chosen_targets(args.targets))
    plot = not args.no_plots
    if plot and len(targets) > MAX_PLOTTED_TARGETS:
        raise PredictError(
            f"{len(targets)} targets would make {len(targets)} plots per sequence: choose at "
            f"most {MAX_PLOTTED_TARGETS} with --targets, or give --no-plots"
        )
    seq_len = predict.model_seq_len(model)
    if args.region:
        sequences = iter(ism.genome_sequences(args.fasta, args.region, seq_len))
        source = f"{len(args.region)} region(s) of {args.fasta}"
    else:
        sequences = ism.fasta_sequences(args.input, seq_len)
        source = f"the records of {args.input}"
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
    parser.add_argument("--fasta", help="genome FASTA (plain or bgzip; indexed when needed)")
    parser.add_argument(
        "--region",
        action="append",
        help="contig:start-end, 1-based inclusive (repeatable); positions of the region "
        "inside the model's window centred on it are mutated",
    )
    parser.add_argument("--input", help="FASTA of sequences (each record's centred window)")
    parser.add_argument(
        "--targets",
        help="comma-separated target names, or @file with one per line (default: all)",
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

"""`danq explain`: what a model learned (its first-layer filters as motifs matched to JASPAR)."""

from __future__ import annotations

import argparse
import time

from danq.cli.ism import (
    add_sequence_options,
    check_sequence_source,
    chosen_target_indices,
    read_sequences,
)
from danq.cli.predict import add_model_options
from danq.config import ATTRIBUTION_BASELINES, ATTRIBUTION_METHODS, VARIANTS, Params
from danq.errors import PredictError


def cmd_explain_filters(args: argparse.Namespace, params: Params) -> int:
    from danq import artifacts, tracking
    from danq.cli.predict import describe, load_scoring_model
    from danq.evaluation.seeds import selected_model_dir
    from danq.interpretation import filters
    from danq.interpretation.explain import explain_filters
    from danq.io import storage

    settings = params.explain_filters
    started = time.monotonic()
    if args.variant:
        if args.model or args.shards or args.input:
            raise PredictError(
                "--variant picks the model and the data: drop --model/--shards/--input"
            )
        model_dir = selected_model_dir(
            storage.join(params.work_dir, "models", args.variant),
            storage.join(params.work_dir, "eval", args.variant),
            params,
        )
        run = artifacts.read_json(storage.join(model_dir, artifacts.RUN_FILE))
        args.model = storage.join(model_dir, artifacts.MODEL_FILE)
        args.shards = storage.join(params.work_dir, "shards", settings.split)
        out_dir = args.out or storage.join(params.work_dir, artifacts.EXPLAIN_DIR, args.variant)
    else:
        if bool(args.shards) == bool(args.input):
            raise PredictError("give either --shards (a split's shard folder) or --input (FASTA)")
        if not args.out:
            raise PredictError("--out is required without --variant")
        run, out_dir = None, args.out
    loaded, _, _ = load_scoring_model(args, params)
    if args.shards:
        sequences = filters.shard_batches(args.shards, settings.batch_size)
        source = f"shards {args.shards}"
    else:
        sequences = filters.fasta_batches(args.input, loaded.model, settings.batch_size)
        source = f"records of {args.input}"
    explained = explain_filters(
        loaded.model, sequences, settings, out_dir, title=f"Filters of {describe(loaded)}"
    )
    if run is not None:
        client = tracking.client(tracking.resolve_uri(params.mlflow))
        client.log_artifacts(run["run_id"], out_dir, artifact_path=artifacts.EXPLAIN_ARTIFACT_PATH)
    print(
        f"wrote {explained.n_filters} filter motifs ({explained.n_sequences} sequences of "
        f"{source}, threshold {settings.threshold} x max activation; scan "
        f"{explained.scan_s:.1f} s, TOMTOM vs {settings.jaspar_release} "
        f"{explained.tomtom_s:.1f} s): {explained.summary.n_matched} filters match a JASPAR "
        f"motif at q < {settings.max_q}; report in {out_dir}/ "
        f"({time.monotonic() - started:.1f} s)"
    )
    return 0


def cmd_explain_attributions(args: argparse.Namespace, params: Params) -> int:
    from danq import predict
    from danq.cli.predict import describe, load_scoring_model
    from danq.interpretation import attributions

    check_sequence_source(args)
    settings = params.attributions
    method = args.method or settings.method
    baseline = args.baseline or settings.baseline
    steps = settings.steps if args.steps is None else args.steps
    started = time.monotonic()
    loaded, names, names_source = load_scoring_model(args, params)
    targets = chosen_target_indices(args, names)
    plot = not args.no_plots
    seq_len = predict.model_seq_len(loaded.model)
    windows, source = read_sequences(args, seq_len)
    sequences = list(windows)
    result = attributions.attribute(
        loaded.model,
        sequences,
        targets,
        [names[t] for t in targets],
        method,
        baseline,
        steps,
        settings.batch_size,
        settings.seed,
        settings.samples,
    )
    attributions.write_attributions(result, args.out, plot)
    how, completeness = method.replace("_", " "), ""
    if method == "integrated_gradients":
        how += (
            f" from {result.baselines.shape[1]} {baseline} baseline(s) per sequence (seed "
            f"{settings.seed}), {steps} steps"
        )
        mean_baseline = result.baseline_scores.mean(axis=1)
        error = result.values.sum(axis=(1, 2)) - (result.scores - mean_baseline)
        completeness = (
            "; completeness: largest |sum of attributions - (score - baselines' mean score)| "
            f"{abs(error).max():.2g}"
        )
    print(
        f"wrote {how}, for {len(sequences)} sequence(s) ({source}; windows of {seq_len} bp, "
        f"both strands averaged) x {len(targets)} target(s), to {args.out}/ in "
        f"{time.monotonic() - started:.1f} s (model {describe(loaded)}; target names from "
        f"{names_source}){completeness}"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain",
        help="what a model learned: filters as motifs matched to JASPAR",
        description="Interpret a trained model.",
    )
    sub = explain.add_subparsers(dest="explain_command", required=True, metavar="WHAT")
    parser = sub.add_parser(
        "filters",
        help="first-layer filters as motifs, compared with JASPAR by TOMTOM",
        description="Scan sequences with the model's first convolution; for each filter, count "
        "the bases of every window whose activation exceeds explain_filters.threshold x the "
        "filter's largest activation over the scanned sequences (DanQ/Basset), giving a "
        "position frequency matrix; compare each with JASPAR CORE vertebrates by TOMTOM "
        "(memelite) with Benjamini-Hochberg q-values over each filter's comparisons. Writes "
        "filters.meme, matches.tsv, report.html (self-contained) and report.md with logos/.",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        help="the pipeline's trained variant: its model (with train.seeds > 1, the seed its "
        "evaluation selected), the explain_filters.split shards, output "
        "<work_dir>/explain/<variant>/, and the report logged to its MLflow run",
    )
    add_model_options(parser)
    parser.add_argument("--shards", help="a split's shard folder (e.g. build/shards/test)")
    parser.add_argument("--input", help="FASTA of sequences (each record's centred window)")
    parser.add_argument("--out", help="output folder (replaced as a whole when finished)")
    parser.set_defaults(handler=cmd_explain_filters)
    attr = sub.add_parser(
        "attributions",
        help="gradient x input or integrated gradients of the scores, per base",
        description="Attribute the strand-averaged score (probability) of chosen targets to the "
        "bases of the model's window centred on each FASTA record or genome region: gradient "
        "x input, or integrated gradients from a shuffled, GC-matched or all-zero baseline "
        "(Gauss-Legendre nodes). Writes attributions.npz (attributions: sequences x positions x "
        "A,G,C,T x targets, with the one-hot, baselines, scores, ids and coordinates) and per "
        "sequence and target a logo PNG.",
    )
    add_sequence_options(
        attr, "the model's window is centred on it and the region's bases are plotted"
    )
    add_model_options(attr)
    attr.add_argument(
        "--method",
        choices=ATTRIBUTION_METHODS,
        help="default: attributions.method",
    )
    attr.add_argument(
        "--baseline",
        choices=ATTRIBUTION_BASELINES,
        help="integrated gradients' baseline (default: attributions.baseline)",
    )
    attr.add_argument("--steps", type=int, help="integration nodes (default: attributions.steps)")
    attr.add_argument("--no-plots", action="store_true", help="write the arrays only")
    attr.add_argument(
        "--out", required=True, help="output folder (replaced as a whole when finished)"
    )
    attr.set_defaults(handler=cmd_explain_attributions)

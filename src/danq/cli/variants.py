"""`danq variant-effect`: score the alleles of a VCF against a genome FASTA with a model."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from danq.cli.predict import add_model_options
from danq.config import Params
from danq.errors import PredictError


def chosen_targets(spec: str | None) -> list[str] | None:
    """--targets: None (all), a comma-separated list of names, or @file with one per line."""
    from danq.model.loading import read_target_names

    if spec is None:
        return None
    if spec.startswith("@"):
        return read_target_names(spec[1:])
    return [name.strip() for name in spec.split(",") if name.strip()]


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counter.items())) or "none"


def cmd_variant_effect(args: argparse.Namespace, params: Params) -> int:
    from danq import predict
    from danq.artifacts import GENOME_METADATA_KEY
    from danq.cli.predict import describe, load_scoring_model
    from danq.prediction.effects import score_variants, target_indices
    from danq.prediction.genome import check_build, open_genome

    if args.vcf_out is not None and args.vcf_out == args.out:
        raise PredictError(f"--out and --vcf-out are the same file ({args.out})")
    cfg = params.variant_effect
    batch_size = args.batch_size or cfg.batch_size
    if batch_size < 2:
        raise PredictError(f"--batch-size {batch_size}: at least 2 (reference + alternative)")
    chosen = chosen_targets(args.targets)
    started = time.monotonic()
    loaded, names, names_source = load_scoring_model(args, params)
    target_indices(names, chosen)  # an unknown target fails before the genome is read
    with open_genome(args.fasta) as genome:
        check = check_build(loaded.metadata.get(GENOME_METADATA_KEY), genome, args.genome_build)
        for warning in check.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if check.problems:
            problems = "; ".join(check.problems)
            if not args.allow_build_mismatch:
                raise PredictError(
                    f"genome build mismatch: {problems}. Scoring refused: scores from a model "
                    "on another build's coordinates are wrong (--allow-build-mismatch to "
                    "score anyway)"
                )
            print(f"warning: genome build mismatch allowed: {problems}", file=sys.stderr)
        summary = score_variants(
            loaded.model,
            args.vcf,
            genome,
            names,
            args.out,
            args.vcf_out,
            chosen=chosen,
            batch_size=batch_size,
            max_allele_length=cfg.max_allele_length,
            cache_alleles=cfg.cache_alleles,
            fix_swapped=args.fix_swapped,
        )
    n_targets = len(names) if chosen is None else len(set(chosen))
    outputs = args.out if args.vcf_out is None else f"{args.out} and {args.vcf_out}"
    print(
        f"scored {summary.scored:,} of {summary.alleles:,} alleles ({summary.records:,} records) "
        f"for {n_targets} targets in {time.monotonic() - started:.1f} s: wrote {outputs} (model "
        f"{describe(loaded)}; {predict.model_seq_len(loaded.model)}-bp windows, both strands "
        f"averaged; target names from {names_source})"
    )
    if summary.renames:
        renamed = ", ".join(f"{vcf} -> {fasta}" for vcf, fasta in sorted(summary.renames.items()))
        print(f"contig names reconciled with {args.fasta}: {renamed}")
    print(f"flagged: {_counts(summary.flags)}")
    print(f"skipped: {_counts(summary.skipped)}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "variant-effect",
        help="score the alleles of a VCF against a genome FASTA (ref vs alt windows)",
        description="Score every ALT of a VCF with the champion (or any model URI): the "
        "model's window centred on the variant, with the reference and the alternative "
        "allele, each averaged with its reverse complement; writes a TSV (and optionally an "
        "annotated VCF) of ref, alt, diff, |diff| and log-odds diff per target.",
    )
    parser.add_argument("--vcf", required=True, help="VCF (plain or bgzip-compressed)")
    parser.add_argument(
        "--fasta",
        required=True,
        help="genome FASTA, plain or bgzip-compressed (.fai/.gzi built beside it when missing)",
    )
    add_model_options(parser)
    parser.add_argument(
        "--targets",
        help="targets to score: comma-separated names, or @FILE with one name per line "
        "(default: all)",
    )
    parser.add_argument("--out", required=True, help="output TSV (written atomically)")
    parser.add_argument(
        "--vcf-out",
        help="also write the VCF with DANQ_* INFO fields; a .gz name is bgzipped and "
        "tabix-indexed (needs sorted records)",
    )
    parser.add_argument(
        "--fix-swapped",
        action="store_true",
        help="score alleles whose ALT, not REF, matches the genome the other way round",
    )
    parser.add_argument(
        "--genome-build",
        help="the FASTA's build (e.g. hg38), checked against the model's recorded build",
    )
    parser.add_argument(
        "--allow-build-mismatch",
        action="store_true",
        help="score even when the FASTA's build differs from the model's training genome",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="windows per model call, each also on its reverse complement "
        "(default: variant_effect.batch_size)",
    )
    parser.set_defaults(handler=cmd_variant_effect)

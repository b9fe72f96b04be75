"""`python -m benchmarks` (`make bench`): run the suite, write results.md and results.json.

Defaults are the sizes of the issue on a CPU; on a GPU node the same command measures the
full model there (mixed precision as `danq train` sets it), and every size is a flag.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from benchmarks import report
from benchmarks.records import Figure, Summary

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "prepare",
    "pipeline",
    "training",
    "training_memory",
    "evaluation",
    "from_bed",
    "variants",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    p.add_argument("--make-run", action="store_true", help="also time `make run` (~5 min)")
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / "benchmarks" / "_work",
        help="scratch folder: synthetic train.mat files and shards, reused",
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks", help="results folder")
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="train.mat sizes (samples) for prepare and memory",
    )
    p.add_argument("--seq-len", type=int, default=1000)
    p.add_argument("--targets", type=int, default=919)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preset", default="danq", help="model preset for training throughput")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--train-steps", type=int, default=3, help="timed batches per repeat")
    p.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="XLA for our training step (auto: compile_danq's default)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--memory-steps", type=int, default=5, help="steps of the RSS training run")
    p.add_argument("--pipeline-batches", type=int, default=300)
    p.add_argument(
        "--bed-megabases",
        type=int,
        nargs="+",
        default=[10, 100],
        help="genome sizes (Mb) for `danq data from-bed`",
    )
    p.add_argument("--bed-targets", type=int, default=10, help="peak files for from-bed")
    p.add_argument(
        "--vep-presets", nargs="+", default=["small", "danq"], help="models for variant effects"
    )
    p.add_argument(
        "--vep-variants",
        type=int,
        nargs="+",
        default=[2000, 200],
        help="SNVs scored by `danq variant-effect`'s batched path, one count per preset",
    )
    p.add_argument(
        "--vep-loop-variants",
        type=int,
        nargs="+",
        default=[200, 20],
        help="SNVs through the per-variant model.predict loop, one count per preset",
    )
    p.add_argument(
        "--vep-memory-sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="VCF sizes for the peak RSS of `danq variant-effect`",
    )
    p.add_argument("--eval-rows", type=int, default=455_024)
    p.add_argument("--eval-targets", type=int, default=919)
    p.add_argument(
        "--sklearn-targets",
        type=int,
        default=20,
        help="targets the scikit-learn loop is timed on (then extrapolated)",
    )
    p.add_argument(
        "--tf-threads",
        type=int,
        nargs=2,
        metavar=("INTRA", "INTER"),
        help="TensorFlow intra-/inter-op threads (default: TensorFlow's choice)",
    )
    return p.parse_args(argv)


def configure_threads(threads: list[int] | None) -> None:
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])


def run_suite(args: argparse.Namespace) -> tuple[list[Figure], dict[str, float]]:
    from benchmarks import evaluation, from_bed, memory, pipeline, training, variants

    figures: list[Figure] = []
    setup: dict[str, float] = {}
    smallest = min(args.sizes)
    if "prepare" in args.only:
        prepared, writes = memory.prepare_benchmark(
            args.work, args.sizes, args.seq_len, args.targets
        )
        figures += prepared
        setup.update({f"write train.mat {n}": s for n, s in writes.items()})
    shards = (
        memory.ensure_shards(args.work, smallest, args.seq_len, args.targets)
        if {"training", "pipeline"} & set(args.only)
        else ""
    )
    consumption: Summary | None = None
    if "training" in args.only:
        jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
        settings = training.TrainingSettings(
            preset=args.preset,
            batch_size=args.batch_size,
            steps=args.train_steps,
            repeats=args.repeats,
            jit_compile=jit,
            torch=not args.no_torch,
        )
        trained = training.training_throughput(shards, settings)
        consumption = trained[0].ours
        figures += trained
    if "pipeline" in args.only:
        figures += pipeline.pipeline_throughput(
            shards, args.batch_size, args.pipeline_batches, args.repeats, consumption
        )
    if "training_memory" in args.only:
        for n in args.sizes:
            memory.ensure_shards(args.work, n, args.seq_len, args.targets)
        figures += memory.training_memory_benchmark(
            args.work, args.sizes, args.seq_len, args.preset, args.batch_size, args.memory_steps
        )
    if "evaluation" in args.only:
        figures += evaluation.evaluation_benchmark(
            args.eval_rows, args.eval_targets, args.sklearn_targets, args.repeats
        )
    if "from_bed" in args.only:
        figures += from_bed.from_bed_benchmark(args.work, args.bed_megabases, args.bed_targets)
    if "variants" in args.only:
        figures += variants.variants_benchmark(
            args.work / "variants",
            args.vep_presets,
            args.vep_variants,
            args.vep_loop_variants,
            args.vep_memory_sizes,
            args.seq_len,
            args.targets,
            args.repeats,
        )
    if args.make_run:
        from benchmarks.makerun import make_run_benchmark

        figures.append(make_run_benchmark(REPO, args.work))
    return figures, setup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_threads(args.tf_threads)
    started = time.perf_counter()
    load_start = report.load_average()
    figures, setup = run_suite(args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    run = {
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv),
        "finished": report.now(),
        "duration_s": time.perf_counter() - started,
        "setup_s": setup,
        "load_start": load_start,
        "load_end": report.load_average(),
        "machine": report.machine(),
        "versions": report.versions(),
        "settings": {k: settings[k] for k in sorted(settings) if k not in ("work", "out")},
    }
    report.write_results(args.out, run, figures)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

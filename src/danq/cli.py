"""The `danq` command line: one subcommand per pipeline stage.

Every subcommand reads params.yaml (or --params), applies `-S key=value` overrides, and
fails at start with the key's name when a setting is invalid. Heavy libraries (TensorFlow,
MLflow, Great Expectations) are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from danq import __version__, storage
from danq.config import ConfigError, Params, load_params
from danq.deepsea import SPLITS, DataError

Handler = Callable[[argparse.Namespace, Params], int]


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_synth(args: argparse.Namespace, params: Params) -> int:
    from danq.synth import write_dataset

    out = args.out or params.data_dir
    started = time.monotonic()
    write_dataset(out, params.synth, params.seed)
    cfg = params.synth
    print(
        f"wrote synthetic DeepSEA-format data to {out}/ in {time.monotonic() - started:.1f} s: "
        f"train {2 * cfg.n_train}, valid {2 * cfg.n_valid}, test {2 * cfg.n_test} sequences "
        f"of {cfg.seq_len} bp (forward + reverse complement)"
    )
    return 0


def cmd_prepare(args: argparse.Namespace, params: Params) -> int:
    _quiet_tensorflow()
    from danq.shards import prepare_dataset

    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, "shards")
    started = time.monotonic()
    manifests = prepare_dataset(data, out, params.prepare, tuple(args.splits), not args.quiet)
    elapsed = time.monotonic() - started
    total = sum(m.n_samples for m in manifests.values())
    for split, m in manifests.items():
        print(
            f"{split}: {m.n_samples} samples x {m.seq_len} bp, {m.n_targets} targets, "
            f"{len(m.shards)} shards -> {storage.join(out, split)}"
        )
    print(f"prepared {total} samples in {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f}/s)")
    return 0


def cmd_info(args: argparse.Namespace, params: Params) -> int:
    """A summary of a DeepSEA-format folder: shapes, layout, label prevalence."""
    import numpy as np

    from danq.deepsea import open_split
    from danq.synth import read_metadata

    data = args.data or params.data_dir
    summary: dict[str, dict] = {}
    for split in SPLITS:
        with open_split(storage.join(data, f"{split}.mat"), split) as reader:
            positives = np.zeros(reader.n_targets, dtype=np.int64)
            gc = n_bases = 0
            for _, x, y in reader.iter_chunks(params.prepare.chunk_size):
                positives += y.sum(axis=0, dtype=np.int64)
                gc += int(x[:, :, 1:3].sum(dtype=np.int64))
                n_bases += int(x.sum(dtype=np.int64))
            summary[split] = {
                "file": reader.name,
                "container": "MATLAB v7.3 (HDF5)" if reader.container == "hdf5" else "MATLAB v5",
                "layout": reader.layout,
                "samples": reader.n,
                "seq_len": reader.seq_len,
                "targets": reader.n_targets,
                "gc_content": round(gc / max(n_bases, 1), 4),
                "mean_prevalence": round(float(positives.mean()) / reader.n, 4),
                "targets_without_positives": int((positives == 0).sum()),
            }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{'split':6} {'file':10} {'container':19} {'samples':>9} {'bp':>5} {'targets':>7} "
        f"{'GC':>6} {'prev.':>6} {'no pos.':>7}"
    )
    for split, s in summary.items():
        print(
            f"{split:6} {s['file']:10} {s['container']:19} {s['samples']:>9} "
            f"{s['seq_len']:>5} {s['targets']:>7} {s['gc_content']:>6.3f} "
            f"{s['mean_prevalence']:>6.3f} {s['targets_without_positives']:>7}"
        )
    metadata = read_metadata(data)
    if metadata:
        counts = {c: len(t) for c, t in metadata["categories"].items()}
        print("synthetic targets by rule: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0


def cmd_fetch(args: argparse.Namespace, params: Params) -> int:
    from danq import fetch

    return fetch.run(args)


def _add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    from danq import fetch

    fetch.add_arguments(parser)


def cmd_train(args: argparse.Namespace, params: Params) -> int:
    from danq import train

    return train.run(args, params)


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


def cmd_validate(args: argparse.Namespace, params: Params) -> int:
    from danq import validate

    return validate.run(args, params)


def cmd_evaluate(args: argparse.Namespace, params: Params) -> int:
    _quiet_tensorflow()
    from danq.evaluate import EvaluationError, evaluate_variant

    work = params.work_dir
    for variant in args.variants:
        try:
            metrics = evaluate_variant(
                params,
                variant,
                model_dir=storage.join(args.models or storage.join(work, "models"), variant),
                shard_dir=args.shards or storage.join(work, "shards", "test"),
                out_dir=storage.join(args.out or storage.join(work, "eval"), variant),
                data_dir=args.data or params.data_dir,
            )
        except EvaluationError as err:
            print(f"error: {variant}: {err}", file=sys.stderr)
            return 1
        overall = metrics["overall"]
        print(
            f"{variant}: test macro AUROC {overall['auroc']:.4f}, macro AUPR "
            f"{overall['aupr']:.4f} over {overall['n_scoreable']} targets "
            f"({overall['n_skipped']} without positives skipped), {metrics['n_test']} sequences"
        )
    return 0


def cmd_report(args: argparse.Namespace, params: Params) -> int:
    from danq.report import build_report, comparison_table

    work = params.work_dir
    out = args.out or storage.join(work, "report")
    comparison = build_report(
        params,
        args.variants,
        models_dir=args.models or storage.join(work, "models"),
        eval_dir=args.eval or storage.join(work, "eval"),
        out_dir=out,
    )
    print("\n".join(comparison_table(comparison)))
    print(f"report: {out}/comparison.md and comparison.html")
    return 0


def cmd_predict(args: argparse.Namespace, params: Params) -> int:
    _quiet_tensorflow()
    from danq import predict

    return predict.run(args, params)


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    from danq import predict

    predict.add_arguments(parser)


def cmd_promote(args: argparse.Namespace, params: Params) -> int:
    from danq import promote

    return promote.run(args, params)


def cmd_study(args: argparse.Namespace, params: Params) -> int:
    _quiet_tensorflow()
    from danq import study

    return study.run(args, params)


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `danq study` (declared here so that --help does not load TensorFlow)."""
    parser.add_argument("--shards", help="prepared shards (default: <work_dir>/shards)")
    parser.add_argument(
        "--out", help="report folder: analysis, report, runs.csv/json (default: <work_dir>/study)"
    )
    parser.add_argument(
        "--runs", help="the runs' models and checkpoints (default: <work_dir>/study-runs)"
    )
    parser.add_argument(
        "--max-runs",
        type=int,
        help="train at most this many missing runs, then stop (run again to continue)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs trained side by side, one TensorFlow thread each (default: 1)",
    )


def cmd_registry_rollback(args: argparse.Namespace, params: Params) -> int:
    from danq import registry

    return registry.run_rollback(args, params)


def cmd_registry_show(args: argparse.Namespace, params: Params) -> int:
    from danq import registry

    return registry.run_show(args, params)


def cmd_pipeline(args: argparse.Namespace, params: Params) -> int:
    from danq import pipeline_cli

    return pipeline_cli.run(args)


VARIANTS = ("baseline", "random_dropout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="danq",
        description="DanQ and random-dropout DanQ: data, validation, training, evaluation, "
        "registry.",
    )
    parser.add_argument("--version", action="version", version=f"danq {__version__}")
    parser.add_argument(
        "--params", default="params.yaml", help="configuration file (default: params.yaml)"
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. -S train.max_epochs=3 (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="generate, fetch, inspect and prepare data")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    synth = data_commands.add_parser(
        "synth",
        help="write the synthetic DeepSEA-format benchmark (train/valid/test.mat)",
        description="Plant JASPAR motifs into random DNA following a regulatory grammar and "
        "write train.mat, valid.mat, test.mat and metadata.json in the DeepSEA layout.",
    )
    synth.add_argument("--out", help="output folder (default: paths.data_dir)")
    synth.set_defaults(handler=cmd_synth)

    prepare = data_commands.add_parser(
        "prepare",
        help="convert .mat splits to TFRecord shards (bounded memory)",
        description="Stream each split in chunks into fixed-length TFRecord shards "
        "(1 byte per base, packed labels) with a manifest.json; local or gs:// paths.",
    )
    prepare.add_argument("--data", help="DeepSEA-format folder (default: paths.data_dir)")
    prepare.add_argument("--out", help="shard folder (default: <paths.work_dir>/shards)")
    prepare.add_argument(
        "--splits", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to convert"
    )
    prepare.add_argument("--quiet", action="store_true", help="no progress lines")
    prepare.set_defaults(handler=cmd_prepare)

    info = data_commands.add_parser(
        "info", help="summarise a DeepSEA-format folder (shapes, GC, label prevalence)"
    )
    info.add_argument("--data", help="DeepSEA-format folder (default: paths.data_dir)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=cmd_info)

    fetch = data_commands.add_parser(
        "fetch-deepsea",
        help="download and unpack the DeepSEA training bundle (resumable)",
        description="Download deepsea_train_bundle.v0.9.tar.gz with resume and checksum "
        "checks, unpack train/valid/test.mat, and print the DVC commands to version them.",
    )
    _add_fetch_arguments(fetch)
    fetch.set_defaults(handler=cmd_fetch)

    from danq import validate as validate_module

    validate = commands.add_parser(
        "validate",
        help="the data gate: structural checks + Great Expectations suite",
        description="Stream train/valid/test.mat in bounded chunks, check layout, one-hot "
        "validity, labels, reverse-complement halves, drift, GC and leakage with a Great "
        "Expectations suite; write report.json and Data Docs; exit 1 if a blocking check fails.",
    )
    validate_module.add_arguments(validate)
    validate.set_defaults(handler=cmd_validate)

    train = commands.add_parser(
        "train",
        help="train one variant (baseline or random_dropout), tracked and resumable",
        description="Train DanQ or random-dropout DanQ from the shards: RMSprop, early "
        "stopping on validation loss, best weights kept; every epoch checkpointed so the same "
        "command resumes a killed run; everything tracked in MLflow.",
    )
    add_train_arguments(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="score trained variants on the test split (RC-averaged AUROC/AUPR)",
        description="Predict the test split with each variant's best model, averaging every "
        "sequence with its reverse complement; write metrics.json, per_target.tsv, curves and "
        "predictions under <work_dir>/eval/<variant>/ and log test metrics to MLflow.",
    )
    evaluate.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    evaluate.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    evaluate.add_argument("--shards", help="test shard folder (default: <work_dir>/shards/test)")
    evaluate.add_argument("--data", help="data folder for target names (default: paths.data_dir)")
    evaluate.add_argument("--out", help="output folder (default: <work_dir>/eval)")
    evaluate.set_defaults(handler=cmd_evaluate)

    report = commands.add_parser(
        "report", help="compare the variants: tables, plots, bootstrap CI, HTML report"
    )
    report.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    report.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    report.add_argument("--eval", help="evaluation folder (default: <work_dir>/eval)")
    report.add_argument("--out", help="output folder (default: <work_dir>/report)")
    report.set_defaults(handler=cmd_report)

    predict = commands.add_parser(
        "predict",
        help="score FASTA or DeepSEA-format HDF5 sequences with a model",
        description="Score sequences with the champion (or any model URI), averaging each "
        "window with its reverse complement; writes a TSV of sequence x target.",
    )
    _add_predict_arguments(predict)
    predict.set_defaults(handler=cmd_predict)

    from danq import promote as promote_module
    from danq import registry as registry_module

    promote = commands.add_parser(
        "promote",
        help="bless candidates against floors and the champion; move the alias",
        description="Bless each evaluated candidate only if it passes the absolute floors and, "
        "when a champion exists, beats it on the same test split with a paired-bootstrap CI "
        "above zero and few regressed targets; register every candidate and give the best "
        "blessed one the alias `champion`. Writes blessing.json.",
    )
    promote_module.add_arguments(promote)
    promote.set_defaults(handler=cmd_promote)

    study = commands.add_parser(
        "study",
        help="multi-seed study: does random dropout converge in fewer epochs? (params: study)",
        description="Train study.seeds runs per arm (baseline; random dropout redrawn per run, "
        "epoch or batch; optional rate ranges) at each of study.batch_sizes, evaluate each on "
        "the test split, and compare every random arm with the baseline: epochs to early "
        "stop, best epoch, time to best, best val loss, test AUROC/AUPR, with bootstrap CIs "
        "and Mann-Whitney U tests. Runs are MLflow child runs of one parent run; an "
        "interrupted study resumes where it stopped. Writes report.md/html to --out.",
    )
    add_study_arguments(study)
    study.set_defaults(handler=cmd_study)

    registry = commands.add_parser("registry", help="inspect the model registry, roll back")
    registry_commands = registry.add_subparsers(
        dest="registry_command", required=True, metavar="COMMAND"
    )
    rollback = registry_commands.add_parser(
        "rollback", help="move `champion` back to the previous champion (twice: undo)"
    )
    registry_module.add_rollback_arguments(rollback)
    rollback.set_defaults(handler=cmd_registry_rollback)
    show = registry_commands.add_parser("show", help="versions, aliases and tags")
    registry_module.add_show_arguments(show)
    show.set_defaults(handler=cmd_registry_show)

    from danq import pipeline_cli

    pipeline = commands.add_parser(
        "pipeline", help="the Kubeflow pipeline: compile to YAML, upload, run on a KFP endpoint"
    )
    pipeline_cli.add_commands(pipeline)
    pipeline.set_defaults(handler=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides)
        return args.handler(args, params)
    except ConfigError as err:
        print(f"error: invalid configuration:\n{err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

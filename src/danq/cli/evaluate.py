"""`danq evaluate` and `danq report`: test metrics per variant, and their comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from danq.config import VARIANTS, Params
from danq.io import storage


def cmd_evaluate(args: argparse.Namespace, params: Params) -> int:
    from danq.errors import EvaluationError
    from danq.evaluation.scoring import evaluate_variant, write_metrics

    work = params.work_dir
    metrics_dir = args.metrics_dir or params.paths.metrics_dir
    for variant in args.variants:
        try:
            metrics = evaluate_variant(
                params,
                variant,
                model_dir=storage.join(args.models or storage.join(work, "models"), variant),
                shard_dir=args.shards or storage.join(work, "shards", "test"),
                out_dir=storage.join(args.out or storage.join(work, "eval"), variant),
                data_dir=args.data,
            )
        except EvaluationError as err:
            raise EvaluationError(f"{variant}: {err}") from None
        # The copy that `dvc metrics` reads: committed, so outside the git-ignored work_dir.
        write_metrics(Path(metrics_dir, f"{variant}.json"), metrics)
        overall = metrics["overall"]
        print(
            f"{variant}: test macro AUROC {overall['auroc']:.4f}, macro AUPR "
            f"{overall['aupr']:.4f} over {overall['n_scoreable']} targets "
            f"({overall['n_skipped']} without positives skipped), {metrics['n_test']} sequences"
        )
    return 0


def cmd_report(args: argparse.Namespace, params: Params) -> int:
    from danq import artifacts
    from danq.evaluation.report import build_report, comparison_table

    work = params.work_dir
    out = args.out or storage.join(work, "report")
    comparison = build_report(
        params,
        args.variants,
        models_dir=args.models or storage.join(work, "models"),
        eval_dir=args.eval or storage.join(work, "eval"),
        out_dir=out,
        plots_dir=args.plots_dir or storage.join(params.paths.metrics_dir, "plots"),
    )
    print("\n".join(comparison_table(comparison)))
    print(f"report: {out}/{artifacts.COMPARISON_MD_FILE} and {artifacts.COMPARISON_HTML_FILE}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score trained variants on the test split (RC-averaged AUROC/AUPR)",
        description="Predict the test split with each variant's best model, averaging every "
        "sequence with its reverse complement; write metrics.json, per_target.tsv, curves and "
        "predictions under <work_dir>/eval/<variant>/, a copy of metrics.json as "
        "<paths.metrics_dir>/<variant>.json, and log test metrics to MLflow.",
    )
    evaluate.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    evaluate.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    evaluate.add_argument("--shards", help="test shard folder (default: <work_dir>/shards/test)")
    evaluate.add_argument(
        "--data",
        help="data folder whose target names must match the shards' (default: not checked)",
    )
    evaluate.add_argument("--out", help="output folder (default: <work_dir>/eval)")
    evaluate.add_argument(
        "--metrics-dir",
        help="where a copy of each metrics.json goes as <variant>.json, for dvc metrics "
        "(default: paths.metrics_dir)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    report = commands.add_parser(
        "report", help="compare the variants: tables, plots, bootstrap CI, HTML report"
    )
    report.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    report.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    report.add_argument("--eval", help="evaluation folder (default: <work_dir>/eval)")
    report.add_argument("--out", help="output folder (default: <work_dir>/report)")
    report.add_argument(
        "--plots-dir",
        help="where the CSV tables for dvc plots go (default: <paths.metrics_dir>/plots)",
    )
    report.set_defaults(handler=cmd_report)

"""`danq evaluate` and `danq report`: test metrics per variant, and their comparison."""

from __future__ import annotations

import argparse

from danq.config import VARIANTS, Params
from danq.io import storage


def cmd_evaluate(args: argparse.Namespace, params: Params) -> int:

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
            raise EvaluationError(f"{variant}: {err}") from None
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


def register(commands: argparse._SubParsersAction) -> None:
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

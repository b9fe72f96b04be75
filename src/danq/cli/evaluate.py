"""`danq evaluate` and `danq report`: validation and test metrics per variant, and their
comparison (decided on validation, reported on test)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from danq.config import VARIANTS, Params
from danq.io import storage


def cmd_evaluate(args: argparse.Namespace, params: Params) -> int:
    from danq.errors import EvaluationError
    from danq.evaluation.scoring import evaluate_seeds, write_metrics

    work = params.work_dir
    metrics_dir = args.metrics_dir or params.paths.metrics_dir
    for variant in args.variants:
        try:
            metrics = evaluate_seeds(
                params,
                variant,
                model_dir=storage.join(args.models or storage.join(work, "models"), variant),
                shard_dir=args.shards or storage.join(work, "shards", "test"),
                valid_shard_dir=args.valid_shards or storage.join(work, "shards", "valid"),
                out_dir=storage.join(args.out or storage.join(work, "eval"), variant),
                data_dir=args.data,
            )
        except EvaluationError as err:
            raise EvaluationError(f"{variant}: {err}") from None
        # The copy that `dvc metrics` reads: committed, so outside the git-ignored work_dir.
        write_metrics(Path(metrics_dir, f"{variant}.json"), metrics)
        print("\n".join(evaluation_lines(variant, metrics)))
    return 0


def evaluation_lines(variant: str, metrics: dict[str, Any]) -> list[str]:
    """What `danq evaluate` prints of one variant: validation (decides), test (reports)."""
    overall, valid = metrics["overall"], metrics["validation"]["overall"]
    lines = []
    for seed in metrics.get("seeds", []):
        chosen = " (selected on validation)" if seed == metrics["selected_seed"] else ""
        lines.append(
            f"{variant} seed {seed['seed']}: validation macro AUROC {seed['valid']['auroc']:.4f}, "
            f"AUPR {seed['valid']['aupr']:.4f}; test {seed['test']['auroc']:.4f}, "
            f"{seed['test']['aupr']:.4f}{chosen}"
        )
    lines.append(
        f"{variant}: validation macro AUROC {valid['auroc']:.4f}, AUPR {valid['aupr']:.4f} "
        f"({metrics['validation']['n']} sequences; decides promotion); test macro AUROC "
        f"{overall['auroc']:.4f}, AUPR {overall['aupr']:.4f} over {overall['n_scoreable']} "
        f"targets ({overall['n_skipped']} without positives skipped), {metrics['n_test']} "
        "sequences (reported only)"
    )
    return lines


def cmd_report(args: argparse.Namespace, params: Params) -> int:
    from danq import artifacts
    from danq.evaluation.report import build_report, comparison_table, verdict_lines

    work = params.work_dir
    out = args.out or storage.join(work, "report")
    comparison = build_report(
        params,
        args.variants,
        models_dir=args.models or storage.join(work, "models"),
        eval_dir=args.eval or storage.join(work, "eval"),
        out_dir=out,
        plots_dir=args.plots_dir or storage.join(params.paths.metrics_dir, "plots"),
        oracle_dir=args.oracle or storage.join(work, artifacts.ORACLE_DIR),
        data_dir=params.data_dir,
        explain_dir=storage.join(work, artifacts.EXPLAIN_DIR),
    )
    print("\n".join(comparison_table(comparison)))
    print("\n".join(verdict_lines(comparison, params.promote.confidence)))
    print(f"report: {out}/{artifacts.COMPARISON_MD_FILE} and {artifacts.COMPARISON_HTML_FILE}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score trained variants on the validation and test splits (RC-averaged AUROC/AUPR)",
        description="Predict the validation and test splits with each variant's best model, "
        "averaging every sequence with its reverse complement; write metrics.json, "
        "per_target.tsv, curves and predictions of test under <work_dir>/eval/<variant>/ and "
        "of validation under <work_dir>/eval/<variant>/valid/ (promotion decides on "
        "validation; test is only reported), a copy of metrics.json as "
        "<paths.metrics_dir>/<variant>.json, and log both splits' metrics to MLflow. With "
        "train.seeds > 1, every seed is scored and the best on validation is the variant's "
        "candidate.",
    )
    evaluate.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    evaluate.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    evaluate.add_argument("--shards", help="test shard folder (default: <work_dir>/shards/test)")
    evaluate.add_argument(
        "--valid-shards",
        help="validation shard folder (default: <work_dir>/shards/valid)",
    )
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
        "report",
        help="compare the variants: tables, plots, bootstrap CI, HTML report",
        description="Compare the trained variants on validation (what promotion decides on) "
        "and test (reported): macro metrics, the paired block-bootstrap interval of the "
        "difference between the two trained models (not the two methods; 'within noise' when "
        "it includes 0), the seed-paired comparison with train.seeds > 1, and the oracle's "
        "ceiling when <work_dir>/oracle/metrics.json exists.",
    )
    report.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    report.add_argument("--models", help="trained models folder (default: <work_dir>/models)")
    report.add_argument("--eval", help="evaluation folder (default: <work_dir>/eval)")
    report.add_argument(
        "--oracle",
        help="the oracle's scores from `danq data oracle`, shown as the ceiling when present "
        "(default: <work_dir>/oracle)",
    )
    report.add_argument("--out", help="output folder (default: <work_dir>/report)")
    report.add_argument(
        "--plots-dir",
        help="where the CSV tables for dvc plots go (default: <paths.metrics_dir>/plots)",
    )
    report.set_defaults(handler=cmd_report)

"""`danq study`: the multi-seed convergence study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from danq.artifacts import STUDY_REPORT_HTML_FILE, STUDY_REPORT_MD_FILE
from danq.config import Params


def cmd_study(args: argparse.Namespace, params: Params) -> int:
    for option, value in (("--max-runs", args.max_runs), ("--workers", args.workers)):
        if value is not None and value < 1:
            print(f"error: {option} must be at least 1", file=sys.stderr)
            return 2
    from danq.io import storage
    from danq.study.runner import run_study

    out = args.out or str(Path(params.work_dir) / "study")
    runs = args.runs or str(Path(params.work_dir) / "study-runs")
    shards = args.shards or storage.join(params.work_dir, "shards")
    records = run_study(params, shards, out, runs, args.max_runs, args.workers)
    if records is None:
        print(f"study stopped with runs missing; run the same command again to continue ({out})")
        return 0
    print(f"report: {out}/{STUDY_REPORT_MD_FILE} and {STUDY_REPORT_HTML_FILE}")
    return 0


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


def register(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser(
        "study",
        help="multi-seed study: does random dropout converge in fewer epochs? (params: study)",
        description="Train study.seeds runs per arm (baseline; random dropout redrawn per run, "
        "epoch or batch; optional rate ranges) at each of study.batch_sizes, evaluate each on "
        "the test split, and compare every random arm with the baseline paired by seed (seed "
        "i: same initial weights and data order in every arm): epochs and samples to a "
        "validation loss common to the arms of a seed, epochs to within 0.3% of the run's "
        "own best, best val loss and test AUROC, with paired t intervals and exact sign-flip "
        "tests; one primary comparison (study.primary vs baseline at the largest batch size), "
        "the rest Holm-adjusted, and the primary test's power. Runs are MLflow child runs of "
        "one parent run; an interrupted study resumes where it stopped. Writes report.md/html "
        "to --out.",
    )
    add_study_arguments(study)
    study.set_defaults(handler=cmd_study)

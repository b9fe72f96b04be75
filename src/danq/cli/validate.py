"""`danq validate`: the data gate."""

from __future__ import annotations

import argparse
import sys

from danq.artifacts import DATA_DOCS_DIR, VALIDATION_REPORT_FILE
from danq.config import Params
from danq.io import storage


def cmd_validate(args: argparse.Namespace, params: Params) -> int:
    """Run the gate; print each blocking failure and warning. 0 when every blocking check
    passes, 1 otherwise."""
    from danq.validation.gate import validate_dataset

    data = args.data or params.data_dir
    out = args.out or storage.join(params.work_dir, "validation")
    report = validate_dataset(data, params.validate_, out, seq_len=args.seq_len)
    not_run = 0
    for check in report.failures:
        if check.passed is None:
            not_run += 1
        else:
            print(f"FAILED {check.name} ({check.split}): {check.message}", file=sys.stderr)
    if not_run:
        print(
            f"{not_run} more blocking checks could not run (see {VALIDATION_REPORT_FILE})",
            file=sys.stderr,
        )
    for check in report.warnings:
        print(f"warning {check.name} ({check.split}): {check.message}", file=sys.stderr)
    verdict = "passed" if report.passed else f"FAILED ({len(report.failures)} blocking checks)"
    print(
        f"data gate {verdict}: {len(report.checks)} checks, {len(report.warnings)} warnings, "
        f"{report.elapsed_s:.1f} s; report: {storage.join(str(out), VALIDATION_REPORT_FILE)}, "
        f"Data Docs: {storage.join(str(out), DATA_DOCS_DIR, 'index.html')}"
    )
    return 0 if report.passed else 1


def register(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser(
        "validate",
        help="the data gate: structural checks + Great Expectations suite",
        description="Stream train/valid/test.mat in bounded chunks, check layout, one-hot "
        "validity, labels, reverse-complement halves, drift, GC and leakage with a Great "
        "Expectations suite; write report.json and Data Docs; exit 1 if a blocking check fails.",
    )
    validate.add_argument(
        "--data", help="DeepSEA-format folder, local or gs:// (default: paths.data_dir)"
    )
    validate.add_argument("--out", help="report folder (default: <paths.work_dir>/validation)")
    validate.add_argument(
        "--seq-len", type=int, help="expected sequence length in bp (default: take train.mat's)"
    )
    validate.set_defaults(handler=cmd_validate)

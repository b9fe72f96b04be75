"""The data gate's entry point: scan, tabulate, run the suite, explain, publish.

`validate_dataset` fingerprints the folder's files (danq.data.fingerprint), streams
train/valid/test.mat once each (`scan`), reduces them to summary tables (`tables`), runs
every expectation of `suite.gate_suite` over them with Great Expectations (`expectations`),
maps the results to plain-words checks (`report`), and publishes report.json (with the
fingerprint), the tables as CSV and the Data Docs as one folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from danq.artifacts import DATA_DOCS_DIR, VALIDATION_REPORT_FILE, publish_dir, staging_parent
from danq.config import ValidateConfig
from danq.data.fingerprint import fingerprint_folder
from danq.validation.expectations import run_great_expectations
from danq.validation.report import ValidationReport, checks_from_results
from danq.validation.scan import SplitScan, scan_dataset
from danq.validation.suite import gate_suite
from danq.validation.tables import build_tables


def validate_dataset(
    data_dir: str | os.PathLike[str],
    cfg: ValidateConfig,
    out_dir: str | os.PathLike[str],
    seq_len: int | None = None,
) -> ValidationReport:
    """Run the gate over train/valid/test.mat in data_dir (local or gs://); write the outputs.

    out_dir receives report.json, splits.csv, targets.csv, chunks.csv and data_docs/, all at
    once (built in a temporary folder, then renamed or uploaded). seq_len: the sequence length
    every split must have (None: take train.mat's).
    """
    started = time.monotonic()
    data_dir = str(data_dir)
    # Hashed before the scan: content that changes during or after it no longer matches.
    fingerprint = fingerprint_folder(data_dir)
    scans = scan_dataset(data_dir, cfg, seq_len)
    tables = build_tables(scans)
    suite = gate_suite(cfg)
    staging = Path(tempfile.mkdtemp(prefix=".validation-", dir=staging_parent(out_dir)))
    try:
        unexpected = run_great_expectations(suite, tables, staging / DATA_DOCS_DIR)
        report = ValidationReport(
            data_dir=data_dir,
            checks=checks_from_results(suite, tables, unexpected, scans),
            splits=_split_summaries(scans),
            thresholds=cfg.model_dump(),
            fingerprint=fingerprint,
        )
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        report.elapsed_s = time.monotonic() - started
        (staging / VALIDATION_REPORT_FILE).write_text(report.to_json())
        publish_dir(staging, out_dir, commit_marker=VALIDATION_REPORT_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _split_summaries(scans: dict[str, SplitScan]) -> dict[str, dict[str, Any]]:
    """What report.json says about each split's file."""
    return {
        split: {
            "file": s.file,
            "container": s.container,
            "layout": s.layout,
            "samples": s.n,
            "seq_len": s.seq_len,
            "targets": s.n_targets,
            "readable": s.ok,
        }
        for split, s in scans.items()
    }

"""The gate's verdicts: one Check per expectation and split, in plain words, and the report
that collects them (report.json)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from danq.artifacts import VALIDATION_REPORT_FILE
from danq.data.fingerprint import DataFingerprint
from danq.errors import ConfigError, DataError
from danq.io import storage
from danq.validation.scan import SplitScan
from danq.validation.suite import ROW_KEYS, GateExpectation, RowKey, Table


@dataclass
class Check:
    """One expectation's verdict for one split. passed is None when it could not be checked."""

    name: str
    split: str
    blocking: bool
    passed: bool | None
    observed: float | None
    threshold: str
    message: str
    suite: str
    column: str


@dataclass
class ValidationReport:
    data_dir: str
    checks: list[Check]
    splits: dict[str, dict[str, Any]]
    thresholds: dict[str, Any]
    elapsed_s: float = 0.0
    # The files as the gate read them; prepare refuses other content (None: not recorded).
    fingerprint: DataFingerprint | None = None

    @property
    def passed(self) -> bool:
        """True only when every blocking check ran and passed."""
        return all(c.passed for c in self.checks if c.blocking)

    @property
    def failures(self) -> list[Check]:
        """Blocking checks that failed or could not run."""
        return [c for c in self.checks if c.blocking and not c.passed]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.blocking and c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
            "passed": self.passed,
            "blocking_failures": len(self.failures),
            "warnings": len(self.warnings),
            "elapsed_s": round(self.elapsed_s, 3),
            "thresholds": self.thresholds,
            "splits": self.splits,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def read_report_fingerprint(out_dir: str) -> DataFingerprint:
    """The fingerprint a passed gate recorded in out_dir/report.json (local or gs://), for
    `prepare_dataset(expected_fingerprint=...)`; DataError when the report has none or
    did not pass."""
    path = storage.join(out_dir, VALIDATION_REPORT_FILE)
    if not storage.exists(path):
        raise DataError(f"{path}: not found; run the data gate (danq validate) first")
    with storage.open_binary(path) as fh:
        try:
            raw = json.loads(fh.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("passed") is not True:
        raise DataError(f"{path}: the data gate did not pass; its data must not be prepared")
    if raw.get("fingerprint") is None:
        raise DataError(f"{path}: holds no data fingerprint (written by an older danq)")
    try:
        return DataFingerprint.from_dict(raw["fingerprint"], f"{path} fingerprint")
    except ConfigError as err:  # a malformed file, not a malformed setting
        raise DataError(str(err)) from None


def _targets_phrase(targets: list[int]) -> str:
    listed = ", ".join(str(t) for t in targets[:10]) + (", ..." if len(targets) > 10 else "")
    return f"target {targets[0]}" if len(targets) == 1 else f"{len(targets)} targets ({listed})"


def _explain(
    spec: GateExpectation, split: str, failing: pd.DataFrame, scans: dict[str, SplitScan]
) -> str:
    """Plain words for a failing check, naming the file, samples or targets."""
    scan, file = scans[split], scans[split].file
    if spec.name == "layout":
        return str(scan.layout_error)
    if spec.name in scan.problems:
        return scan.problems[spec.name]
    row = failing.iloc[0]
    train = scans["train"]
    if spec.name == "same_targets":
        return (
            f"{file} has {scan.n_targets} targets but train.mat has {train.n_targets}: every "
            "split must label the same targets in the same order"
        )
    if spec.name == "same_seq_len":
        return f"{file} holds {scan.seq_len}-bp sequences but train.mat {train.seq_len}-bp ones"
    if spec.name == "n_share":
        worst = failing.loc[failing["n_share"].idxmax()]
        return (
            f"{file}: {len(failing)} of {len(scan.chunk_rows)} chunks have more than "
            f"{spec.max_value:.0%} unknown bases (N) (worst: samples {int(worst.first_sample)}-"
            f"{int(worst.last_sample)}, {worst.n_share:.0%} N); are positions masked or empty?"
        )
    if spec.name == "channel_order":
        return (
            f"{file}: channels look like A,C,G,T order; DeepSEA uses A,G,C,T. Read as A,G,C,T, "
            f"CG appears {row.cg_oe:.2f}x and GC {row.gc_oe:.2f}x as often as base frequencies "
            f"predict (CG/GC ratio {row.cg_gc_ratio:.2f}), but genomic DNA is depleted of CG, "
            "not GC"
        )
    if spec.name == "gc_mean_drift":
        return (
            f"{file}: mean GC content {row.gc_mean:.1%} vs {train.gc_mean:.1%} in train.mat "
            f"(difference {row.gc_mean_diff:.3f}, allowed {spec.max_value})"
        )
    if spec.name == "gc_distribution":
        return (
            f"{file}: per-sequence GC content is distributed unlike train.mat "
            f"(Kolmogorov-Smirnov distance {row.gc_ks:.2f}, allowed {spec.max_value})"
        )
    targets = failing["target"].astype(int).tolist()
    verb = "has" if len(targets) == 1 else "have"
    if spec.name == "train_positives":
        need = int(spec.min_value or 1)
        what = "no positive" if need == 1 else f"fewer than {need} positives"
        return f"{_targets_phrase(targets)} {verb} {what} in train.mat: nothing to learn from"
    if spec.name in ("valid_positives", "test_positives"):
        return (
            f"{_targets_phrase(targets)} {verb} no positive in {file}: ROC and PR AUC are "
            "undefined there"
        )
    worst = failing.loc[failing[spec.column].idxmax()]
    size = f"a factor {spec.max_value}" if spec.column.endswith("_ratio") else spec.max_value
    return (
        f"{file}: {len(targets)} of {len(scans['train'].positives)} targets differ in prevalence "
        f"from train.mat by more than {size} (worst: target {int(worst.target)}, "
        f"{worst[f'{split}_prevalence']:.1%} in {file} vs {worst.train_prevalence:.1%} in "
        "train.mat)"
    )


def _skip_reason(spec: GateExpectation, split: str, scans: dict[str, SplitScan]) -> str:
    if not scans[split].ok:
        return f"not checked: {scans[split].file} failed the layout check"
    if spec.needs_train and not scans["train"].ok:
        return "not checked: needs train.mat, which failed the layout check"
    if spec.table == "targets" and scans[split].n_targets != scans["train"].n_targets:
        return f"not checked: {scans[split].file} and train.mat have different target counts"
    return "not checked: nothing valid to measure (see the other failures)"


def checks_from_results(
    suite: list[GateExpectation],
    tables: dict[Table, pd.DataFrame],
    unexpected: dict[str, set[RowKey]],
    scans: dict[str, SplitScan],
) -> list[Check]:
    """One Check per expectation and split it applies to: passed, failed (explained from the
    failing rows and the scans) or not run (no row measured it)."""
    checks = []
    for spec in suite:
        table = tables[spec.table]
        for split in spec.splits:
            rows = table if "split" not in table else table[table["split"] == split]
            rows = rows[rows[spec.column].notna()]
            keys = zip(*(rows[column] for column in ROW_KEYS[spec.table]), strict=True)
            failing = rows[[key in unexpected[spec.name] for key in keys]]
            passed: bool | None = failing.empty if len(rows) else None
            observed = None
            if len(rows):
                values = rows[spec.column]
                observed = float(values.min() if spec.min_value is not None else values.max())
            if passed is None:
                message = _skip_reason(spec, split, scans)
            elif passed:
                message = spec.meaning
            else:
                message = _explain(spec, split, failing, scans)
            checks.append(
                Check(
                    spec.name,
                    split,
                    spec.blocking,
                    passed,
                    observed,
                    spec.threshold,
                    message,
                    f"deepsea_{spec.table}",
                    spec.column,
                )
            )
    return checks

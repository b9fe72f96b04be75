"""The three summary tables the suite runs over, built from the splits' scans.

| table | one row per | holds |
|---|---|---|
| splits | split | structural problem counts, GC, N share, CG/GC ratio, leaked sequences |
| targets | target | positives and prevalence per split, drift against train |
| chunks | chunk of samples | GC content and N share |
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from danq.validation.scan import SplitScan
from danq.validation.suite import Table


def build_tables(scans: dict[str, SplitScan]) -> dict[Table, pd.DataFrame]:
    """The splits, targets and chunks tables, by name."""
    return {
        "splits": _splits_table(scans),
        "targets": _targets_table(scans),
        "chunks": _chunks_table(scans),
    }


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest gap between two histograms' cumulative distributions."""
    if not a.sum() or not b.sum():
        return np.nan
    return float(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum()).max())


def _splits_table(scans: dict[str, SplitScan]) -> pd.DataFrame:
    train = scans["train"]
    rows = []
    for split, s in scans.items():
        row: dict[str, Any] = {"split": split, "file": s.file, "layout_error": float(not s.ok)}
        if s.ok:
            compare = train.ok and split != "train"
            row |= {
                "samples": s.n,
                "seq_len": s.seq_len,
                "n_targets": s.n_targets,
                "bad_value_samples": s.bad_value_samples,
                "multi_base_samples": s.multi_base_samples,
                "bad_labels": s.bad_labels,
                "rc_mismatched_pairs": s.rc.mismatched_pairs,
                "rc_label_mismatches": len(s.rc.y_mismatches),
                "target_count_mismatch": float(s.n_targets != train.n_targets) if compare else None,
                "seq_len_mismatch": float(s.seq_len != train.seq_len) if compare else None,
                "n_share": s.unknown_positions / s.positions,
                "gc_mean": s.gc_mean,
                "gc_mean_diff": abs(s.gc_mean - train.gc_mean) if compare else None,
                "gc_ks": _ks_distance(s.gc_histogram, train.gc_histogram) if compare else None,
                "cg_oe": s.observed_over_expected(s.cg_pairs),
                "gc_oe": s.observed_over_expected(s.gc_pairs),
                "cg_gc_ratio": s.cg_gc_ratio,
                "leaked_sequences": s.leaked if compare else None,
            }
        rows.append(row)
    return _numeric(pd.DataFrame(rows), keep=("split", "file"))


def _targets_table(scans: dict[str, SplitScan]) -> pd.DataFrame:
    train = scans["train"]
    n_targets = train.n_targets if train.ok else 0
    table = pd.DataFrame({"target": np.arange(n_targets)})
    for split, s in scans.items():
        usable = s.ok and train.ok and s.n_targets == n_targets
        table[f"{split}_positives"] = s.positives if usable else np.nan
        table[f"{split}_prevalence"] = s.positives / s.n if usable else np.nan
    train_smoothed = (table["train_positives"] + 1) / (train.n + 2) if train.ok else np.nan
    for split in ("valid", "test"):
        table[f"{split}_prevalence_diff"] = (
            table[f"{split}_prevalence"] - table["train_prevalence"]
        ).abs()
        smoothed = (table[f"{split}_positives"] + 1) / (scans[split].n + 2)
        table[f"{split}_prevalence_ratio"] = np.maximum(
            smoothed / train_smoothed, train_smoothed / smoothed
        )
    return _numeric(table, keep=("target",))


def _chunks_table(scans: dict[str, SplitScan]) -> pd.DataFrame:
    rows = [row for s in scans.values() if s.ok for row in s.chunk_rows]
    columns = ["split", "first_sample", "last_sample", "gc_content", "n_share"]
    return _numeric(
        pd.DataFrame(rows, columns=columns), keep=("split", "first_sample", "last_sample")
    )


def _numeric(table: pd.DataFrame, keep: tuple[str, ...]) -> pd.DataFrame:
    """Float columns (NaN for 'not measured') so GE treats missing values alike."""
    for column in table.columns:
        if column not in keep:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table

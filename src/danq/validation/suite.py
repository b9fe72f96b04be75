"""The gate's expectations, all in one list: which column of which summary table must lie
within which bounds, whether a failure blocks, and what a pass means in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from danq.config import SPLITS, ValidateConfig

Table = Literal["splits", "targets", "chunks"]
# Columns naming a row of each table: GE reports failing rows by them, Data Docs show them.
ROW_KEYS: dict[Table, tuple[str, ...]] = {
    "splits": ("split",),
    "targets": ("target",),
    "chunks": ("split", "first_sample"),
}
RowKey = tuple[Any, ...]


@dataclass(frozen=True)
class GateExpectation:
    """One expectation of the gate: `column` of `table` must lie in [min_value, max_value]."""

    name: str
    table: Table
    column: str
    meaning: str
    blocking: bool = True
    min_value: float | None = None
    max_value: float | None = None
    splits: tuple[str, ...] = SPLITS
    needs_train: bool = False

    @property
    def threshold(self) -> str:
        if self.min_value is not None and self.max_value is not None:
            return f"{self.min_value} <= value <= {self.max_value}"
        if self.min_value is not None:
            return f">= {self.min_value}"
        return f"<= {self.max_value}"


def gate_suite(cfg: ValidateConfig) -> list[GateExpectation]:
    """The whole gate in one place; thresholds come from params.yaml `validate:`."""
    g = GateExpectation
    held_out = ("valid", "test")
    # fmt: off
    suite = [
        # Structure, measured with numpy while streaming (one row per split).
        g("layout", "splits", "layout_error", max_value=0,
          meaning="the file opens as a DeepSEA split: MATLAB v5 or v7.3 container, x and y "
          "keys, one-hot with 4 channels, 2-axis labels, uint8, as many labels as sequences"),
        g("onehot_values", "splits", "bad_value_samples", max_value=0,
          meaning="one-hot values are only 0 and 1"),
        g("onehot_single_base", "splits", "multi_base_samples", max_value=0,
          meaning="no position has two or more bases set (all-zero rows are N)"),
        g("labels_binary", "splits", "bad_labels", max_value=0,
          meaning="labels are only 0 and 1"),
        g("rc_halves", "splits", "rc_mismatched_pairs", max_value=0,
          meaning="the second half holds the reverse complements (A,G,C,T order) of the first "
          f"half in the same order ({cfg.rc_pairs_checked} sampled pairs checked)"),
        g("rc_labels", "splits", "rc_label_mismatches", max_value=0,
          meaning="each reverse complement carries the labels of its forward sequence"),
        g("same_targets", "splits", "target_count_mismatch", max_value=0, splits=held_out,
          needs_train=True, meaning="valid.mat and test.mat have as many targets as train.mat"),
        g("same_seq_len", "splits", "seq_len_mismatch", max_value=0, splits=held_out,
          needs_train=True, meaning="valid.mat and test.mat have the sequence length of train.mat"),
        # Sequence statistics.
        g("n_share", "chunks", "n_share", max_value=cfg.max_n_share,
          meaning=f"at most {cfg.max_n_share:.0%} unknown bases (N) in every chunk of "
          f"{cfg.chunk_size} samples"),
        g("channel_order", "splits", "cg_gc_ratio", max_value=cfg.cg_gc_ratio_max,
          meaning="channels read as A,G,C,T show genomic CG depletion: CG at most "
          f"{cfg.cg_gc_ratio_max}x as frequent as GC (above that the order looks like A,C,G,T)"),
        g("gc_mean_drift", "splits", "gc_mean_diff", max_value=cfg.gc_mean_tolerance,
          splits=held_out, needs_train=True,
          meaning=f"mean GC content within {cfg.gc_mean_tolerance} of train.mat"),
        g("gc_distribution", "splits", "gc_ks", max_value=cfg.gc_ks_max, blocking=False,
          splits=held_out, needs_train=True,
          meaning="per-sequence GC distribution close to train.mat (Kolmogorov-Smirnov "
          f"distance at most {cfg.gc_ks_max})"),
        g("leakage", "splits", "leaked_sequences", max_value=cfg.max_leaked_sequences,
          splits=held_out, needs_train=True,
          meaning=f"at most {cfg.max_leaked_sequences} forward sequences also appear in "
          "train.mat, as such or reverse-complemented (hash of the one-hot bytes)"),
        # Labels (one row per target).
        g("train_positives", "targets", "train_positives", min_value=cfg.min_positives_train,
          splits=("train",), needs_train=True,
          meaning=f"every target has at least {cfg.min_positives_train} positive(s) in train.mat"),
    ]
    for split in held_out:
        suite += [
            g(f"{split}_prevalence_drift", "targets", f"{split}_prevalence_diff",
              max_value=cfg.prevalence_tolerance, splits=(split,), needs_train=True,
              meaning=f"every target's prevalence in {split}.mat is within "
              f"{cfg.prevalence_tolerance} of its prevalence in train.mat"),
            g(f"{split}_prevalence_ratio", "targets", f"{split}_prevalence_ratio",
              max_value=cfg.prevalence_ratio_max, blocking=False, splits=(split,),
              needs_train=True,
              meaning=f"every target's prevalence in {split}.mat is within a factor "
              f"{cfg.prevalence_ratio_max} of train.mat (add-one smoothed)"),
            g(f"{split}_positives", "targets", f"{split}_positives", min_value=1,
              blocking=False, splits=(split,), needs_train=True,
              meaning=f"every target has a positive in {split}.mat (else its AUC is undefined)"),
        ]
    # fmt: on
    return suite

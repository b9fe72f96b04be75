"""Per-target AUROC and AUPR of a DeepSEA-sized test set: danq.evaluation.metrics against a
scikit-learn loop.

The scikit-learn loop runs on a subset of the targets and is extrapolated linearly (every
target costs the same: one sort of the same number of rows); the subset's values are
checked against ours.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.records import Figure, Summary
from danq.evaluation.metrics import per_target_auroc_aupr

ROW_CHUNK = 50_000
PREVALENCE = 0.02


def synthetic_predictions(
    n_rows: int, n_targets: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 labels and float32 scores that rank positives higher, built in row chunks so
    that no float64 temporary of the full size exists."""
    rng = np.random.default_rng(seed)
    labels = np.empty((n_rows, n_targets), dtype=np.uint8)
    scores = np.empty((n_rows, n_targets), dtype=np.float32)
    for lo in range(0, n_rows, ROW_CHUNK):
        hi = min(lo + ROW_CHUNK, n_rows)
        noise = rng.random((hi - lo, n_targets), dtype=np.float32)
        labels[lo:hi] = rng.random((hi - lo, n_targets), dtype=np.float32) < PREVALENCE
        scores[lo:hi] = 0.3 * labels[lo:hi] + 0.7 * noise
    return labels, scores


def sklearn_loop(labels: np.ndarray, scores: np.ndarray, targets: range) -> np.ndarray:
    """The usual per-target loop: (AUROC, AUPR) per target, shape (len(targets), 2)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return np.array(
        [
            (
                roc_auc_score(labels[:, t], scores[:, t]),
                average_precision_score(labels[:, t], scores[:, t]),
            )
            for t in targets
        ]
    )


def evaluation_benchmark(
    n_rows: int, n_targets: int, sklearn_targets: int, repeats: int
) -> list[Figure]:
    labels, scores = synthetic_predictions(n_rows, n_targets)
    ours_times, sk_times = [], []
    subset = range(min(sklearn_targets, n_targets))
    for _ in range(repeats):
        started = time.perf_counter()
        auroc, aupr = per_target_auroc_aupr(labels, scores)
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = sklearn_loop(labels, scores, subset)
        sk_times.append((time.perf_counter() - started) * n_targets / len(subset))
    deviation = float(
        np.max(np.abs(reference - np.stack([auroc[: len(subset)], aupr[: len(subset)]], 1)))
    )
    ours = Summary.of(ours_times)
    return [
        Figure(
            f"evaluation, {n_rows:,} x {n_targets} (AUROC + AUPR per target)",
            "s",
            ours,
            "danq.evaluation.metrics.per_target_auroc_aupr",
            Summary.of(sk_times),
            f"scikit-learn loop, timed on {len(subset)} targets and extrapolated",
            higher_is_better=False,
            target=5.0,
            notes=(
                f"under 60 s: {'met' if ours.median < 60 else 'missed'}; "
                f"max |ours - sklearn| on the subset {deviation:.1e}"
            ),
            details={"max_abs_difference": deviation, "sklearn_targets": len(subset)},
        )
    ]

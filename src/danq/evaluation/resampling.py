"""How a comparison resamples rows: the bootstrap's block size and what its interval means.

Shared by promotion (blessing.json) and the report (comparison.md), so both say the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from danq import artifacts
from danq.config import PromoteConfig
from danq.data.targets import read_metadata

# See PromoteConfig.bootstrap_block_rows for why 50 rows on DeepSEA.
DEEPSEA_BLOCK_ROWS = 50

INTERVAL_MEANING = (
    "a percentile block-bootstrap interval of the difference between these two trained models "
    "(their scores as they are, one training run each) over resamples of this split's windows: "
    "how much the difference would move on other windows drawn like these. It says nothing "
    "about how the two training methods compare: another seed can train models whose "
    "difference lies outside it"
)


def independent_rows(data_dir: str | None) -> bool:
    """Whether data_dir holds data whose sequences are drawn independently (danq data synth)."""
    if not data_dir:
        return False
    try:
        metadata = read_metadata(data_dir)
    except (OSError, ValueError):
        return False
    return metadata is not None and metadata.get("generator") == artifacts.SYNTH_GENERATOR


def block_rows(cfg: PromoteConfig, data_dir: str | None = None) -> int:
    """promote.bootstrap_block_rows, with "auto" resolved for the data in data_dir (None: not
    known, so the DeepSEA default, the wider interval)."""
    if cfg.bootstrap_block_rows != "auto":
        return cfg.bootstrap_block_rows
    return 1 if independent_rows(data_dir) else DEEPSEA_BLOCK_ROWS


def bootstrap_settings(cfg: PromoteConfig, rows_per_block: int) -> dict[str, Any]:
    """Keyword arguments of paired_bootstrap_delta besides the data and the metric."""
    return {
        "n_boot": cfg.bootstrap_samples,
        "confidence": cfg.confidence,
        "max_rows": cfg.bootstrap_max_rows,
        "block_rows": rows_per_block,
        "min_class_blocks": cfg.bootstrap_min_class_blocks,
    }


def verdict_words(ci_low: float, ci_high: float, better: str, worse: str) -> str:
    """A comparison's verdict: which trained model is better, or "within noise" when the
    interval includes zero (better/worse name the models of a positive difference)."""
    if ci_low > 0:
        return f"the trained {better} model is better"
    if ci_high < 0:
        return f"the trained {worse} model is better"
    return "within noise (the interval includes 0)"


def seed_comparison(
    variant_a: str,
    metrics_a: list[float] | tuple[float, ...],
    variant_b: str,
    metrics_b: list[float] | tuple[float, ...],
    metric: str,
    confidence: float,
) -> dict[str, Any]:
    """b minus a over seeds, paired by seed index: seed i trains both variants from the same
    initial weights and data order, so the per-seed difference removes what the seed alone
    does. A paired t interval of the mean difference over n seeds (n - 1 degrees of
    freedom): unlike the bootstrap over windows, it covers training noise, so it is an
    interval about the two training methods on this data."""
    a = np.asarray(metrics_a, dtype=np.float64)
    b = np.asarray(metrics_b, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(
            f"seed comparison of {variant_b} and {variant_a} needs the same number (>= 2) of "
            f"seeds per variant, got {b.size} and {a.size}"
        )
    differences = b - a
    mean = float(differences.mean())
    half = float(
        stats.t.ppf(0.5 + confidence / 2, a.size - 1) * differences.std(ddof=1) / np.sqrt(a.size)
    )
    return {
        "a": variant_a,
        "b": variant_b,
        "metric": metric,
        "n_seeds": int(a.size),
        "per_seed_a": a.tolist(),
        "per_seed_b": b.tolist(),
        "delta": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "interval": f"paired t over seeds, {confidence:.0%}",
        "verdict": _seed_verdict(mean - half, mean + half, variant_b, variant_a, a.size),
    }


def _seed_verdict(low: float, high: float, better: str, worse: str, n_seeds: int) -> str:
    if low > 0:
        return f"{better} trains better models than {worse} on this data ({n_seeds} seeds)"
    if high < 0:
        return f"{worse} trains better models than {better} on this data ({n_seeds} seeds)"
    return f"within noise over {n_seeds} seeds (the interval includes 0)"

"""What a model learned, in one call: its first-layer filters scanned over sequences, turned
into motifs, matched to JASPAR, and written as a report folder. Shared by `danq explain
filters` and the Kubeflow explain step, so both produce the same report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import keras

from danq.config import ExplainFiltersConfig
from danq.interpretation import filters, html, motifs


@dataclass(frozen=True)
class FilterExplanation:
    n_filters: int
    n_sequences: int
    summary: html.ReportSummary
    scan_s: float
    tomtom_s: float


def explain_filters(
    model: keras.Model,
    sequences: filters.CodeBatches,
    settings: ExplainFiltersConfig,
    out_dir: str | os.PathLike[str],
    title: str,
) -> FilterExplanation:
    """Scan up to settings.max_sequences sequences, match the filters' motifs with TOMTOM and
    write the report folder out_dir (replaced as a whole once complete)."""
    started = time.monotonic()
    scanned = filters.scan_filters(model, sequences, settings.threshold, settings.max_sequences)
    scanned_at = time.monotonic()
    matches = motifs.match_jaspar(
        scanned.pfms(),
        settings.jaspar_release,
        compared=[int(n) >= settings.min_sites for n in scanned.n_sites],
        max_q=settings.max_q,
    )
    matched_at = time.monotonic()
    summary = html.write_filter_report(out_dir, scanned, matches, settings, title=title)
    return FilterExplanation(
        scanned.n_filters,
        scanned.n_sequences,
        summary,
        scan_s=scanned_at - started,
        tomtom_s=matched_at - scanned_at,
    )

"""The filter report: matches.tsv, filters.meme, logos, report.md and a self-contained
report.html (logos inlined as base64 PNG data URIs; no scripts, no external URLs), so that it
renders offline, as an MLflow artifact and in the KFP UI."""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from danq import artifacts
from danq.config import ExplainFiltersConfig
from danq.data.encoding import ALPHABET
from danq.data.jaspar import vertebrate_pfms
from danq.interpretation.filters import FilterScan
from danq.interpretation.motifs import (
    RELEASE_KEY,
    FilterMatches,
    MotifMatch,
    information_content,
    write_meme,
)

MATCH_COLUMNS = (
    "filter",
    "n_sites",
    "information_content",
    "rank",
    "jaspar_id",
    "name",
    "p_value",
    "q_value",
    "offset",
    "strand",
)


@dataclass(frozen=True)
class ReportSummary:
    n_compared: int
    n_matched: int  # filters whose best match has q < max_q
    matched_ids: dict[str, float]  # JASPAR id -> best q over all filters, q < max_q


def filter_name(index: int) -> str:
    return f"filter_{index}"


def logo_png(pfm: np.ndarray, title: str) -> bytes:
    """A logomaker information-content logo of a (width, 4) A,G,C,T PFM, as PNG bytes."""
    import logomaker
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frequencies = pd.DataFrame(np.asarray(pfm, dtype=np.float64), columns=list(ALPHABET))
    bits = logomaker.transform_matrix(
        frequencies[list("ACGT")], from_type="probability", to_type="information"
    )
    figure, axes = plt.subplots(figsize=(max(3.0, 0.25 * len(pfm)), 1.6))
    try:
        logomaker.Logo(bits, ax=axes, color_scheme="classic")
        axes.set_ylim(0, 2)
        axes.set_ylabel("bits")
        axes.set_title(title, fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _rows(scan: FilterScan, matches: list[FilterMatches], ic: list[float]) -> list[list[str]]:
    rows = []
    for found in matches:
        f = found.filter_index
        lead = [filter_name(f), str(int(scan.n_sites[f])), f"{ic[f]:.3f}"]
        if not found.matches:
            rows.append(lead + [""] * (len(MATCH_COLUMNS) - len(lead)))
        for rank, m in enumerate(found.matches, start=1):
            rows.append(
                lead
                + [
                    str(rank),
                    m.jaspar_id,
                    m.name,
                    f"{m.p_value:.3g}",
                    f"{m.q_value:.3g}",
                    str(m.offset),
                    m.strand,
                ]
            )
    return rows


def top_filters(scan: FilterScan, ic: list[float], min_sites: int, count: int) -> list[int]:
    """Filters with at least min_sites sites, by information content, then sites."""
    eligible = [f for f in range(scan.n_filters) if scan.n_sites[f] >= min_sites]
    return sorted(eligible, key=lambda f: (-ic[f], -int(scan.n_sites[f]), f))[:count]


def _match_logo_stem(match: MotifMatch) -> str:
    return f"{match.jaspar_id}{'.rc' if match.strand == '-' else ''}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def write_filter_report(
    out_dir: str | os.PathLike[str],
    scan: FilterScan,
    matches: list[FilterMatches],
    settings: ExplainFiltersConfig,
    title: str,
) -> ReportSummary:
    """Write the report folder, replaced as a whole once complete (summary.json last)."""
    pfms = scan.pfms()
    ic = [information_content(p) for p in pfms]
    best = {m.filter_index: m.matches[0] for m in matches if m.matches}
    matched = [f for f, m in best.items() if m.q_value < settings.max_q]
    matched_ids: dict[str, float] = {}
    for found in matches:
        for jaspar_id, q in found.significant.items():
            matched_ids[jaspar_id] = min(q, matched_ids.get(jaspar_id, 1.0))
    summary = ReportSummary(sum(bool(m.matches) for m in matches), len(matched), matched_ids)
    shown = top_filters(scan, ic, settings.min_sites, settings.top_filters)
    jaspar = vertebrate_pfms(settings.jaspar_release, RELEASE_KEY)

    out = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".explain-", dir=artifacts.staging_parent(out)))
    try:
        names = [filter_name(f) for f in range(scan.n_filters)]
        write_meme(staging / artifacts.EXPLAIN_MEME_FILE, pfms, names, scan.n_sites.tolist())
        table = ["\t".join(MATCH_COLUMNS)] + ["\t".join(r) for r in _rows(scan, matches, ic)]
        artifacts.write_text(staging / artifacts.EXPLAIN_MATCHES_FILE, "\n".join(table) + "\n")
        logos = staging / artifacts.EXPLAIN_LOGOS_DIR
        logos.mkdir()
        cards = []
        for f in shown:
            filter_png = logo_png(pfms[f], f"{names[f]}: {int(scan.n_sites[f])} sites")
            (logos / f"{names[f]}.png").write_bytes(filter_png)
            match = best.get(f)
            match_png = None
            if match is not None:
                # Shown in the orientation that matched: A,G,C,T reverses as positions and channels.
                reverse = match.strand == "-"
                motif = jaspar[match.jaspar_id][::-1, ::-1] if reverse else jaspar[match.jaspar_id]
                label = f"{match.jaspar_id} {match.name}" + (
                    " (reverse complement)" if reverse else ""
                )
                match_png = logo_png(motif, label)
                (logos / f"{_match_logo_stem(match)}.png").write_bytes(match_png)
            cards.append(_Card(f, filter_png, match, match_png))
        artifacts.write_text(
            staging / artifacts.EXPLAIN_REPORT_MD_FILE,
            _markdown(title, scan, summary, settings, cards, ic),
        )
        artifacts.write_text(
            staging / artifacts.EXPLAIN_REPORT_HTML_FILE,
            _html(title, scan, summary, settings, cards, ic),
        )
        artifacts.write_json(
            staging / artifacts.EXPLAIN_SUMMARY_FILE,
            {
                "n_filters": scan.n_filters,
                "n_sequences": scan.n_sequences,
                "threshold": scan.threshold,
                "jaspar_release": settings.jaspar_release,
                "max_q": settings.max_q,
                "n_compared": summary.n_compared,
                "n_matched": summary.n_matched,
                "best_matches": {
                    names[f]: {"jaspar_id": m.jaspar_id, "name": m.name, "q_value": m.q_value}
                    for f, m in sorted(best.items())
                    if m.q_value < settings.max_q
                },
                "matched_ids": dict(sorted(matched_ids.items())),
            },
        )
        artifacts.publish_dir(staging, out, artifacts.EXPLAIN_SUMMARY_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


@dataclass(frozen=True)
class _Card:
    filter_index: int
    filter_png: bytes
    match: MotifMatch | None
    match_png: bytes | None


def _intro(scan: FilterScan, summary: ReportSummary, settings: ExplainFiltersConfig) -> str:
    return (
        f"{scan.n_filters} filters; sites: windows with activation above {scan.threshold} x the "
        f"filter's maximum over {scan.n_sequences} sequences. {summary.n_compared} filters with "
        f"at least {settings.min_sites} sites compared with {settings.jaspar_release} CORE "
        f"vertebrates by TOMTOM (memelite; q: Benjamini-Hochberg over each filter's "
        f"comparisons); {summary.n_matched} match a motif at q < {settings.max_q}."
    )


def _match_text(match: MotifMatch | None) -> str:
    if match is None:
        return "not compared"
    return (
        f"{match.jaspar_id} {match.name} (q = {match.q_value:.3g}, strand {match.strand}, "
        f"offset {match.offset})"
    )


def _markdown(
    title: str,
    scan: FilterScan,
    summary: ReportSummary,
    settings: ExplainFiltersConfig,
    cards: list[_Card],
    ic: list[float],
) -> str:
    lines = [f"# {title}", "", _intro(scan, summary, settings), ""]
    lines += ["| filter | sites | IC (bits) | best JASPAR match | filter logo | match logo |"]
    lines += ["|---|---|---|---|---|---|"]
    logos = artifacts.EXPLAIN_LOGOS_DIR
    for card in cards:
        f, match = card.filter_index, card.match
        name = filter_name(f)
        match_logo = f"![{match.jaspar_id}]({logos}/{_match_logo_stem(match)}.png)" if match else ""
        lines.append(
            f"| {name} | {int(scan.n_sites[f])} | {ic[f]:.2f} | {_match_text(match)} | "
            f"![{name}]({logos}/{name}.png) | {match_logo} |"
        )
    return "\n".join(lines) + "\n"


def _html(
    title: str,
    scan: FilterScan,
    summary: ReportSummary,
    settings: ExplainFiltersConfig,
    cards: list[_Card],
    ic: list[float],
) -> str:
    rows = []
    for card in cards:
        f, match = card.filter_index, card.match
        name = filter_name(f)
        match_img = (
            f'<img alt="{html.escape(match.jaspar_id)}" src="{_data_uri(card.match_png)}">'
            if match and card.match_png
            else ""
        )
        rows.append(
            f"<tr><td>{name}</td><td>{int(scan.n_sites[f])}</td><td>{ic[f]:.2f}</td>"
            f"<td>{html.escape(_match_text(match))}</td>"
            f'<td><img alt="{name}" src="{_data_uri(card.filter_png)}"></td>'
            f"<td>{match_img}</td></tr>"
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:middle}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(_intro(scan, summary, settings))}</p>"
        "<table><tr><th>filter</th><th>sites</th><th>IC (bits)</th><th>best JASPAR match</th>"
        "<th>filter logo</th><th>match logo</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )

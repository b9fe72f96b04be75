"""Report of a `danq study`: Markdown and HTML, plots, the runs as CSV/JSON, and the summary
metrics and files on the study's MLflow parent run. The statistics come from
danq.study.analysis.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric

from danq import tracking
from danq.artifacts import (
    STUDY_ANALYSIS_FILE,
    STUDY_REPORT_HTML_FILE,
    STUDY_REPORT_MD_FILE,
    STUDY_RUNS_CSV_FILE,
    STUDY_RUNS_JSON_FILE,
    write_atomically,
    write_json,
    write_text,
)
from danq.config import Params
from danq.evaluation.metrics import json_safe
from danq.evaluation.report import render_html
from danq.study.analysis import METRICS, analyse, values_of
from danq.study.plan import Arm

CSV_FIELDS = [
    "arm",
    "schedule",
    "batch_size",
    "seed_index",
    "seed",
    "run_id",
    "early_stopped",
    *METRICS,
    "wall_time_s",
]
PLOTS = ("epochs_to_stop.png", "val_loss_curves.png", "val_auroc_curves.png")


# --- prose and tables -----------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if metric in ("best_val_loss", "test_macro_auroc", "test_macro_aupr") else 1


def headline(analysis: dict[str, Any], comparison: dict[str, Any]) -> str:
    """One sentence on epochs to early stop, the paper's claim, with its CI and p-value."""
    c = comparison["metrics"]["epochs_to_stop"]
    arm, base = analysis["arms"][comparison["arm"]], analysis["arms"][comparison["baseline"]]
    level = round(analysis["confidence"] * 100)
    if c["ci_low"] > 0:
        verdict = "later than"
    elif c["ci_high"] < 0:
        verdict = "earlier than"
    else:
        verdict = "no detectable difference from"
    return (
        f"{comparison['label']}: early stop at epoch {_num(arm['epochs_to_stop']['mean'], 1)} "
        f"vs {_num(base['epochs_to_stop']['mean'], 1)} for the baseline, difference "
        f"{c['difference']:+.1f} epochs ({level}% CI {c['ci_low']:+.1f} to {c['ci_high']:+.1f}; "
        f"Mann-Whitney p = {_num(c['p_value'], 3)}; {arm['n']} vs {base['n']} runs): "
        f"{verdict} the baseline."
    )


def render_markdown(analysis: dict[str, Any]) -> str:
    """The report: headlines, per-arm table, differences from the baseline, spread, plots."""
    lines = [
        "# Random dropout vs baseline DanQ: convergence study",
        "",
        _method(analysis),
        "",
        "Epochs to early stop:",
        "",
        *[f"- {headline(analysis, c)}" for c in analysis["comparisons"]],
        "",
        *_arm_table(analysis),
        "",
        *_difference_table(analysis),
        "",
        *_spread_table(analysis),
        "",
        "Validation AUROC stands in for the accuracy curves of the paper's figures: with rare "
        "positive labels, accuracy mostly counts negatives. Bands: mean ± SD over the runs "
        "still training at that epoch.",
        "",
        *[f"![{name}]({name})" for name in PLOTS],
        "",
    ]
    return "\n".join(lines)


def _method(analysis: dict[str, Any]) -> str:
    level = round(analysis["confidence"] * 100)
    samples = analysis["samples_per_epoch"]
    epoch = "one pass over the training data" if samples is None else f"{samples:,} samples"
    return (
        f"An epoch is {epoch}. "
        f"Early stopping on validation loss with patience {analysis['patience']}, at most "
        f"{analysis['max_epochs']} epochs; a run that never stopped early counts as "
        f"{analysis['max_epochs']}. Differences are arm minus baseline at the same batch size, "
        f"with {level}% bootstrap CIs ({analysis['bootstrap_samples']} resamples) and "
        "two-sided Mann-Whitney U tests. Per arm: mean ± SD."
    )


def _arm_table(analysis: dict[str, Any]) -> list[str]:
    lines = [
        "| arm | runs | early-stopped | epochs to stop | max | best epoch | train time to best (s) "
        "| best val loss | test AUROC | test AUPR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in analysis["arms"].values():

        def cell(metric: str, a: dict[str, Any] = arm) -> str:
            d = _digits(metric)
            return f"{_num(a[metric]['mean'], d)} ± {_num(a[metric]['sd'], d)}"

        lines.append(
            f"| {arm['label']} | {arm['n']} | {arm['n_early_stopped']} | "
            f"{cell('epochs_to_stop')} | {arm['epochs_to_stop']['max']:.0f} | "
            f"{cell('best_epoch')} | {cell('time_to_best_s')} | {cell('best_val_loss')} | "
            f"{cell('test_macro_auroc')} | {cell('test_macro_aupr')} |"
        )
    return lines


def _difference_table(analysis: dict[str, Any]) -> list[str]:
    level = round(analysis["confidence"] * 100)
    lines = [
        f"Differences from the baseline ({level}% CI), Mann-Whitney U and p:",
        "",
        "| arm | metric | difference | CI | U | p |",
        "|---|---|---|---|---|---|",
    ]
    for comparison in analysis["comparisons"]:
        for metric, c in comparison["metrics"].items():
            d = _digits(metric)
            lines.append(
                f"| {comparison['label']} | {METRICS[metric]} | {c['difference']:+.{d}f} | "
                f"{c['ci_low']:+.{d}f} to {c['ci_high']:+.{d}f} | {c['mann_whitney_u']:.1f} | "
                f"{_num(c['p_value'], 3)} |"
            )
    return lines


def _spread_table(analysis: dict[str, Any]) -> list[str]:
    lines = [
        "Spread of epochs to early stop (the paper's slowest random-dropout run took 38 epochs):",
        "",
        "| arm | variance | SD | max | Brown-Forsythe p vs baseline |",
        "|---|---|---|---|---|",
    ]
    spread_p = {c["arm"]: c["epochs_to_stop_brown_forsythe_p"] for c in analysis["comparisons"]}
    for name, arm in analysis["arms"].items():
        e = arm["epochs_to_stop"]
        p = _num(spread_p[name], 3) if name in spread_p else "-"
        lines.append(
            f"| {arm['label']} | {_num(e['var'])} | {_num(e['sd'])} | {e['max']:.0f} | {p} |"
        )
    return lines


# --- plots ----------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> None:
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def plot_epochs_to_stop(arms: Sequence[Arm], records: Sequence[dict[str, Any]], path: Path) -> None:
    """Every run's early-stop and best epoch per arm, with the arm's mean."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.45 * len(arms) + 1.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    jitter = np.random.default_rng(0)
    for ax, metric in zip(axes, ("epochs_to_stop", "best_epoch")):
        for row, arm in enumerate(arms):
            values = values_of(records, arm, metric)
            ax.scatter(values, row + jitter.uniform(-0.15, 0.15, len(values)), s=18, alpha=0.7)
            ax.plot([values.mean()] * 2, [row - 0.3, row + 0.3], color="black", linewidth=2)
        ax.set_xlabel(METRICS[metric] + " (bar: mean)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(arms)), [a.label for a in arms])
    axes[0].invert_yaxis()
    fig.suptitle("Epochs to converge per arm")
    _save(fig, path)


def mean_curve(curves: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epoch numbers, mean and SD per epoch over the runs that reached that epoch."""
    length = max(len(c) for c in curves)
    padded = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        padded[i, : len(curve)] = curve
    counts = (~np.isnan(padded)).sum(axis=0)
    mean = np.nansum(padded, axis=0) / counts
    squares = np.nansum((padded - mean) ** 2, axis=0)
    # A single run left at an epoch has no spread to show.
    sd = np.sqrt(squares / np.maximum(counts - 1, 1))
    return np.arange(1, length + 1), mean, sd


def plot_curves(
    arms: Sequence[Arm], records: Sequence[dict[str, Any]], key: str, ylabel: str, path: Path
) -> None:
    """One panel per batch size: each arm's mean curve with a ± SD band."""
    from matplotlib.figure import Figure

    sizes = list(dict.fromkeys(a.batch_size for a in arms))
    fig = Figure(figsize=(5.5 * len(sizes), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sizes), sharey=True))
    for ax, size in zip(axes, sizes):
        for arm in (a for a in arms if a.batch_size == size):
            curves = [r["curves"][key] for r in records if r["arm"] == arm.name]
            epochs, mean, sd = mean_curve(curves)
            (line,) = ax.plot(epochs, mean, label=arm.label.removesuffix(f" (batch {size})"))
            ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        ax.set(title=f"batch size {size}", xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


# --- outputs --------------------------------------------------------------------------------


def write_runs(records: Sequence[dict[str, Any]], out: Path) -> None:
    """Every run's record: all of it as JSON, the per-run values (no curves) as CSV."""
    write_json(out / STUDY_RUNS_JSON_FILE, list(records))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)

    write_atomically(out / STUDY_RUNS_CSV_FILE, write_csv)


def parent_run_metrics(analysis: dict[str, Any]) -> dict[str, float]:
    """Per-arm means and every comparison's difference and p-value, as flat metric names."""
    metrics = {}
    for name, arm in analysis["arms"].items():
        for metric in METRICS:
            metrics[f"{name}.{metric}.mean"] = arm[metric]["mean"]
        metrics[f"{name}.epochs_to_stop.sd"] = arm["epochs_to_stop"]["sd"]
    for comparison in analysis["comparisons"]:
        for metric, c in comparison["metrics"].items():
            metrics[f"{comparison['arm']}.{metric}.difference"] = c["difference"]
            metrics[f"{comparison['arm']}.{metric}.p_value"] = c["p_value"]
    return metrics


def log_to_parent(
    tracking_uri: str, study: dict[str, Any], analysis: dict[str, Any], out: Path
) -> None:
    """Summary metrics and the report files on the study's parent run, which then ends.
    tracking_uri: the store of this invocation, where open_study found or made the parent run
    (study.json keeps the URI redacted, so it cannot be used to log in)."""
    client = tracking.client(tracking_uri)
    run_id = study["parent_run_id"]
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(k, v, now, 0) for k, v in parent_run_metrics(analysis).items() if not np.isnan(v)
        ],
    )
    files = (
        STUDY_REPORT_MD_FILE,
        STUDY_REPORT_HTML_FILE,
        STUDY_ANALYSIS_FILE,
        STUDY_RUNS_CSV_FILE,
        STUDY_RUNS_JSON_FILE,
        *PLOTS,
    )
    for name in files:
        client.log_artifact(run_id, str(out / name), artifact_path="study")
    client.set_terminated(run_id)


def write_report(
    params: Params,
    study: dict[str, Any],
    arms: Sequence[Arm],
    records: Sequence[dict[str, Any]],
    out: Path,
) -> dict[str, Any]:
    """analysis.json, runs.json/csv, the plots, report.md/html; all logged to the parent run."""
    analysis = analyse(params, arms, records)
    write_runs(records, out)
    write_json(out / STUDY_ANALYSIS_FILE, json_safe(analysis))
    plot_epochs_to_stop(arms, records, out / PLOTS[0])
    plot_curves(arms, records, "val_loss", "validation loss", out / PLOTS[1])
    plot_curves(arms, records, "val_auroc", "validation AUROC", out / PLOTS[2])
    markdown = render_markdown(analysis)
    write_text(out / STUDY_REPORT_MD_FILE, markdown)
    write_text(out / STUDY_REPORT_HTML_FILE, render_html(markdown, out))
    log_to_parent(tracking.resolve_uri(params.mlflow), study, analysis, out)
    for comparison in analysis["comparisons"]:
        print(headline(analysis, comparison))
    return analysis

"""Report of a `danq study`: Markdown and HTML, plots, the runs as CSV/JSON, and the summary
metrics and files on the study's MLflow parent run. The statistics come from
danq.study.analysis; the report puts the primary comparison first, then the per-arm table
(endpoints beside the losses and AUROC the runs ended at), the Holm-adjusted secondary
comparisons, the power statement and what the study can and cannot say.
"""

from __future__ import annotations

import csv
import math
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
from danq.study.analysis import CENSORABLE, ENDPOINTS, PAPER_EPOCHS, analyse, with_endpoints
from danq.study.plan import Arm

CSV_FIELDS = [
    "arm",
    "schedule",
    "batch_size",
    "seed_index",
    "seed",
    "run_id",
    "early_stopped",
    "epochs_run",
    "best_epoch",
    "target_loss",
    "epochs_to_target",
    "epochs_to_target_censored",
    "samples_to_target",
    "epochs_to_own_best",
    "epochs_to_own_best_censored",
    "samples_to_own_best",
    "best_val_loss",
    "test_macro_auroc",
    "test_macro_aupr",
    "time_to_best_s",
    "wall_time_s",
]
PLOTS = ("convergence.png", "val_loss_curves.png", "val_auroc_curves.png")


# --- prose and tables -----------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def _p(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _digits(metric: str) -> int:
    return 4 if metric in ("best_val_loss", "test_macro_auroc", "test_macro_aupr") else 1


def _pairs(c: dict[str, Any]) -> str:
    """How many seeds a comparison rests on, and what censoring did to them."""
    text = f"{c['n_pairs']} seeds"
    if c["n_observed"] == c["n_pairs"]:
        return text
    return (
        f"{text}: {c['n_observed']} with both runs observed, "
        f"{c['n_ordered_arm_slower']} censored with the arm slower, "
        f"{c['n_ordered_arm_faster']} with the arm faster, "
        f"{c['n_uninformative']} uninformative"
    )


def verdict(c: dict[str, Any], alpha: float) -> str:
    """The primary test's verdict, worded for the trained models, not the method."""
    if math.isnan(c["p_value"]) or c["p_value"] >= alpha or c["score_mean"] == 0:
        return (
            f"no detectable difference at alpha {alpha:g} between the random-dropout models "
            "and the baseline models trained in this configuration"
        )
    direction = "fewer" if c["score_mean"] < 0 else "more"
    return (
        f"at alpha {alpha:g}, the random-dropout models trained in this configuration reached "
        f"the common target in {direction} epochs than the baseline models"
    )


def headline(analysis: dict[str, Any]) -> str:
    """The primary comparison in one sentence: estimate, paired t CI, exact p, verdict."""
    c = analysis["primary"]
    arm, base = analysis["arms"][c["arm"]], analysis["arms"][c["baseline"]]
    level = round(analysis["confidence"] * 100)
    test = "exact sign-flip" if c["exact"] else "Monte Carlo sign-flip"
    return (
        f"{c['label']} vs the baseline, epochs to the common target: "
        f"{_num(arm['epochs_to_target']['mean'], 1)} vs "
        f"{_num(base['epochs_to_target']['mean'], 1)}; mean per-seed difference "
        f"{_signed(c['difference'], 2)} epochs ({level}% paired t CI "
        f"{_signed(c['ci_low'], 2)} to {_signed(c['ci_high'], 2)}; {test} p = "
        f"{_p(c['p_value'])}; {_pairs(c)}): {verdict(c, analysis['alpha'])}."
    )


def power_text(analysis: dict[str, Any]) -> str:
    """The power statement, from the observed SD of the primary per-seed differences."""
    p = analysis["power"]
    if math.isnan(p["power_at_paper_effect"]):
        return (
            "Power: not computable (fewer than two seeds with both runs observed, or no "
            "spread in their differences)."
        )
    seeds = p["seeds_for_paper_effect"]
    need = f"at least {seeds} seeds" if seeds is not None else "more than 1,000 seeds"
    return (
        f"Power, from the observed SD of the primary per-seed differences "
        f"({_num(p['sd_of_differences'])} epochs over {p['n_seeds']} seeds), for the paired "
        f"t test that the sign-flip test approximates, at alpha {p['alpha']:g}: the paper's "
        f"effect ({PAPER_EPOCHS[0]} -> {PAPER_EPOCHS[1]} epochs, a "
        f"{p['paper_relative_reduction']:.0%} reduction), applied to this study's baseline "
        f"mean of {_num(p['baseline_mean'], 1)} epochs, is "
        f"{_num(p['paper_effect_epochs'], 1)} epochs and would be detected with power "
        f"{_num(p['power_at_paper_effect'])} (the exact sign-flip test, simulated: "
        f"{_num(p['power_sign_flip_at_paper_effect'])}). The smallest difference detected with "
        f"{p['target_power']:.0%} power is {_num(p['detectable_difference'], 1)} epochs "
        f"({p['detectable_relative']:.0%} of the baseline mean); {need} would give "
        f"{p['target_power']:.0%} power at the paper's effect. The SD is itself estimated from "
        f"{p['n_seeds']} seeds, so these figures are approximate."
    )


def scope_text(analysis: dict[str, Any]) -> str:
    """What the embedded study can and cannot say about the paper's claim."""
    model = analysis["model"]
    samples = analysis["samples_per_epoch"]
    epoch = "one pass over the training data" if samples is None else f"{samples:,} samples"
    return (
        "What this study can say: whether, on the data it ran on, with this reduced DanQ "
        f"({model['conv_filters']} convolution filters of width {model['conv_width']}, a "
        f"BiLSTM of {model['lstm_units']} units each way), epochs of {epoch}, its learning "
        f"rate and batch sizes, and {analysis['seeds']} seeds, the models trained with random "
        "dropout reached a validation loss that every arm reaches in fewer (or more) epochs "
        "than baseline models trained from the same initial weights in the same data order, "
        "and what loss and test AUROC they ended at. What it cannot say: whether random "
        "dropout converges faster for DanQ on DeepSEA, the paper's setting (46.9 M "
        "parameters, 4.4 M training samples per one-pass epoch, 919 targets, batch sizes up "
        "to 1,000), where training dynamics differ; nor anything about the method beyond "
        "these trained models. A difference found here is one between these models. No "
        "difference found is evidence against an effect only as large as the power "
        "statement says was detectable here. The paper's own comparison (20 epochs over 14 "
        "runs against 27 over 6, unpaired, without statistics or a stated redraw schedule) "
        "is not reproduced run for run. The same study on DeepSEA: study/params-deepsea.yaml."
    )


def render_markdown(analysis: dict[str, Any]) -> str:
    """The report: primary comparison, design, per-arm table, secondary comparisons, power,
    scope, plots."""
    lines = [
        "# Random dropout vs baseline DanQ: convergence study",
        "",
        "Primary comparison (named before the runs):",
        "",
        f"- {headline(analysis)}",
        "",
        _method(analysis),
        "",
        *_arm_table(analysis),
        "",
        *_secondary_table(analysis),
        "",
        power_text(analysis),
        "",
        scope_text(analysis),
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
    tolerance = analysis["tolerance"]
    return (
        f"Design: seed i trains every arm from the same initial weights in the same data "
        f"order, so arms are compared through per-seed differences (arm minus baseline, same "
        f"seed and batch size): mean with a {level}% paired t interval, and a sign-flip "
        f"permutation test (exact over all sign patterns up to 16 seeds). An epoch is "
        f"{epoch}; early stopping on validation loss with patience {analysis['patience']}, "
        f"at most {analysis['max_epochs']} epochs. Primary endpoint: epochs until the "
        f"validation loss first comes within {tolerance:.1%} of the common target of its "
        "seed and batch size, the worst best validation loss among the arms' runs that "
        "stopped early (so a run that stops early at a poor loss does not look fast). "
        f"Secondary: epochs to within {tolerance:.1%} of the run's own best (the paper's "
        "criterion, which does favour early stops), best validation loss and test AUROC; "
        "all secondary comparisons are Holm-adjusted as one family. Runs cut by max_epochs "
        "are censored, not counted at max_epochs; censored runs are left out of the means "
        "below (their count is shown). Samples = epochs x samples per epoch, the same for "
        "arm and baseline at a batch size. Per arm: mean ± SD."
    )


def _cell(arm: dict[str, Any], metric: str, digits: int, scale: float = 1.0) -> str:
    """mean ± SD of the arm's observed values, with the count of censored runs."""
    d = arm[metric]
    text = f"{_num(d['mean'] / scale, digits)} ± {_num(d['sd'] / scale, digits)}"
    censored = arm.get(metric.replace("samples", "epochs"), {}).get("n_censored", 0)
    return f"{text} ({censored} censored)" if censored else text


def _arm_table(analysis: dict[str, Any]) -> list[str]:
    tol = f"{analysis['tolerance']:.1%}"
    lines = [
        f"| arm | runs | stopped early | epochs to target | samples to target (k) | epochs to "
        f"own best ({tol}) | best val loss | test AUROC | test AUPR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in analysis["arms"].values():
        lines.append(
            f"| {arm['label']} | {arm['n']} | {arm['n_early_stopped']} | "
            f"{_cell(arm, 'epochs_to_target', 1)} | "
            f"{_cell(arm, 'samples_to_target', 0, scale=1000.0)} | "
            f"{_cell(arm, 'epochs_to_own_best', 1)} | {_cell(arm, 'best_val_loss', 4)} | "
            f"{_cell(arm, 'test_macro_auroc', 4)} | {_cell(arm, 'test_macro_aupr', 4)} |"
        )
    return lines


def _secondary_table(analysis: dict[str, Any]) -> list[str]:
    level = round(analysis["confidence"] * 100)
    lines = [
        f"Secondary comparisons, arm minus baseline per seed (mean, {level}% paired t CI, "
        f"sign-flip p, and p Holm-adjusted over these {len(analysis['secondary'])}):",
        "",
        "| arm | metric | seeds (observed) | difference | CI | p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in analysis["secondary"]:
        d = _digits(c["metric"])
        lines.append(
            f"| {c['label']} | {ENDPOINTS[c['metric']]} | {c['n_pairs']} ({c['n_observed']}) | "
            f"{_signed(c['difference'], d)} | {_signed(c['ci_low'], d)} to "
            f"{_signed(c['ci_high'], d)} | {_p(c['p_value'])} | {_p(c['p_holm'])} |"
        )
    return lines


# --- plots ----------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> None:
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def plot_convergence(
    arms: Sequence[Arm], runs: Sequence[dict[str, Any]], max_epochs: int, path: Path
) -> None:
    """Every run's two convergence endpoints per arm, with the mean of the observed ones;
    censored runs as crosses at their bound."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.45 * len(arms) + 1.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    jitter = np.random.default_rng(0)
    for ax, metric in zip(axes, CENSORABLE):
        for row, arm in enumerate(arms):
            mine = [r for r in runs if r["arm"] == arm.name]
            values = np.array([float(r[metric]) for r in mine])
            censored = np.array([r[f"{metric}_censored"] for r in mine], dtype=bool)
            y = row + jitter.uniform(-0.15, 0.15, len(values))
            ax.scatter(values[~censored], y[~censored], s=18, alpha=0.7)
            ax.scatter(values[censored], y[censored], s=30, marker="x", color="red")
            if (~censored).any():
                mean = values[~censored].mean()
                ax.plot([mean] * 2, [row - 0.3, row + 0.3], color="black", linewidth=2)
        ax.axvline(max_epochs, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(ENDPOINTS[metric])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(arms)), [a.label for a in arms])
    axes[0].invert_yaxis()
    fig.suptitle("Epochs to converge per arm (bar: mean of the observed runs; x: censored)")
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


def write_runs(
    records: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], out: Path
) -> None:
    """Every run's record as JSON (with its curves); per-run values and endpoints as CSV."""
    write_json(out / STUDY_RUNS_JSON_FILE, list(records))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(runs)

    write_atomically(out / STUDY_RUNS_CSV_FILE, write_csv)


def parent_run_metrics(analysis: dict[str, Any]) -> dict[str, float]:
    """Per-arm means, the primary comparison and its power, and every secondary comparison's
    difference with raw and Holm-adjusted p, as flat metric names."""
    metrics: dict[str, float] = {}
    for name, arm in analysis["arms"].items():
        for metric in ENDPOINTS:
            metrics[f"{name}.{metric}.mean"] = arm[metric]["mean"]
    primary = analysis["primary"]
    metrics["primary.difference"] = primary["difference"]
    metrics["primary.ci_low"] = primary["ci_low"]
    metrics["primary.ci_high"] = primary["ci_high"]
    metrics["primary.p_value"] = primary["p_value"]
    metrics["primary.power_at_paper_effect"] = analysis["power"]["power_at_paper_effect"]
    metrics["primary.power_sign_flip_at_paper_effect"] = analysis["power"][
        "power_sign_flip_at_paper_effect"
    ]
    metrics["primary.detectable_difference"] = analysis["power"]["detectable_difference"]
    for c in analysis["secondary"]:
        prefix = f"{c['arm']}.{c['metric']}"
        metrics[f"{prefix}.difference"] = c["difference"]
        metrics[f"{prefix}.p_value"] = c["p_value"]
        metrics[f"{prefix}.p_holm"] = c["p_holm"]
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
            Metric(k, v, now, 0)
            for k, v in parent_run_metrics(analysis).items()
            if not math.isnan(v)
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
    runs = with_endpoints(params, records)
    write_runs(records, runs, out)
    write_json(out / STUDY_ANALYSIS_FILE, json_safe(analysis))
    plot_convergence(arms, runs, params.study.max_epochs, out / PLOTS[0])
    plot_curves(arms, records, "val_loss", "validation loss", out / PLOTS[1])
    plot_curves(arms, records, "val_auroc", "validation AUROC", out / PLOTS[2])
    markdown = render_markdown(analysis)
    write_text(out / STUDY_REPORT_MD_FILE, markdown)
    write_text(out / STUDY_REPORT_HTML_FILE, render_html(markdown, out))
    log_to_parent(tracking.resolve_uri(params.mlflow), study, analysis, out)
    print(headline(analysis))
    print(power_text(analysis))
    return analysis

"""`danq report`: the baseline vs random-dropout comparison, as tables, plots and prose.

Reads what training and evaluation left (build/models/<variant>/history.json,
build/eval/<variant>/{metrics.json, per_target.tsv, curves.json, predictions.npz}) and writes
build/report/: comparison.md, comparison.html and comparison.json, and PNG figures
(per-target AUPR scatter like the DanQ paper's figure, training curves of both variants on one
chart, ROC and PR curves of a few named targets). The CSV tables that `dvc plots` renders go
to their own folder (`danq report`: <paths.metrics_dir>/plots, committed so that `dvc plots
diff` compares commits). The random-dropout minus baseline difference comes with a paired
bootstrap confidence interval on the same test set.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import artifacts
from danq.config import VARIANT_LABELS, VARIANTS, Params
from danq.evaluation.metrics import paired_bootstrap_delta

if TYPE_CHECKING:
    from matplotlib.figure import Figure


BASELINE, RANDOM_DROPOUT = VARIANTS  # the comparison: random dropout minus baseline
TRAINING_CURVES_PNG = "training_curves.png"
ROC_PR_PNG = "roc_pr_curves.png"
AUPR_SCATTER_PNG = "aupr_scatter.png"
AUPR_SCATTER_CSV = "aupr_scatter.csv"
BOOTSTRAP_MAX_ROWS = 20_000


def history_csv(variant: str) -> str:
    return f"history_{variant}.csv"


def roc_csv(variant: str) -> str:
    return f"roc_{variant}.csv"


def pr_csv(variant: str) -> str:
    return f"pr_{variant}.csv"


def _label(variant: str) -> str:
    return next((label for v, label in VARIANT_LABELS.items() if v == variant), variant)


def _per_target(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {
        "name": [r["name"] for r in rows],
        "category": [r["category"] for r in rows],
        "aupr": np.array([float(r["aupr"]) for r in rows]),
        "auroc": np.array([float(r["auroc"]) for r in rows]),
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with artifacts.atomic_text(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)


def _save_figure(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    artifacts.write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _fmt(value: float | None, digits: int = 4) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else (f"{value:.{digits}f}")
    )


def build_report(
    params: Params,
    variants: list[str],
    models_dir: str,
    eval_dir: str,
    out_dir: str,
    plots_dir: str | None = None,
) -> dict[str, Any]:
    """Write the comparison of the variants to out_dir (Markdown, HTML, JSON and figures) and
    the tables that `dvc plots` draws to plots_dir (default: out_dir); returns the comparison."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = Path(plots_dir) if plots_dir is not None else out
    metrics = {v: artifacts.read_json(Path(eval_dir, v, artifacts.METRICS_FILE)) for v in variants}
    histories = {
        v: artifacts.read_json(Path(models_dir, v, artifacts.HISTORY_FILE)) for v in variants
    }
    _plot_training_curves(variants, histories, out, plots)
    _plot_roc_pr(variants, eval_dir, out, plots)
    comparison: dict[str, Any] = {
        "variants": {v: _variant_summary(metrics[v], histories[v]) for v in variants},
        "delta": None,
    }
    if BASELINE in variants and RANDOM_DROPOUT in variants:
        comparison.update(_random_dropout_vs_baseline(params, eval_dir, out, plots))
    markdown = render_markdown(comparison, params)
    artifacts.write_text(out / artifacts.COMPARISON_MD_FILE, markdown)
    artifacts.write_text(out / artifacts.COMPARISON_HTML_FILE, render_html(markdown, out))
    artifacts.write_text(
        out / artifacts.COMPARISON_JSON_FILE,
        json.dumps(comparison, indent=2, default=float) + "\n",
    )
    return comparison


def _plot_training_curves(
    variants: list[str], histories: dict[str, Any], out: Path, plots: Path
) -> None:
    """Training curves: one CSV per variant for dvc plots, one chart for people."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v in variants:
        rows = list(histories[v].get("epochs", []))
        _write_csv(
            plots / history_csv(v),
            [{"epoch": r["epoch"], "loss": r["loss"], "val_loss": r["val_loss"]} for r in rows],
        )
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["val_loss"] for r in rows], marker="o", label=_label(v))
        axes[1].plot(epochs, [r["loss"] for r in rows], marker="o", label=_label(v))
        best = histories[v].get("best_epoch")
        if best is not None:
            axes[0].axvline(best, linestyle=":", color=axes[0].lines[-1].get_color())
    axes[0].set(title="validation loss (dotted: best epoch)", xlabel="epoch", ylabel="BCE")
    axes[1].set(title="training loss", xlabel="epoch", ylabel="BCE")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, out / TRAINING_CURVES_PNG)


def _plot_roc_pr(variants: list[str], eval_dir: str, out: Path, plots: Path) -> None:
    """ROC and PR curves of the named targets; the first target's points as CSV tables."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for v in variants:
        curves = artifacts.read_json(Path(eval_dir, v, artifacts.CURVES_FILE))
        targets = list(dict.fromkeys(p["target"] for p in curves))
        for target in targets:
            pts = [p for p in curves if p["target"] == target]
            label = f"{target} ({v})"
            style = "-" if v == variants[0] else "--"
            axes[0].plot([p["fpr"] for p in pts], [p["tpr"] for p in pts], style, label=label)
            axes[1].plot(
                [p["recall"] for p in pts], [p["precision"] for p in pts], style, label=label
            )
        if targets:
            first = [p for p in curves if p["target"] == targets[0]]
            _write_csv(plots / roc_csv(v), [{"fpr": p["fpr"], "tpr": p["tpr"]} for p in first])
            _write_csv(
                plots / pr_csv(v),
                [{"recall": p["recall"], "precision": p["precision"]} for p in first],
            )
    axes[0].plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(title="precision-recall", xlabel="recall", ylabel="precision")
    axes[1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    _save_figure(fig, out / ROC_PR_PNG)


def _variant_summary(metrics: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    """One variant's row of the comparison: test metrics and how training went."""
    return {
        "test_macro_auroc": metrics["overall"]["auroc"],
        "test_macro_aupr": metrics["overall"]["aupr"],
        "categories": {
            c: {"auroc": s["auroc"], "aupr": s["aupr"]} for c, s in metrics["categories"].items()
        },
        "epochs_run": history.get("epochs_run"),
        "best_epoch": history.get("best_epoch"),
        "stopped_epoch": history.get("stopped_epoch"),
        "wall_time_s": history.get("wall_time_s"),
    }


def _random_dropout_vs_baseline(
    params: Params, eval_dir: str, out: Path, plots: Path
) -> dict[str, Any]:
    """Per-target AUPR scatter and the paired bootstrap delta of random dropout minus
    baseline: the comparison's delta, targets_better and targets_scored."""
    a = _per_target(Path(eval_dir, BASELINE, artifacts.PER_TARGET_FILE))
    b = _per_target(Path(eval_dir, RANDOM_DROPOUT, artifacts.PER_TARGET_FILE))
    scatter_rows = [
        {"target": name, "category": cat, BASELINE: float(x), RANDOM_DROPOUT: float(y)}
        for name, cat, x, y in zip(a["name"], a["category"], a["aupr"], b["aupr"])
        if not (np.isnan(x) or np.isnan(y))
    ]
    _write_csv(plots / AUPR_SCATTER_CSV, scatter_rows)
    _plot_aupr_scatter(scatter_rows, out / AUPR_SCATTER_PNG)
    pa = np.load(Path(eval_dir, BASELINE, artifacts.PREDICTIONS_FILE))
    pb = np.load(Path(eval_dir, RANDOM_DROPOUT, artifacts.PREDICTIONS_FILE))
    delta = {
        metric: paired_bootstrap_delta(
            pa["y_true"],
            pa["y_score"],
            pb["y_score"],
            metric=metric,
            n_boot=params.promote.bootstrap_samples,
            confidence=params.promote.confidence,
            seed=params.seed,
            max_rows=BOOTSTRAP_MAX_ROWS,
        )
        for metric in ("auroc", "aupr")
    }
    return {
        "delta": delta,
        "targets_better": int(sum(r[RANDOM_DROPOUT] > r[BASELINE] for r in scatter_rows)),
        "targets_scored": len(scatter_rows),
    }


def _plot_aupr_scatter(scatter_rows: list[dict[str, Any]], path: Path) -> None:
    """Per-target AUPR of random dropout against baseline, like the DanQ paper's figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for cat in dict.fromkeys(r["category"] for r in scatter_rows):
        pts = [r for r in scatter_rows if r["category"] == cat]
        ax.scatter(
            [p[BASELINE] for p in pts],
            [p[RANDOM_DROPOUT] for p in pts],
            s=14,
            label=cat or "targets",
        )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.7)
    ax.set(
        xlabel="baseline AUPR",
        ylabel="random dropout AUPR",
        xlim=(0, 1),
        ylim=(0, 1),
        title="per-target AUPR",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def comparison_table(comparison: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | test macro AUROC | test macro AUPR | epochs run | best epoch | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for v, row in comparison["variants"].items():
        wall = row.get("wall_time_s")
        lines.append(
            f"| {_label(v)} | {_fmt(row['test_macro_auroc'])} | "
            f"{_fmt(row['test_macro_aupr'])} | {row.get('epochs_run', 'n/a')} | "
            f"{row.get('best_epoch', 'n/a')} | {'n/a' if wall is None else f'{wall:.0f} s'} |"
        )
    return lines


def render_markdown(comparison: dict[str, Any], params: Params) -> str:
    lines = ["# Baseline DanQ vs random-dropout DanQ", ""]
    lines += comparison_table(comparison)
    variants = comparison["variants"]
    categories = sorted({c for row in variants.values() for c in row["categories"]})
    if categories:
        lines += [
            "",
            "Macro AUPR by target category:",
            "",
            "| variant | " + " | ".join(categories) + " |",
            "|---|" + "---|" * len(categories),
        ]
        for v, row in variants.items():
            lines.append(
                f"| {_label(v)} | "
                + " | ".join(_fmt(row["categories"].get(c, {}).get("aupr")) for c in categories)
                + " |"
            )
    delta = comparison.get("delta")
    if delta:
        level = int(round(params.promote.confidence * 100))
        lines += [
            "",
            "Random dropout minus baseline on the same test sequences (paired "
            f"bootstrap, {level}% CI):",
            "",
        ]
        for metric, d in delta.items():
            lines.append(
                f"- macro {metric.upper()}: {d['delta']:+.4f} "
                f"({_fmt(d['ci_low'])} to {_fmt(d['ci_high'])})"
            )
        lines.append(
            f"- random dropout has the higher AUPR on {comparison['targets_better']} "
            f"of {comparison['targets_scored']} targets"
        )
        d = delta["aupr"]
        if d["ci_low"] > 0:
            verdict = "random dropout is better"
        elif d["ci_high"] < 0:
            verdict = "the baseline is better"
        else:
            verdict = "no difference is detectable"
        lines += ["", f"Verdict on this test set: {verdict} (macro AUPR)."]
    lines += [
        "",
        f"![training curves]({TRAINING_CURVES_PNG})",
        "",
        f"![per-target AUPR]({AUPR_SCATTER_PNG})",
        "",
        f"![ROC and PR]({ROC_PR_PNG})",
        "",
    ]
    return "\n".join(lines)


def render_html(markdown: str, out: Path) -> str:
    """A self-contained page: the Markdown's tables and lists, images inlined as base64."""
    import base64

    body: list[str] = []
    table: list[list[str]] = []

    def flush_table() -> None:
        if table:
            head, *rows = table
            body.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr>"
                + "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                    for r in rows
                )
                + "</table>"
            )
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush_table()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1 : -1]
            if (out / name).exists():
                data = base64.b64encode((out / name).read_bytes()).decode()
                body.append(
                    f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>'
                )
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>DanQ comparison</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )

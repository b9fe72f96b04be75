"""`danq report`: the baseline vs random-dropout comparison, as tables, plots and prose.

Reads what training and evaluation left (build/models/<variant>/history.json,
build/eval/<variant>/{metrics.json, per_target.tsv, curves.json, predictions.npz}) and writes
build/report/: comparison.md and comparison.html, PNG figures (per-target AUPR scatter like
the DanQ paper's figure, training curves of both variants on one chart, ROC and PR curves of a
few named targets) and CSV files that `dvc plots show` renders. The random-dropout minus
baseline difference comes with a paired bootstrap confidence interval on the same test set.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from danq.config import VARIANT_LABELS, Params
from danq.evaluation.metrics import paired_bootstrap_delta


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _history_rows(history: dict) -> list[dict]:
    """Per-epoch rows from history.json (a list of epoch records)."""
    return list(history.get("epochs", []))


def _per_target(path: Path) -> dict[str, list]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {
        "name": [r["name"] for r in rows],
        "category": [r["category"] for r in rows],
        "aupr": np.array([float(r["aupr"]) for r in rows]),
        "auroc": np.array([float(r["auroc"]) for r in rows]),
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _fmt(value: float | None, digits: int = 4) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else (f"{value:.{digits}f}")
    )


def build_report(
    params: Params, variants: list[str], models_dir: str, eval_dir: str, out_dir: str
) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {v: _read_json(Path(eval_dir, v, "metrics.json")) for v in variants}
    histories = {v: _read_json(Path(models_dir, v, "history.json")) for v in variants}
    per_target = {v: _per_target(Path(eval_dir, v, "per_target.tsv")) for v in variants}

    # Training curves: one CSV per variant for dvc plots, one chart for people.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v in variants:
        rows = _history_rows(histories[v])
        _write_csv(
            out / f"history_{v}.csv",
            [{"epoch": r["epoch"], "loss": r["loss"], "val_loss": r["val_loss"]} for r in rows],
        )
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(
            epochs, [r["val_loss"] for r in rows], marker="o", label=VARIANT_LABELS.get(v, v)
        )
        axes[1].plot(epochs, [r["loss"] for r in rows], marker="o", label=VARIANT_LABELS.get(v, v))
        best = histories[v].get("best_epoch")
        if best is not None:
            axes[0].axvline(best, linestyle=":", color=axes[0].lines[-1].get_color())
    axes[0].set(title="validation loss (dotted: best epoch)", xlabel="epoch", ylabel="BCE")
    axes[1].set(title="training loss", xlabel="epoch", ylabel="BCE")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=110)
    plt.close(fig)

    # ROC and PR curves of the named targets.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for v in variants:
        curves = _read_json(Path(eval_dir, v, "curves.json"))
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
            _write_csv(out / f"roc_{v}.csv", [{"fpr": p["fpr"], "tpr": p["tpr"]} for p in first])
            _write_csv(
                out / f"pr_{v}.csv",
                [{"recall": p["recall"], "precision": p["precision"]} for p in first],
            )
    axes[0].plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(title="precision-recall", xlabel="recall", ylabel="precision")
    axes[1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "roc_pr_curves.png", dpi=110)
    plt.close(fig)

    comparison: dict = {"variants": {}, "delta": None}
    for v in variants:
        m, h = metrics[v], histories[v]
        comparison["variants"][v] = {
            "test_macro_auroc": m["overall"]["auroc"],
            "test_macro_aupr": m["overall"]["aupr"],
            "categories": {
                c: {"auroc": s["auroc"], "aupr": s["aupr"]} for c, s in m["categories"].items()
            },
            "epochs_run": h.get("epochs_run"),
            "best_epoch": h.get("best_epoch"),
            "stopped_epoch": h.get("stopped_epoch"),
            "wall_time_s": h.get("wall_time_s"),
        }

    if "baseline" in variants and "random_dropout" in variants:
        a, b = per_target["baseline"], per_target["random_dropout"]
        scatter_rows = [
            {"target": name, "category": cat, "baseline": float(x), "random_dropout": float(y)}
            for name, cat, x, y in zip(a["name"], a["category"], a["aupr"], b["aupr"])
            if not (np.isnan(x) or np.isnan(y))
        ]
        _write_csv(out / "aupr_scatter.csv", scatter_rows)
        fig, ax = plt.subplots(figsize=(5, 5))
        for cat in dict.fromkeys(r["category"] for r in scatter_rows):
            pts = [r for r in scatter_rows if r["category"] == cat]
            ax.scatter(
                [p["baseline"] for p in pts],
                [p["random_dropout"] for p in pts],
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
        fig.savefig(out / "aupr_scatter.png", dpi=110)
        plt.close(fig)

        pa = np.load(Path(eval_dir, "baseline", "predictions.npz"))
        pb = np.load(Path(eval_dir, "random_dropout", "predictions.npz"))
        comparison["delta"] = {
            metric: paired_bootstrap_delta(
                pa["y_true"],
                pa["y_score"],
                pb["y_score"],
                metric=metric,
                n_boot=params.promote.bootstrap_samples,
                confidence=params.promote.confidence,
                seed=params.seed,
                max_rows=20_000,
            )
            for metric in ("auroc", "aupr")
        }
        comparison["targets_better"] = int(
            sum(r["random_dropout"] > r["baseline"] for r in scatter_rows)
        )
        comparison["targets_scored"] = len(scatter_rows)

    markdown = render_markdown(comparison, params)
    (out / "comparison.md").write_text(markdown)
    (out / "comparison.html").write_text(render_html(markdown, out))
    (out / "comparison.json").write_text(json.dumps(comparison, indent=2, default=float) + "\n")
    return comparison


def comparison_table(comparison: dict) -> list[str]:
    lines = [
        "| variant | test macro AUROC | test macro AUPR | epochs run | best epoch | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for v, row in comparison["variants"].items():
        wall = row.get("wall_time_s")
        lines.append(
            f"| {VARIANT_LABELS.get(v, v)} | {_fmt(row['test_macro_auroc'])} | "
            f"{_fmt(row['test_macro_aupr'])} | {row.get('epochs_run', 'n/a')} | "
            f"{row.get('best_epoch', 'n/a')} | {'n/a' if wall is None else f'{wall:.0f} s'} |"
        )
    return lines


def render_markdown(comparison: dict, params: Params) -> str:
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
                f"| {VARIANT_LABELS.get(v, v)} | "
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
        "![training curves](training_curves.png)",
        "",
        "![per-target AUPR](aupr_scatter.png)",
        "",
        "![ROC and PR](roc_pr_curves.png)",
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

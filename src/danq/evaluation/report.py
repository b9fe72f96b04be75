"""`danq report`: the baseline vs random-dropout comparison, as tables, plots and prose.

Reads what training and evaluation left (build/models/<variant>/history.json,
build/eval/<variant>/{metrics.json, per_target.tsv, curves.json, predictions.npz, valid/}) and
writes
build/report/: comparison.md, comparison.html and comparison.json, and PNG figures
(per-target AUPR scatter like the DanQ paper's figure, training curves of both variants on one
chart, ROC and PR curves of a few named targets). The CSV tables that `dvc plots` renders go
to their own folder (`danq report`: <paths.metrics_dir>/plots, committed so that `dvc plots
diff` compares commits). The random-dropout minus baseline difference comes with a paired
block-bootstrap interval on the validation split (what promotion decides on) and on the test
split (reported): an interval between the two trained models, not the two methods. With
several seeds per variant, the seed-paired comparison follows (the one about the methods).
When the PWM-scan oracle of the synthetic data has been scored (<work_dir>/oracle/), its test
scores are the ceiling row and each model's test macro AUROC is given as a share of it.
When `danq explain filters --variant` has run (<work_dir>/explain/<variant>/summary.json), the
report shows per variant how many filters match a JASPAR motif and which of the data's planted
motifs (metadata.json "motifs", synthetic data) some filter matches at q < explain_filters.max_q.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danq import artifacts
from danq.artifacts import VALID_DIR
from danq.config import VARIANT_LABELS, VARIANTS, Params
from danq.evaluation.metrics import paired_bootstrap_delta
from danq.evaluation.resampling import (
    INTERVAL_MEANING,
    block_rows,
    bootstrap_settings,
    seed_comparison,
    verdict_words,
)
from danq.evaluation.seeds import selected_folder

if TYPE_CHECKING:
    from matplotlib.figure import Figure


BASELINE, RANDOM_DROPOUT = VARIANTS  # the comparison: random dropout minus baseline
TRAINING_CURVES_PNG = "training_curves.png"
ROC_PR_PNG = "roc_pr_curves.png"
AUPR_SCATTER_PNG = "aupr_scatter.png"
AUPR_SCATTER_CSV = "aupr_scatter.csv"
SPLITS_COMPARED = (VALID_DIR, "test")  # validation decides, test reports


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
    oracle_dir: str | None = None,
    data_dir: str | None = None,
    explain_dir: str | None = None,
) -> dict[str, Any]:
    """Write the comparison of the variants to out_dir (Markdown, HTML, JSON and figures) and
    the tables that `dvc plots` draws to plots_dir (default: out_dir); returns the comparison.
    oracle_dir: where `danq data oracle` wrote the oracle's metrics.json (absent: no ceiling
    row). data_dir: the data, to resolve promote.bootstrap_block_rows "auto" (None: DeepSEA's
    blocks). explain_dir: where `danq explain filters --variant` wrote each variant's folder
    (absent: no filter section)."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = Path(plots_dir) if plots_dir is not None else out
    metrics = {v: artifacts.read_json(Path(eval_dir, v, artifacts.METRICS_FILE)) for v in variants}
    histories = {
        v: artifacts.read_json(
            Path(models_dir, v, selected_folder(metrics[v]), artifacts.HISTORY_FILE)
        )
        for v in variants
    }
    _plot_training_curves(variants, histories, out, plots)
    _plot_roc_pr(variants, eval_dir, out, plots)
    oracle = read_oracle(oracle_dir)
    comparison: dict[str, Any] = {
        "variants": {v: _variant_summary(metrics[v], histories[v], oracle) for v in variants},
        "oracle": oracle,
        "filters": read_filter_matches(explain_dir, variants, data_dir),
        "delta": None,
        "seed_delta": None,
    }
    if BASELINE in variants and RANDOM_DROPOUT in variants:
        rows_per_block = block_rows(params.promote, data_dir)
        comparison.update(_random_dropout_vs_baseline(params, eval_dir, out, plots, rows_per_block))
        comparison["seed_delta"] = _seed_delta(params, metrics)
    markdown = render_markdown(comparison, params)
    artifacts.write_text(out / artifacts.COMPARISON_MD_FILE, markdown)
    artifacts.write_text(out / artifacts.COMPARISON_HTML_FILE, render_html(markdown, out))
    artifacts.write_text(
        out / artifacts.COMPARISON_JSON_FILE,
        json.dumps(comparison, indent=2, default=float) + "\n",
    )
    return comparison


def read_oracle(oracle_dir: str | None) -> dict[str, Any] | None:
    """The oracle's test metrics (overall and categories), or None when there are none."""
    if not oracle_dir:
        return None
    path = Path(oracle_dir, artifacts.METRICS_FILE)
    try:
        document = artifacts.read_json(path)
        overall = document["overall"]
        return {
            "test_macro_auroc": float(overall["auroc"]),
            "test_macro_aupr": float(overall["aupr"]),
            "categories": {
                c: {"auroc": v.get("auroc"), "aupr": v.get("aupr")}
                for c, v in document.get("categories", {}).items()
            },
        }
    except FileNotFoundError:
        return None
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not an oracle's metrics ({err})") from err


def _base_id(matrix_id: str) -> str:
    """MA0139.2 -> MA0139: the matrix in any JASPAR version."""
    return matrix_id.split(".")[0]


def read_filter_matches(
    explain_dir: str | None, variants: list[str], data_dir: str | None
) -> dict[str, Any] | None:
    """Per variant with a filter report: filters, compared, matching a JASPAR motif, and the
    planted motifs (the data's metadata.json "motifs") some filter matches, any version of the
    matrix; None without any report."""
    if not explain_dir:
        return None
    planted: list[dict[str, Any]] = []
    if data_dir and Path(data_dir, artifacts.DATA_METADATA_FILE).is_file():
        planted = artifacts.read_json(Path(data_dir, artifacts.DATA_METADATA_FILE)).get(
            "motifs", []
        )
    found = {}
    for variant in variants:
        path = Path(explain_dir, variant, artifacts.EXPLAIN_SUMMARY_FILE)
        if not path.is_file():
            continue
        summary = artifacts.read_json(path)
        matched = {_base_id(i) for i in summary["matched_ids"]}
        found[variant] = {
            "n_filters": summary["n_filters"],
            "n_compared": summary["n_compared"],
            "n_matched": summary["n_matched"],
            "max_q": summary["max_q"],
            "planted_recovered": [m["id"] for m in planted if _base_id(m["id"]) in matched],
        }
    return {"planted": planted, "variants": found} if found else None


def filter_lines(filters: dict[str, Any]) -> list[str]:
    """The filter section of the report: JASPAR matches and planted motifs recovered."""
    planted = {m["id"]: m["name"] for m in filters["planted"]}
    lines = [
        "First-layer filters matched to JASPAR (`danq explain filters`, TOMTOM):",
        "",
        "| variant | filters | compared | match a JASPAR motif | planted motifs recovered |",
        "|---|---|---|---|---|",
    ]
    for variant, row in filters["variants"].items():
        recovered = ", ".join(f"{i} ({planted[i]})" for i in row["planted_recovered"])
        share = f"{len(row['planted_recovered'])} of {len(planted)}" if planted else "n/a"
        lines.append(
            f"| {_label(variant)} | {row['n_filters']} | {row['n_compared']} | "
            f"{row['n_matched']} (q < {row['max_q']}) | {share}{': ' if recovered else ''}"
            f"{recovered} |"
        )
    return lines


def _seed_delta(params: Params, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Random dropout minus baseline over seeds (paired by seed index), when there are
    several seeds: per split, the validation one first."""
    seeds_a = metrics[BASELINE].get("seeds", [])
    seeds_b = metrics[RANDOM_DROPOUT].get("seeds", [])
    if len(seeds_a) < 2 or len(seeds_b) < 2:
        return None
    return {
        split: {
            metric: seed_comparison(
                BASELINE,
                [s[split][metric] for s in seeds_a],
                RANDOM_DROPOUT,
                [s[split][metric] for s in seeds_b],
                metric,
                params.promote.confidence,
            )
            for metric in ("auroc", "aupr")
        }
        for split in SPLITS_COMPARED
    }


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


def _variant_summary(
    metrics: dict[str, Any], history: dict[str, Any], oracle: dict[str, Any] | None
) -> dict[str, Any]:
    """One variant's row of the comparison: validation and test metrics and how training
    went; with the oracle, test macro AUROC as a share of the oracle's."""
    validation = metrics.get("validation", {}).get("overall", {})
    auroc = metrics["overall"]["auroc"]
    return {
        "valid_macro_auroc": validation.get("auroc"),
        "valid_macro_aupr": validation.get("aupr"),
        "test_macro_auroc": auroc,
        "test_macro_aupr": metrics["overall"]["aupr"],
        "share_of_oracle_auroc": (
            auroc / oracle["test_macro_auroc"]
            if oracle and auroc is not None and oracle["test_macro_auroc"]
            else None
        ),
        "categories": {
            c: {"auroc": s["auroc"], "aupr": s["aupr"]} for c, s in metrics["categories"].items()
        },
        "seeds": len(metrics.get("seeds", [])) or 1,
        "selected_seed": (metrics.get("selected_seed") or {}).get("seed"),
        "epochs_run": history.get("epochs_run"),
        "best_epoch": history.get("best_epoch"),
        "stopped_epoch": history.get("stopped_epoch"),
        "wall_time_s": history.get("wall_time_s"),
    }


def _predictions(eval_dir: str, variant: str, split: str) -> dict[str, np.ndarray]:
    folder = Path(eval_dir, variant, VALID_DIR) if split == VALID_DIR else Path(eval_dir, variant)
    with np.load(folder / artifacts.PREDICTIONS_FILE) as saved:
        return {"y_true": saved["y_true"], "y_score": saved["y_score"]}


def _random_dropout_vs_baseline(
    params: Params, eval_dir: str, out: Path, plots: Path, rows_per_block: int
) -> dict[str, Any]:
    """Per-target AUPR scatter (test) and the paired block-bootstrap delta of the trained
    random-dropout model minus the trained baseline model, on validation (decides) and test
    (reports): the comparison's delta, targets_better and targets_scored."""
    a = _per_target(Path(eval_dir, BASELINE, artifacts.PER_TARGET_FILE))
    b = _per_target(Path(eval_dir, RANDOM_DROPOUT, artifacts.PER_TARGET_FILE))
    scatter_rows = [
        {"target": name, "category": cat, BASELINE: float(x), RANDOM_DROPOUT: float(y)}
        for name, cat, x, y in zip(a["name"], a["category"], a["aupr"], b["aupr"])
        if not (np.isnan(x) or np.isnan(y))
    ]
    _write_csv(plots / AUPR_SCATTER_CSV, scatter_rows)
    _plot_aupr_scatter(scatter_rows, out / AUPR_SCATTER_PNG)
    delta: dict[str, Any] = {}
    for split in SPLITS_COMPARED:
        pa = _predictions(eval_dir, BASELINE, split)
        pb = _predictions(eval_dir, RANDOM_DROPOUT, split)
        delta[split] = {}
        for metric in ("auroc", "aupr"):
            try:
                result = paired_bootstrap_delta(
                    pa["y_true"],
                    pa["y_score"],
                    pb["y_score"],
                    metric=metric,
                    seed=params.seed,
                    **bootstrap_settings(params.promote, rows_per_block),
                )
            except ValueError as err:  # too few rows or positives for these blocks
                delta[split][metric] = {"error": str(err)}
                continue
            result["n_targets_compared"] = len(result.pop("targets"))
            result["verdict"] = verdict_words(
                result["ci_low"], result["ci_high"], RANDOM_DROPOUT, BASELINE
            )
            delta[split][metric] = result
    return {
        "delta": delta,
        "block_rows": rows_per_block,
        "interval": INTERVAL_MEANING,
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
    """Validation (decides) and test (reports) macro metrics per variant, the oracle's test
    ceiling when there is one, and each model's test macro AUROC as a share of it."""
    oracle = comparison.get("oracle")
    lines = [
        "| variant | valid macro AUROC | valid macro AUPR | test macro AUROC | test macro AUPR "
        + ("| test AUROC / oracle " if oracle else "")
        + "| seeds | epochs run | best epoch | wall time |",
        "|---|---|---|---|---|" + ("---|" if oracle else "") + "---|---|---|---|",
    ]
    for v, row in comparison["variants"].items():
        wall = row.get("wall_time_s")
        share = f"| {_fmt(row.get('share_of_oracle_auroc'), 3)} " if oracle else ""
        seeds = row.get("seeds", 1)
        seed_text = f"{seeds} (best: {row['selected_seed']})" if seeds > 1 else "1"
        lines.append(
            f"| {_label(v)} | {_fmt(row.get('valid_macro_auroc'))} | "
            f"{_fmt(row.get('valid_macro_aupr'))} | {_fmt(row['test_macro_auroc'])} | "
            f"{_fmt(row['test_macro_aupr'])} {share}| {seed_text} | "
            f"{row.get('epochs_run', 'n/a')} | {row.get('best_epoch', 'n/a')} | "
            f"{'n/a' if wall is None else f'{wall:.0f} s'} |"
        )
    if oracle:
        lines.append(
            "| PWM-scan oracle (knows the planted grammar; no training) | n/a | n/a | "
            f"{_fmt(oracle['test_macro_auroc'])} | {_fmt(oracle['test_macro_aupr'])} | 1.000 "
            "| n/a | n/a | n/a | n/a |"
        )
    return lines


# With one seed per variant the row intervals above cover the test rows, not training: two
# machines (or thread counts) train different models, so the verdict on the methods can only be
# "within noise", the same everywhere.
ONE_SEED_METHOD_VERDICT = (
    "Verdict on the methods, random dropout vs baseline: within training noise. One seed per "
    "variant cannot tell a difference between the methods from seed-to-seed spread, and another "
    "machine trains different models, which may reverse the verdicts on the trained models "
    "above; train.seeds > 1 measures the spread."
)


def verdict_lines(comparison: dict[str, Any], confidence: float) -> list[str]:
    """The comparison in words: the trained models on validation (decides) and test
    (reports), then over seeds when there are several. Empty without both variants."""
    delta = comparison.get("delta")
    if not delta:
        return []
    level = int(round(confidence * 100))
    lines = []
    for split in SPLITS_COMPARED:
        role = "decides promotion" if split == VALID_DIR else "reported only"
        d = delta[split]["aupr"]
        if "error" in d:
            lines.append(f"Verdict on {split} ({role}): no interval ({d['error']}).")
            continue
        lines.append(
            f"Verdict on {split} ({role}), trained random-dropout model minus trained baseline "
            f"model: "
            f"macro AUPR {d['delta']:+.4f} ({level}% block-bootstrap CI "
            f"{_fmt(d['ci_low'])} to {_fmt(d['ci_high'])}), macro AUROC "
            f"{delta[split]['auroc']['delta']:+.4f}: {d['verdict']}."
        )
    seed_delta = comparison.get("seed_delta")
    if seed_delta:
        d = seed_delta[VALID_DIR]["aupr"]
        lines.append(
            f"Verdict over {d['n_seeds']} seeds (paired by seed), random dropout minus "
            f"baseline on validation: macro AUPR {d['delta']:+.4f} ({level}% paired t CI "
            f"{_fmt(d['ci_low'])} to {_fmt(d['ci_high'])}): {d['verdict']}."
        )
    else:
        lines.append(ONE_SEED_METHOD_VERDICT)
    return lines


def render_markdown(comparison: dict[str, Any], params: Params) -> str:
    lines = ["# Baseline DanQ vs random-dropout DanQ", ""]
    lines += comparison_table(comparison)
    lines += [
        "",
        "Validation decides (promotion's floors, the champion comparison, the choice between "
        "candidates); test is reported only.",
    ]
    variants = comparison["variants"]
    categories = sorted({c for row in variants.values() for c in row["categories"]})
    oracle = comparison.get("oracle")
    if categories:
        lines += [
            "",
            "Test macro AUPR by target category:",
            "",
            "| variant | " + " | ".join(categories) + " |",
            "|---|" + "---|" * len(categories),
        ]
        rows = [(_label(v), row["categories"]) for v, row in variants.items()]
        if oracle:
            rows.append(("PWM-scan oracle", oracle["categories"]))
        for label, by_category in rows:
            lines.append(
                f"| {label} | "
                + " | ".join(_fmt((by_category.get(c) or {}).get("aupr")) for c in categories)
                + " |"
            )
    delta = comparison.get("delta")
    if delta:
        level = int(round(params.promote.confidence * 100))
        lines += [
            "",
            "Trained random-dropout model minus trained baseline model on the same sequences "
            f"(paired block bootstrap, blocks of {comparison['block_rows']} row(s), {level}% CI):",
            "",
        ]
        for split in SPLITS_COMPARED:
            role = "decides" if split == VALID_DIR else "reported only"
            for metric, d in delta[split].items():
                if "error" in d:
                    lines.append(f"- {split} ({role}), macro {metric.upper()}: {d['error']}")
                    continue
                lines.append(
                    f"- {split} ({role}), macro {metric.upper()}: {d['delta']:+.4f} "
                    f"({_fmt(d['ci_low'])} to {_fmt(d['ci_high'])}; "
                    f"{d['n_targets_compared']} targets): {d['verdict']}"
                )
        lines.append(
            f"- random dropout has the higher test AUPR on {comparison['targets_better']} "
            f"of {comparison['targets_scored']} targets"
        )
        lines += ["", f"What the interval means: {comparison['interval']}."]
        for line in verdict_lines(comparison, params.promote.confidence):
            lines += ["", line]
    if comparison.get("filters"):
        lines += ["", *filter_lines(comparison["filters"])]
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

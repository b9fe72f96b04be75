"""The machine, the versions and the figures as benchmarks/results.json and results.md."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.records import Figure

PACKAGES = ("danq", "tensorflow", "keras", "torch", "numpy", "scikit-learn", "h5py")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gb": round(ram_bytes() / 2**30, 1),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _spread(summary) -> str:
    return f"{_number(summary.min)} / {_number(summary.median)} / {_number(summary.max)}"


def _verdict(figure: Figure) -> str:
    met = figure.target_met
    if met is None:
        return ""
    return f"{'met' if met else 'MISSED'} (>= {figure.target:.2f}x)"


def figure_rows(figures: list[Figure]) -> list[str]:
    rows = [
        "| figure | unit | ours (min / median / max) | reference (min / median / max) "
        "| ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        ref = _spread(f.reference) if f.reference else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        rows.append(
            f"| {f.name} | {f.unit} | {_spread(f.ours)} | {ref} | {ratio} | {_verdict(f)} |"
        )
    return rows


def figure_notes(figures: list[Figure]) -> list[str]:
    lines = []
    for f in figures:
        text = f"- **{f.name}**: ours = {f.ours_label}"
        if f.reference is not None:
            text += f"; reference = {f.reference_label}"
        if f.notes:
            text += f". {f.notes}"
        lines.append(text)
    return lines


def write_results(out_dir: Path, run: dict[str, Any], figures: list[Figure]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**run, "figures": [f.to_json() for f in figures]}
    (out_dir / "results.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    m = run["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{run['command']}` on {run['finished']} in {run['duration_s']:,.0f} s.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM"
        + (f", GPUs: {', '.join(m['gpus'])}" if m["gpus"] else ", no GPU"),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        f"- load average at start / end: {run['load_start']} / {run['load_end']}",
        f"- sizes: {run['settings']}",
        "",
        "Ratios are oriented so that > 1 means ours is better (ours/reference for rates, "
        "reference/ours for times and memory), from medians over the repeats.",
        "",
        *figure_rows(figures),
        "",
        *figure_notes(figures),
        "",
    ]
    (out_dir / "results.md").write_text("\n".join(lines))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

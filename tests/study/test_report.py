"""danq.study.analysis and danq.study.report on made-up run records: no training; and the
study's record of its tracking server, without the password."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import mlflow
import numpy as np
import pytest

from danq import tracking
from danq.config import load_params
from danq.study.analysis import analyse, first_within
from danq.study.plan import study_arms
from danq.study.report import PLOTS, render_markdown, write_report
from danq.study.runner import open_study

from ..deployed_registry import AuthServer

# Per seed, the random arm's loss falls faster to the same floor (by a margin that varies
# with the seed): it reaches the common target in fewer epochs at every seed.
SPEEDS = {"baseline-b32": 0.7, "run-b32": 0.45}
STOP = 20


def made_up_records() -> list[dict]:
    records = []
    for arm, speed in SPEEDS.items():
        for seed_index in range(4):
            floor = 0.3 + 0.01 * seed_index
            rate = speed + (0.06 * seed_index if arm == "run-b32" else 0.0)
            val_loss = [floor + 0.5 * rate**epoch for epoch in range(STOP)]
            records.append(
                {
                    "arm": arm,
                    "label": arm,
                    "schedule": arm.split("-")[0],
                    "batch_size": 32,
                    "seed_index": seed_index,
                    "seed": 5 + seed_index,
                    "run_id": f"{arm}-{seed_index}",
                    "early_stopped": True,
                    "epochs_run": STOP,
                    "samples_per_epoch": 640,
                    "best_epoch": STOP,
                    "best_val_loss": min(val_loss),
                    "time_to_best_s": 2.0 * STOP,
                    "wall_time_s": 2.5 * STOP,
                    "test_macro_auroc": 0.7 + 0.1 * speed,
                    "test_macro_aupr": 0.2 + 0.01 * seed_index,
                    "curves": {
                        "loss": val_loss,
                        "val_loss": val_loss,
                        "val_auroc": [0.5 + 0.02 * e for e in range(STOP)],
                    },
                }
            )
    return records


@pytest.fixture
def params(tmp_path: Path):
    overrides = [
        "seed=11",
        "study.arms=[baseline, run]",
        "study.batch_sizes=[32]",
        "study.seeds=4",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]
    return load_params(tmp_path / "none.yaml", overrides)


def test_analysis_pairs_each_random_arm_with_its_baseline(params) -> None:
    records = made_up_records()
    analysis = analyse(params, study_arms(params), records)
    assert list(analysis["arms"]) == ["baseline-b32", "run-b32"]
    primary = analysis["primary"]
    assert (primary["arm"], primary["baseline"], primary["metric"]) == (
        "run-b32",
        "baseline-b32",
        "epochs_to_target",
    )
    # The common target of each seed is the baseline's best (the worse one), x 1.003.
    for seed in range(4):
        base, arm = (r for r in records if r["seed_index"] == seed)
        target = max(base["best_val_loss"], arm["best_val_loss"]) * 1.003
        expected = first_within(arm["curves"]["val_loss"], target) - first_within(
            base["curves"]["val_loss"], target
        )
        assert primary["differences"][seed] == expected < 0
    assert primary["difference"] == pytest.approx(np.mean(primary["differences"]))
    assert primary["p_value"] == pytest.approx(2 / 16)  # 4 seeds, all one way
    assert primary["ci_low"] <= primary["difference"] <= primary["ci_high"]
    # Secondary: the other endpoints of the one random arm, Holm-adjusted.
    assert [c["metric"] for c in analysis["secondary"]] == [
        "epochs_to_own_best",
        "best_val_loss",
        "test_macro_auroc",
    ]
    for c in analysis["secondary"]:
        assert c["p_value"] <= c["p_holm"] <= 1.0
    power = analysis["power"]
    assert power["n_seeds"] == 4
    assert power["paper_effect_epochs"] == pytest.approx(
        (1 - 20 / 27) * analysis["arms"]["baseline-b32"]["epochs_to_target"]["mean"]
    )
    markdown = render_markdown(analysis)
    lines = markdown.splitlines()
    # The primary comparison comes first, with its estimate, paired t CI and exact p.
    primary_line = next(line for line in lines if line.startswith("- "))
    assert lines.index(primary_line) < lines.index(next(x for x in lines if x.startswith("|")))
    assert "random, per run (batch 32) vs the baseline, epochs to the common target" in markdown
    assert "95% paired t CI" in primary_line and "exact sign-flip p = 0.125" in primary_line
    assert "no detectable difference at alpha 0.05" in primary_line
    assert "Holm p" in markdown and "Power, from the observed SD" in markdown
    assert "What this study can say" in markdown and "cannot say" in markdown
    assert markdown.count("| random, per run (batch 32) |") == 1 + 3  # arm table, secondary


def test_report_files_and_parent_run(params, tmp_path: Path, capsys) -> None:
    uri = params.mlflow.tracking_uri
    client = tracking.client(uri)
    experiment = client.create_experiment("study", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment)
    study = {"parent_run_id": parent.info.run_id, "tracking_uri": uri}
    out = tmp_path / "study"
    records = made_up_records()
    global_uri = mlflow.get_tracking_uri()

    write_report(params, study, study_arms(params), records, out)

    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["primary"]["arm"] == "run-b32"
    assert json.loads((out / "runs.json").read_text()) == records
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and "curves" not in rows[0]
    assert rows[0]["epochs_to_target_censored"] == "False"
    assert int(rows[0]["samples_to_target"]) == 640 * int(rows[0]["epochs_to_target"])
    for name in ("report.md", "report.html", *PLOTS):
        assert (out / name).stat().st_size > 0
    assert "data:image/png;base64," in (out / "report.html").read_text()
    printed = capsys.readouterr().out
    assert "epochs to the common target" in printed and "Power" in printed
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["primary.difference"] == pytest.approx(
        analysis["primary"]["difference"]
    )
    assert "run-b32.best_val_loss.p_holm" in run.data.metrics
    assert "baseline-b32.epochs_to_target.mean" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/report.md", "study/runs.csv", "study/convergence.png"} <= logged
    assert mlflow.get_tracking_uri() == global_uri


def test_study_json_keeps_no_password_and_the_report_still_reaches_the_server(
    auth_registry: AuthServer, tiny_shards: Path, tmp_path: Path, capsys
) -> None:
    """study.json is committed with the report: the tracking URI's password is redacted
    there, and the report is logged to the parent run through the URI of the params."""
    user, password = auth_registry.admin
    server = urlsplit(auth_registry.uri).netloc
    params = load_params(
        tmp_path / "none.yaml",
        [
            "seed=11",
            "study.arms=[baseline, run]",
            "study.batch_sizes=[32]",
            "study.seeds=4",
            f"study.experiment=study-{uuid4().hex[:8]}",
            f"mlflow.tracking_uri=http://{user}:{password}@{server}",
        ],
    )
    out = tmp_path / "study"
    open_study(params, str(tiny_shards), out)
    text = (out / "study.json").read_text()
    assert password not in text
    study = json.loads(text)
    assert study["tracking_uri"] == f"http://{user}:***@{server}"

    write_report(params, study, study_arms(params), made_up_records(), out)

    assert password not in capsys.readouterr().out
    with auth_registry.login(user, password):
        parent = tracking.client(auth_registry.uri).get_run(study["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert "primary.p_value" in parent.data.metrics

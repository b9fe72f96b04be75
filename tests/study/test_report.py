"""danq.study.analysis and danq.study.report on made-up run records: no training; and the
study's record of its tracking server, without the password."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import mlflow
import numpy as np
import pytest

from danq import tracking
from danq.config import load_params
from danq.study.analysis import analyse, bootstrap_mean_difference, describe, spread_test
from danq.study.plan import study_arms
from danq.study.report import PLOTS, render_markdown, write_report
from danq.study.runner import open_study

from ..deployed_registry import AuthServer

# Epochs to early stop per seed: the random arm stops later in every run.
STOPS = {"baseline-b32": [3, 4, 3, 5], "epoch-b32": [6, 7, 6, 8]}


def made_up_records() -> list[dict]:
    records = []
    for arm, stops in STOPS.items():
        for seed_index, stop in enumerate(stops):
            val_loss = [1.0 / (epoch + 1) + 0.01 * seed_index for epoch in range(stop)]
            records.append(
                {
                    "arm": arm,
                    "label": arm,
                    "schedule": arm.split("-")[0],
                    "batch_size": 32,
                    "seed_index": seed_index,
                    "seed": 5 + seed_index,
                    "run_id": f"{arm}-{seed_index}",
                    "early_stopped": stop < 8,
                    "epochs_to_stop": stop,
                    "best_epoch": stop - 1,
                    "best_val_loss": min(val_loss),
                    "time_to_best_s": 2.0 * (stop - 1),
                    "wall_time_s": 2.5 * stop,
                    "test_macro_auroc": 0.7 + 0.01 * stop,
                    "test_macro_aupr": 0.2 + 0.01 * seed_index,
                    "curves": {
                        "loss": val_loss,
                        "val_loss": val_loss,
                        "val_auroc": [0.5 + 0.02 * e for e in range(stop)],
                    },
                }
            )
    return records


@pytest.fixture
def params(tmp_path: Path):
    overrides = [
        "seed=11",
        "study.arms=[baseline, epoch]",
        "study.batch_sizes=[32]",
        "study.seeds=4",
        "study.bootstrap_samples=500",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]
    return load_params(tmp_path / "none.yaml", overrides)


def test_statistics_by_hand() -> None:
    summary = describe(np.array([3.0, 4.0, 3.0, 5.0]))
    assert summary == pytest.approx(
        {"mean": 3.75, "var": 11 / 12, "sd": math.sqrt(11 / 12)}
        | {
            "min": 3.0,
            "max": 5.0,
        }
    )
    assert math.isnan(describe(np.array([2.0]))["var"])
    low, high = bootstrap_mean_difference(np.array([1.0, 1.0]), np.array([3.0, 3.0]), 200, 0.9, 0)
    assert low == high == 2.0
    assert math.isnan(spread_test(np.array([1.0, 2.0]), np.array([3.0, 4.0])))  # two runs
    assert math.isnan(spread_test(np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0])))


def test_analysis_compares_each_random_arm_with_its_baseline(params) -> None:
    analysis = analyse(params, study_arms(params), made_up_records())
    assert list(analysis["arms"]) == ["baseline-b32", "epoch-b32"]
    assert analysis["arms"]["epoch-b32"]["n_early_stopped"] == 3
    (comparison,) = analysis["comparisons"]
    stop = comparison["metrics"]["epochs_to_stop"]
    assert stop["difference"] == pytest.approx(6.75 - 3.75)
    assert stop["mann_whitney_u"] == 16.0  # the arm's every run above every baseline run
    assert 0 < stop["ci_low"] <= stop["ci_high"]
    assert analysis["bootstrap_seed"] == 11
    markdown = render_markdown(analysis)
    assert "random, per epoch (batch 32): early stop at epoch 6.8 vs 3.8" in markdown
    assert "later than the baseline." in markdown
    assert markdown.count("| baseline (batch 32) |") == 2  # summary and spread tables


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
    assert analysis["comparisons"][0]["arm"] == "epoch-b32"
    assert json.loads((out / "runs.json").read_text()) == records
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and "curves" not in rows[0] and rows[0]["epochs_to_stop"] == "3"
    for name in ("report.md", "report.html", *PLOTS):
        assert (out / name).stat().st_size > 0
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "early stop at epoch" in capsys.readouterr().out
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["epoch-b32.epochs_to_stop.difference"] == pytest.approx(3.0)
    assert "baseline-b32.epochs_to_stop.mean" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/report.md", "study/runs.csv", "study/epochs_to_stop.png"} <= logged
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
            "study.arms=[baseline, epoch]",
            "study.batch_sizes=[32]",
            "study.seeds=4",
            "study.bootstrap_samples=500",
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
    assert "epoch-b32.epochs_to_stop.difference" in parent.data.metrics

"""`danq study` end to end on tiny data: resume, MLflow grouping, and the analysis checked
against statistics computed here by hand from the recorded per-run values."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from danq.cli.main import main
from danq.config import load_params
from danq.data.shards import read_manifest

# Every test here trains a study (or shares the module's trained one).
pytestmark = pytest.mark.slow

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
# 2 seeds x 2 arms at one batch size; patience 1 so that some runs stop early.
TINY_STUDY = dict(
    seeds=2,
    arms=["baseline", "epoch"],
    primary="epoch",
    batch_sizes=[32],
    model=TINY_MODEL,
    max_epochs=4,
    patience=1,
    learning_rate=0.05,
    experiment="danq-study-test",
)
ARMS = ("baseline-b32", "epoch-b32")


def write_params(folder: Path, data: Path, tracking_uri: str, **study: object) -> Path:
    raw = {
        "seed": 11,
        "paths": {"data_dir": str(data), "work_dir": str(folder / "build")},
        "train": {"shuffle_buffer": 100, "seed": 5},
        "mlflow": {"tracking_uri": tracking_uri},
        "study": {**TINY_STUDY, **study},
    }
    folder.mkdir(exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def study_command(params: Path, shards: Path, out: Path, *extra: str) -> int:
    """`danq study`; the runs go to <work_dir>/study-runs."""
    return main(
        ["--params", str(params), "study", "--shards", str(shards), "--out", str(out), *extra]
    )


def record_files(study: dict) -> list[Path]:
    return sorted((study["root"] / "build" / "study-runs").glob("*/*/*/record.json"))


@pytest.fixture(scope="module")
def study(tiny_data, tiny_shards, tmp_path_factory) -> dict:
    """A tiny study stopped after its first run, then run again to the end in two workers."""
    root = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{root}/mlflow.db"
    params = write_params(root, tiny_data, uri)
    out = root / "study"

    assert study_command(params, tiny_shards, out, "--max-runs", "1") == 0
    (first,) = (root / "build" / "study-runs").glob("*/*/*/record.json")
    after_stop = {
        "record": first,
        "report": (out / "report.md").exists(),
        "first_record": first.read_text(),
        "first_mtime": first.stat().st_mtime_ns,
    }
    # The other three runs in two worker processes.
    assert study_command(params, tiny_shards, out, "--workers", "2") == 0
    return {"root": root, "uri": uri, "params": params, "out": out, "after_stop": after_stop}


def runs(study: dict) -> list[dict]:
    return json.loads((study["out"] / "runs.json").read_text())


def values(records: list[dict], arm: str, metric: str) -> list[float]:
    return [float(r[metric]) for r in records if r["arm"] == arm]


def test_a_stopped_study_resumes_with_only_the_missing_runs(study):
    stopped = study["after_stop"]
    first = stopped["record"]
    assert first.parts[-3:] == ("baseline-b32", "seed0", "record.json")
    assert not stopped["report"]  # written once every run is done
    assert len(record_files(study)) == 4
    assert first.read_text() == stopped["first_record"]  # not trained again
    assert first.stat().st_mtime_ns == stopped["first_mtime"]
    records = runs(study)
    assert sorted((r["arm"], r["seed_index"]) for r in records) == [
        (arm, seed) for arm in ARMS for seed in (0, 1)
    ]
    assert len({r["run_id"] for r in records}) == 4
    # The two seeds train with train.seed + i, the same in both arms.
    assert sorted({r["seed"] for r in records}) == [5, 6]


def test_workers_get_the_tracking_uri_from_their_environment_not_a_file(study):
    """The URI may hold a password: the workers' task files leave it out of their params (the
    study record in them has it redacted), and the workers, whose runs are in the study's
    store (test below), read it from MLFLOW_TRACKING_URI."""
    tasks = sorted((study["root"] / "build" / "study-runs").glob("*/workers/worker*.json"))
    assert len(tasks) == 2
    for task in tasks:
        assert json.loads(task.read_text())["params"]["mlflow"]["tracking_uri"] is None


def test_runs_are_mlflow_children_of_one_parent_run(study):
    client = mlflow.MlflowClient(study["uri"])
    experiment = client.get_experiment_by_name(TINY_STUDY["experiment"])
    all_runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in all_runs if r.data.tags.get("danq.study.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(all_runs) - 1 == 4  # no run trained twice
    by_id = {r["run_id"]: r for r in runs(study)}
    for child in children:
        record = by_id[child.info.run_id]
        assert child.data.tags["danq.study.arm"] == record["arm"]
        assert child.data.metrics["test_macro_auroc"] == pytest.approx(record["test_macro_auroc"])
        assert child.data.params["train.batch_size"] == "32"
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/report.md", "study/report.html", "study/analysis.json"} <= artifacts
    assert "primary.p_value" in parent.data.metrics


def hand_sign_flip_p(differences: list[float]) -> float:
    """Two-sided sign-flip p over all sign patterns, one pattern at a time."""
    observed = abs(sum(differences))
    patterns = list(itertools.product((1, -1), repeat=len(differences)))
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, differences))) >= observed - 1e-12
        for signs in patterns
    )
    return extreme / len(patterns)


def test_analysis_matches_hand_computed_statistics(study, tiny_shards):
    records = runs(study)
    one_pass = read_manifest(str(tiny_shards / "train")).n_source_samples
    analysis = json.loads((study["out"] / "analysis.json").read_text())
    primary = analysis["primary"]
    assert (primary["arm"], primary["baseline"]) == ("epoch-b32", "baseline-b32")
    by_run = {(r["arm"], r["seed_index"]): r for r in analysis["runs"]}
    for r in records:
        curve = r["curves"]["val_loss"]
        # The curves, best loss and epochs the endpoints are computed from.
        assert r["epochs_run"] == len(curve)
        if not r["early_stopped"]:
            assert r["epochs_run"] == TINY_STUDY["max_epochs"]
        assert r["best_epoch"] == int(np.argmin(curve)) + 1
        assert r["best_val_loss"] == pytest.approx(min(curve))
        assert r["samples_per_epoch"] == one_pass  # study.samples_per_epoch null: one pass
        # Epochs to within 0.3 % of the run's own best, censored when it never stopped.
        ends = by_run[(r["arm"], r["seed_index"])]
        own = next(e for e, v in enumerate(curve, 1) if v <= min(curve) * 1.003)
        assert ends["epochs_to_own_best"] == own
        assert ends["epochs_to_own_best_censored"] == (not r["early_stopped"])
    for seed in (0, 1):
        pair = [r for r in records if r["seed_index"] == seed]
        stopped = [r["best_val_loss"] for r in pair if r["early_stopped"]]
        target = max(stopped) * 1.003 if stopped else None
        for r in pair:
            ends = by_run[(r["arm"], seed)]
            assert ends["target_loss"] == (pytest.approx(target) if stopped else None)
            hit = [e for e, v in enumerate(r["curves"]["val_loss"], 1) if stopped and v <= target]
            assert ends["epochs_to_target"] == (hit[0] if hit else TINY_STUDY["max_epochs"] + 1)
            assert ends["epochs_to_target_censored"] == (not hit)
    # Paired by seed on the metrics that are never censored: the mean per-seed difference and
    # the sign-flip p over the 4 sign patterns of 2 seeds.
    for c in analysis["secondary"]:
        if c["metric"] not in ("best_val_loss", "test_macro_auroc"):
            continue
        base = {r["seed_index"]: r[c["metric"]] for r in records if r["arm"] == "baseline-b32"}
        arm = {r["seed_index"]: r[c["metric"]] for r in records if r["arm"] == "epoch-b32"}
        differences = [arm[i] - base[i] for i in (0, 1)]
        assert c["differences"] == pytest.approx(differences)
        assert c["difference"] == pytest.approx(sum(differences) / 2)
        assert c["p_value"] == pytest.approx(hand_sign_flip_p(differences))
        assert c["p_value"] <= c["p_holm"] <= min(1.0, 3 * c["p_value"])


def test_report_files_show_every_arm(study):
    out = study["out"]
    for name in ("report.md", "report.html", "runs.csv", "convergence.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "val_loss_curves.png").exists() and (out / "val_auroc_curves.png").exists()
    markdown = (out / "report.md").read_text()
    assert "random, per epoch (batch 32) vs the baseline, epochs to the common target" in markdown
    assert markdown.count("| baseline (batch 32) |") == 1  # the per-arm table
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert len((out / "runs.csv").read_text().splitlines()) == 5


def test_a_study_folder_refuses_other_settings(study, tiny_shards, capsys):
    params = write_params(study["root"] / "other", Path("."), study["uri"], patience=2)
    code = study_command(params, tiny_shards, study["out"])
    assert code == 1
    assert "study.patience: 1 there, 2 now" in capsys.readouterr().err


def test_a_copied_study_folder_gets_a_parent_run_in_the_new_tracking_store(
    study, tiny_shards, tmp_path
):
    """A committed report's study.json names a parent run of another store: the same study
    in a fresh clone starts a new parent run rather than logging to a run that is not there."""
    import shutil

    from danq.study.runner import open_study

    copied = tmp_path / "study"
    shutil.copytree(study["out"], copied)
    old = json.loads((copied / "study.json").read_text())
    uri = f"sqlite:///{tmp_path}/fresh.db"
    params = load_params(study["params"], [f"mlflow.tracking_uri={uri}"])
    opened = open_study(params, str(tiny_shards), copied)
    assert opened["fingerprint"] == old["fingerprint"]
    assert opened["parent_run_id"] != old["parent_run_id"]
    assert json.loads((copied / "study.json").read_text()) == opened
    parent = mlflow.MlflowClient(uri).get_run(opened["parent_run_id"])
    assert parent.data.tags["danq.study.role"] == "parent"
    # In its own store the study keeps its parent run.
    params = load_params(study["params"])
    assert (
        open_study(params, str(tiny_shards), study["out"])["parent_run_id"]
        == (json.loads((study["out"] / "study.json").read_text())["parent_run_id"])
    )


def test_a_killed_study_resumes_its_interrupted_run_from_the_checkpoint(
    tiny_data, tiny_shards, tmp_path
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Patience 12 of 12 epochs: the first run is still training when it is killed.
    params = write_params(tmp_path, tiny_data, uri, max_epochs=12, patience=12)
    out = tmp_path / "study"
    command = [sys.executable, "-m", "danq.cli", "--params", str(params), "study"]
    command += ["--shards", str(tiny_shards), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = "build/study-runs/*/baseline-b32/seed0/checkpoint/state.json"
    deadline = time.monotonic() + 240
    while True:
        state = next(tmp_path.glob(pattern), None)
        if state is not None and json.loads(state.read_text())["epoch"] >= 1:
            break
        assert process.poll() is None and time.monotonic() < deadline, "no epoch checkpointed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = json.loads(state.read_text())
    assert saved["epoch"] < 12

    assert study_command(params, tiny_shards, out, "--max-runs", "1") == 0
    run = state.parents[1]
    history = json.loads((run / "history.json").read_text())
    assert history["resumed_at_epochs"] == [saved["epoch"]]
    assert len(history["epochs"]) == 12
    record = json.loads((run / "record.json").read_text())
    assert record["run_id"] == saved["run_id"]  # the same MLflow run, continued

"""DVC: data.dvc tracks exactly what `danq data synth` writes with the default params, a failing
gate stops `dvc repro`, and the metrics DVC compares across commits are committed files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # writes the full default data set
def test_dvc_status_is_clean_after_generating_the_default_data(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    run("git", "init", "-q", cwd=work)
    shutil.copytree(REPO / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    for name in ("data.dvc", "params.yaml", ".gitignore"):
        shutil.copy(REPO / name, work / name)
    recorded = (work / "data.dvc").read_text()

    synth = run(str(BIN / "danq"), "data", "synth", cwd=work)
    assert synth.returncode == 0, synth.stderr
    add = run(str(BIN / "dvc"), "add", "data", cwd=work)
    assert add.returncode == 0, add.stderr
    # Same bytes, same hash: data.dvc is unchanged and the workspace matches it.
    assert (work / "data.dvc").read_text() == recorded
    status = run(str(BIN / "dvc"), "status", "data.dvc", cwd=work)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_data_dvc_tracks_only_the_raw_folder() -> None:
    outs = yaml.safe_load((REPO / "data.dvc").read_text())["outs"]
    assert [o["path"] for o in outs] == ["data"]
    assert outs[0]["nfiles"] == 4  # train.mat, valid.mat, test.mat, metadata.json


@pytest.mark.slow  # runs the pipeline's first stage with dvc repro
def test_a_failing_validation_stops_dvc_repro(tmp_path: Path, tiny_data: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    run("git", "init", "-q", cwd=work)
    shutil.copytree(REPO / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(tiny_data, work / "data")
    # One defect: a label that is not 0/1 in test.mat.
    from danq.io.deepsea import open_split, write_split

    with open_split(work / "data" / "test.mat") as reader:
        x, y = reader.read(0, reader.n)
    y[5, 2] = 2
    write_split(work / "data" / "test.mat", "test", x, y)

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    repro = subprocess.run(
        [str(BIN / "dvc"), "repro", "prepare"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert repro.returncode != 0
    assert "validate" in repro.stdout + repro.stderr
    assert "labels are not 0 or 1" in repro.stderr
    assert not (work / "build" / "shards").exists()


def test_metrics_and_plot_tables_are_committed_files_outside_build() -> None:
    """`dvc metrics diff main` and `dvc plots diff main` read main's files from git: they must
    be git-tracked (cache: false), outside the git-ignored work folder."""
    from danq.config import VARIANTS, load_params

    assert load_params(REPO / "params.yaml").paths.metrics_dir == "metrics"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["evaluate"]["do"]["metrics"] == [{"metrics/${item}.json": {"cache": False}}]
    assert {"metrics/plots": {"cache": False}} in stages["report"]["outs"]
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    tables = [
        table
        for plot in plots
        if isinstance(plot, dict)  # a titled plot of CSV columns, not an image
        for spec in plot.values()
        for table in spec["y"]
    ]
    assert len(tables) == 7 and all(table.startswith("metrics/plots/") for table in tables)

    committed = [f"metrics/{variant}.json" for variant in VARIANTS] + tables
    ignored = run("git", "check-ignore", "--no-index", *committed, cwd=REPO)
    assert ignored.returncode == 1, f"git-ignored: {ignored.stdout}"

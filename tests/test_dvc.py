"""DVC: data.dvc tracks exactly what `danq data synth` writes with the default params."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)


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

"""The `danq` command line: every subcommand has help, bad settings fail at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from danq.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def subcommands(parser=None, prefix=()) -> list[tuple[str, ...]]:
    import argparse

    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found.extend(subcommands(sub, (*prefix, name)))
    return found


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = subcommands()
    assert ("data", "synth") in commands and ("data", "prepare") in commands
    assert ("data", "fetch-deepsea") in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: danq" in capsys.readouterr().out


def test_invalid_setting_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--params", str(REPO / "params.yaml"), "-S", "synth.n_train=-1", "data", "synth"])
    assert code == 2
    assert "synth.n_train" in capsys.readouterr().err


@pytest.mark.slow  # three commands in subprocesses
def test_synth_info_prepare_from_the_command_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "synth: {n_train: 50, n_valid: 20, n_test: 20, seq_len: 150}\n"
        f"paths: {{data_dir: {tmp_path / 'data'}, work_dir: {tmp_path / 'build'}}}\n"
    )

    def danq(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "danq.cli", "--params", str(params), *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )

    synth = danq("data", "synth")
    assert synth.returncode == 0, synth.stderr
    assert "train 100, valid 40, test 40 sequences of 150 bp" in synth.stdout
    info = danq("data", "info")
    assert info.returncode == 0 and "MATLAB v7.3 (HDF5)" in info.stdout
    prepare = danq("data", "prepare", "--quiet")
    assert prepare.returncode == 0, prepare.stderr
    assert "train: 100 samples x 150 bp, 16 targets" in prepare.stdout
    assert (tmp_path / "build" / "shards" / "test" / "manifest.json").exists()

"""The fuzz targets in `make test`: a short run of each, the kept crash inputs replayed, and
proof that the harness reports a reader that fails with anything but the project's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from danq.errors import DataError
from tests.fuzz.__main__ import REPO, main
from tests.fuzz.targets import TARGETS, FuzzCrash, Target, check

SHORT_RUN_SECONDS = 4
CRASHES = Path(__file__).parent / "crashes"


def _fuzz(spec: str, seconds: int, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz", spec, "--seconds", str(seconds), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzz_run_finds_no_crash(name: str, tmp_path: Path) -> None:
    done = _fuzz(name, SHORT_RUN_SECONDS, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{name}: " in done.stdout and " executions" in done.stdout


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_reads_cleanly(name: str, tmp_path: Path) -> None:
    """Seeds the readers refuse would leave the fuzzer mutating an error path."""
    for seed, data in TARGETS[name].seeds().items():
        assert check(TARGETS[name], tmp_path, data) is None, seed


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CRASHES.glob("*/*") if p.is_file()),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_kept_crash_inputs_raise_only_project_errors(path: Path, tmp_path: Path) -> None:
    check(TARGETS[path.parent.name], tmp_path, path.read_bytes())


def _refuse_or_break(workdir: Path, data: bytes) -> None:
    """A reader with a planted bug: inputs holding '!' fail with a ZeroDivisionError."""
    if b"!" in data:
        raise ZeroDivisionError("planted bug")
    raise DataError(f"{workdir}: refused")


PLANTED_BUG = Target("planted", _refuse_or_break, lambda: {"seed": b"abc"}, max_len=64)


def test_check_passes_project_errors_and_reports_any_other(tmp_path: Path) -> None:
    assert isinstance(check(PLANTED_BUG, tmp_path, b"abc"), DataError)
    with pytest.raises(FuzzCrash, match="ZeroDivisionError: planted bug"):
        check(PLANTED_BUG, tmp_path, b"a!c")


def test_a_fuzz_run_reports_the_planted_bug_and_keeps_its_input(tmp_path: Path) -> None:
    done = _fuzz(f"{__name__}:PLANTED_BUG", 3, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "crash: ZeroDivisionError at test_fuzz.py" in done.stdout
    (kept,) = (tmp_path / "findings").glob("*.bin")
    assert b"!" in kept.read_bytes()
    assert main([f"{__name__}:PLANTED_BUG", "--replay", str(kept)]) == 1

"""Commands print their own lines only: TensorFlow's and absl's log messages are off by default."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What TensorFlow prints while it loads on a machine without a GPU, and its C++ log prefixes.
TENSORFLOW_NOISE = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN", "I0000", "E0000")


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_first_import_of_a_module_runs_with_native_stderr_silenced(tmp_path: Path) -> None:
    """A module that writes to file descriptor 2 while it loads, as native libraries do."""
    package = tmp_path / "noisy"
    package.mkdir()
    (package / "__init__.py").write_text("import os\nos.write(2, b'native noise\\n')\n")
    result = run_python(
        f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from danq.cli.quiet import SilentFirstImport
        sys.meta_path.insert(0, SilentFirstImport("noisy"))
        import noisy
        os.write(2, b"after the import\\n")
        print("imported", noisy.__name__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "native noise" not in result.stderr
    assert "after the import" in result.stderr  # the descriptor is restored
    assert result.stdout.strip() == "imported noisy"


def test_an_import_error_inside_the_silenced_import_still_shows(tmp_path: Path) -> None:
    package = tmp_path / "broken"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    result = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from danq.cli.quiet import SilentFirstImport
        sys.meta_path.insert(0, SilentFirstImport("broken"))
        import broken
        """,
        tmp_path,
    )
    assert result.returncode != 0
    assert "broken on purpose" in result.stderr


@pytest.mark.slow
def test_a_command_that_loads_tensorflow_prints_no_tensorflow_lines(
    tiny_data: Path, tmp_path: Path
) -> None:
    args = ["--params", str(REPO / "params.yaml"), "data", "prepare", "--quiet"]
    args += ["--data", str(tiny_data), "--out", str(tmp_path / "shards")]
    result = run_python(
        f"""
        import sys
        from danq.cli.main import main
        status = main({args!r})
        print("tensorflow loaded:", "tensorflow" in sys.modules)
        sys.exit(status)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "tensorflow loaded: True" in result.stdout  # the command did load it
    noise = [
        line for line in result.stderr.splitlines() if any(n in line for n in TENSORFLOW_NOISE)
    ]
    assert not noise, noise

"""dvc.yaml's deps cover the code each stage runs, and each stage writes the outputs it declares.

Every stage of dvc.yaml and study/dvc.yaml runs here as `dvc repro` would run it (its own
command line, from a folder laid out like the repository) on tiny data, in a fresh interpreter
that reports every module it imports (PYTHONPROFILEIMPORTTIME, which worker processes inherit).
A danq module outside the stage's deps is code that `dvc repro` does not watch: editing it
would not rerun the stage. A code dep that holds no module the stage loads reruns it for
nothing. The stages also write every output dvc.yaml declares, metrics and plot tables included.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
BIN = Path(sys.executable).parent

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
# params.yaml with settings that make every stage fast on the 240-sequence tiny_data and let
# the gate and promotion pass (the tiny splits differ more than the real ones do).
TINY_SETTINGS: dict[str, dict[str, Any]] = {
    "validate": {"chunk_size": 50, "prevalence_tolerance": 0.5, "gc_ks_max": 1.0},
    "prepare": {"shard_size": 70, "chunk_size": 33},
    "model": TINY_MODEL,
    "train": {"batch_size": 40, "max_epochs": 1, "shuffle_buffer": 100, "steps_per_epoch": None},
    "evaluate": {"batch_size": 100},
    "promote": {
        "min_macro_auroc": 0.0,
        "min_macro_aupr": 0.0,
        "bootstrap_samples": 20,
        "bootstrap_max_rows": 100,
        # Tiny splits: too few rows for blocks, and too few positives for 10 of them.
        "bootstrap_block_rows": 1,
        "bootstrap_min_class_blocks": 1,
    },
    "study": {
        "seeds": 2,
        "arms": ["baseline", "run"],
        "batch_sizes": [40],
        "model": TINY_MODEL,
        "max_epochs": 1,
        "samples_per_epoch": None,
    },
}


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    wdir: Path  # absolute, in the repository
    deps: tuple[str, ...]  # as written, relative to wdir
    outs: tuple[str, ...]  # outs, metrics and plots, relative to wdir


def dvc_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*dvc.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / name for name in listed]


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """DVC's ${name} interpolation, for what these dvc.yaml files use; anything else fails."""
    if isinstance(value, dict):
        return {substitute(k, variables): substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\$\{(\w+)\}", value)
    if whole:
        return variables[whole.group(1)]
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m.group(1)]), value)
    assert "${" not in resolved, f"interpolation this test does not resolve: {value}"
    return resolved


def paths(entries: list[Any]) -> tuple[str, ...]:
    """Paths of a deps/outs list: plain strings, or one-key mappings of a path to its options."""
    return tuple(e if isinstance(e, str) else next(iter(e)) for e in entries)


def resolve_stages(dvc_file: Path, text: str | None = None) -> list[Stage]:
    """The stages of a dvc.yaml with foreach expanded, as `dvc repro` sees them."""
    doc = yaml.safe_load(dvc_file.read_text() if text is None else text)
    variables: dict[str, Any] = {}
    for entry in doc.get("vars", []):
        assert isinstance(entry, dict), f"vars read from a file are not supported here: {entry}"
        variables.update(entry)
    stages = []
    for name, body in doc["stages"].items():
        if "foreach" in body:
            expanded = [
                (f"{name}@{item}", substitute(body["do"], {**variables, "item": item}))
                for item in substitute(body["foreach"], variables)
            ]
        else:
            expanded = [(name, substitute(body, variables))]
        for stage_name, definition in expanded:
            stages.append(
                Stage(
                    name=stage_name,
                    cmd=definition["cmd"],
                    wdir=(dvc_file.parent / definition.get("wdir", ".")).resolve(),
                    deps=paths(definition.get("deps", [])),
                    outs=paths(
                        definition.get("outs", [])
                        + definition.get("metrics", [])
                        + definition.get("plots", [])
                    ),
                )
            )
    return stages


def all_stages() -> list[Stage]:
    return [stage for dvc_file in dvc_files() for stage in resolve_stages(dvc_file)]


def module_file(module: str) -> Path:
    """The source file of a danq module, from its dotted name."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{module}: no source file under {SRC}")


def uncovered(stage: Stage, modules: list[str]) -> list[str]:
    """The modules whose source file is neither a dep of the stage nor inside a dep folder."""
    deps = [(stage.wdir / dep).resolve() for dep in stage.deps]

    def covered(path: Path) -> bool:
        return any(dep == path or dep in path.parents for dep in deps)

    return [module for module in modules if not covered(module_file(module))]


def imported_danq_modules(stderr: str) -> list[str]:
    """danq modules from `-X importtime` lines: 'import time: self | cumulative | name'."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name == "danq" or name.startswith("danq."):
                names.add(name)
    return sorted(names)


def tiny_params() -> str:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, settings in TINY_SETTINGS.items():
        raw[section].update(settings)
    return yaml.safe_dump(raw, sort_keys=False)


def run_stage(stage: Stage, workspace: Path) -> list[str]:
    """Run the stage's command in the workspace; the danq modules it imported."""
    program, *arguments = shlex.split(stage.cmd)
    assert program == "danq", f"{stage.name}: this test knows how to run danq commands only"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPROFILEIMPORTTIME="1", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    cwd = workspace / stage.wdir.relative_to(REPO)
    done = subprocess.run(
        [str(BIN / "danq"), *arguments], cwd=cwd, env=env, capture_output=True, text=True
    )
    output = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, f"{stage.name}: {stage.cmd} failed:\n" + "\n".join(output[-40:])
    missing = [out for out in stage.outs if not (cwd / out).exists()]
    assert not missing, f"{stage.name} did not write the outputs dvc.yaml declares: {missing}"
    return imported_danq_modules(done.stderr)


@dataclass(frozen=True)
class PipelineRun:
    workspace: Path
    modules: dict[str, list[str]]  # stage name -> the danq modules its command imported


@pytest.fixture(scope="module")
def pipeline_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """Every stage run in order in one workspace (data/, params.yaml, build/, metrics/, ...)."""
    workspace = tmp_path_factory.mktemp("repo")
    shutil.copytree(tiny_data, workspace / "data")
    (workspace / "params.yaml").write_text(tiny_params())
    for dvc_file in dvc_files():
        (workspace / dvc_file.parent.relative_to(REPO)).mkdir(parents=True, exist_ok=True)
    return PipelineRun(
        workspace, {stage.name: run_stage(stage, workspace) for stage in all_stages()}
    )


def test_the_stages_of_both_pipelines_are_found() -> None:
    names = [stage.name for stage in all_stages()]
    assert names[:3] == ["validate", "prepare", "train@baseline"]
    assert {"train@random_dropout", "evaluate@baseline", "report", "promote", "study"} <= set(names)


def test_every_code_dep_exists() -> None:
    """A moved or misspelt module: the quick check (dvc repro would fail on it)."""
    missing = [
        (stage.name, dep)
        for stage in all_stages()
        for dep in stage.deps
        if SRC in (stage.wdir / dep).resolve().parents and not (stage.wdir / dep).exists()
    ]
    assert not missing


@pytest.mark.slow
def test_every_module_a_stage_runs_is_one_of_its_deps(pipeline_run: PipelineRun) -> None:
    stages = all_stages()
    assert set(pipeline_run.modules) == {stage.name for stage in stages}
    for stage in stages:
        # The recorder saw the command's imports (an empty list would pass the check below).
        assert "danq.cli.main" in pipeline_run.modules[stage.name], stage.name
    missing = {stage.name: uncovered(stage, pipeline_run.modules[stage.name]) for stage in stages}
    missing = {name: modules for name, modules in missing.items() if modules}
    assert not missing, f"modules the stages run but do not list in deps: {missing}"


@pytest.mark.slow
def test_every_code_dep_of_a_stage_holds_code_it_runs(pipeline_run: PipelineRun) -> None:
    """A dep under src/ that the stage never loads reruns it for nothing (or names moved code)."""
    idle = {}
    for stage in all_stages():
        files = [module_file(module) for module in pipeline_run.modules[stage.name]]
        for dep in stage.deps:
            path = (stage.wdir / dep).resolve()
            if SRC in path.parents and not any(f == path or path in f.parents for f in files):
                idle.setdefault(stage.name, []).append(dep)
    assert not idle, f"deps the stages do not run: {idle}"


@pytest.mark.slow
def test_a_stage_without_the_model_package_in_its_deps_fails_the_check(
    pipeline_run: PipelineRun,
) -> None:
    text = (REPO / "dvc.yaml").read_text()
    dep = "        - src/danq/model\n"
    assert dep in text, "the train stage lists the model package"
    doctored = resolve_stages(REPO / "dvc.yaml", text.replace(dep, ""))
    train = next(stage for stage in doctored if stage.name == "train@baseline")
    assert "danq.model.network" in uncovered(train, pipeline_run.modules["train@baseline"])


@pytest.mark.slow
def test_the_committed_metrics_are_the_evaluation_metrics(pipeline_run: PipelineRun) -> None:
    for variant in ("baseline", "random_dropout"):
        committed = pipeline_run.workspace / "metrics" / f"{variant}.json"
        evaluated = pipeline_run.workspace / "build" / "eval" / variant / "metrics.json"
        assert json.loads(committed.read_text()) == json.loads(evaluated.read_text())


@pytest.mark.slow
def test_every_plot_of_dvc_yaml_has_its_file_and_columns(pipeline_run: PipelineRun) -> None:
    """`dvc plots show` draws the top-level plots from these files and columns."""
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    for plot in plots:
        if isinstance(plot, str):  # an image
            assert (pipeline_run.workspace / plot).is_file(), plot
            continue
        ((title, spec),) = plot.items()
        for table, column in spec["y"].items():
            with (pipeline_run.workspace / table).open() as fh:
                header = next(csv.reader(fh))
            assert {spec["x"], column} <= set(header), f"{title}: {table} has {header}"


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        (("src/danq/model",), []),
        (("src/danq/model/network.py",), []),
        (("src/danq/model/dropout.py",), ["danq.model.network"]),
        # A folder whose name starts like the module's folder does not cover it.
        (("src/danq/mod",), ["danq.model.network"]),
        (("src/danq",), []),
        ((), ["danq.model.network"]),
    ],
)
def test_a_module_is_covered_by_its_file_or_a_folder_above_it(
    deps: tuple[str, ...], expected: list[str]
) -> None:
    stage = Stage("train", "danq train", REPO, deps, ())
    assert uncovered(stage, ["danq.model.network"]) == expected


def test_importtime_lines_name_the_danq_modules() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   danq.model.network\n"
        "import time:       120 |        120 | danqish\n"
        "warning: unrelated | line\n"
        "import time:        80 |        200 | danq\n"
    )
    assert imported_danq_modules(stderr) == ["danq", "danq.model.network"]


def test_bytecode_caches_in_dep_folders_are_not_hashed_by_dvc() -> None:
    """Python writes __pycache__ into the source folders that stages depend on: DVC must not
    hash it, or running any command (or another Python) would make every stage look stale."""
    ignored = subprocess.run(
        [str(BIN / "dvc"), "check-ignore", "src/danq/training/__pycache__/loop.cpython-311.pyc"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr

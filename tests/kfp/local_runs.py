"""A whole pipeline run under kfp.local, killed mid-training and run again: the helpers of the
`resumed_run` fixture (tests/kfp/conftest.py), which the resume and the pipeline tests share.

The pipeline runs in a child process in its own process group. Once the baseline train task
has finished an epoch, its process and the run with it get SIGKILL (a lost node gives no
warning either), then the pipeline runs again with the same resume key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PIPELINE_MODEL = "danq-pipeline-test"  # the registered model of whole local runs
RESUME_KEY = "sigkill-test"
MAX_EPOCHS = 3
# Epochs long enough (150 batches) that the kill lands inside epoch 2, not after the last.
LONG_EPOCHS = ["train.steps_per_epoch=150"]
RUN_TIMEOUT_S = 600

RUN_PIPELINE = textwrap.dedent(
    """
    import json, sys
    from kfp import local
    from pipelines.danq_pipeline import build_pipeline

    args = json.loads(sys.argv[1])
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=args.pop("root"))
    build_pipeline(tracking_uri=args.pop("tracking_uri"))(**args)
    """
)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc: the children of each of its threads)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            found.extend(map(int, children))
            queue.extend(map(int, children))
    return found


def train_process(pid: int) -> int | None:
    """The python process executing the train component under the local runner."""
    for child in descendants(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--function_to_execute" in argv and b"train" in argv and b"python" in argv[0]:
            return child
    return None


def checkpoint_epoch(state: Path) -> int:
    """The last finished epoch a checkpoint's state.json records (0: none yet)."""
    try:
        return int(json.loads(state.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


@dataclass(frozen=True)
class ResumedRun:
    root: Path
    uri: str  # the MLflow store, compiled into the pipeline
    arguments: dict[str, Any]  # the pipeline's
    durable: Path  # the baseline training's folder under checkpoint_root
    killed_at: int  # the last finished epoch when killed
    run_id: str  # the baseline's MLflow run
    status_after_kill: str
    run_dir: Path  # the second (whole) run's folder under its pipeline root


def start(root: Path, uri: str, arguments: dict[str, Any], attempt: str) -> subprocess.Popen:
    """The pipeline built for the MLflow store at uri, in a child process, its output in
    root/<attempt>.log (a pipe nobody reads while the test polls would fill and stall the
    run)."""
    args = {**arguments, "root": str(root / attempt), "tracking_uri": uri}
    with (root / f"{attempt}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", RUN_PIPELINE, json.dumps(args)],
            cwd=root,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole
        )


def log_of(run: subprocess.Popen, root: Path, attempt: str) -> str:
    """The run's output, after making sure nothing of it is left running."""
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
    return (root / f"{attempt}.log").read_text()


def kill_after_first_epoch(run: subprocess.Popen, state: Path) -> int:
    """SIGKILL the train task's process and the run once state.json shows a finished epoch;
    returns that epoch."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while checkpoint_epoch(state) < 1:
        if run.poll() is not None:
            raise AssertionError(f"the pipeline ended (exit {run.returncode}) before epoch 1")
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished epoch in {RUN_TIMEOUT_S} s")
        time.sleep(0.05)
    victim = train_process(run.pid)
    if victim is None:
        raise AssertionError("cannot find the train task's process")
    # The task and the run with it, as a lost node or a deleted run leaves them (killing only
    # the task, the local runner retries it after the retry policy's backoff).
    os.kill(victim, signal.SIGKILL)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    if run.returncode != -signal.SIGKILL:
        raise AssertionError(f"the killed run exited {run.returncode}")
    return checkpoint_epoch(state)


def interrupted_then_resumed(
    root: Path, uri: str, arguments: dict[str, Any], mlflow: Any
) -> ResumedRun:
    """Run the pipeline built for the MLflow store at uri, kill it after the baseline's first
    epoch, run it again to the end. mlflow: a client of that store."""
    durable = Path(arguments["checkpoint_root"], arguments["resume_key"], "baseline")
    state = durable / "checkpoint" / "state.json"
    first = start(root, uri, arguments, "first")
    try:
        killed_at = kill_after_first_epoch(first, state)
    except AssertionError as err:
        raise AssertionError(f"{err}:\n{log_of(first, root, 'first')}") from None
    run_id = json.loads(state.read_text())["run_id"]
    status_after_kill = mlflow.get_run(run_id).info.status
    second = start(root, uri, arguments, "second")
    try:
        second.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    if second.returncode != 0:
        raise AssertionError(f"the second run failed:\n{log_of(second, root, 'second')}")
    (run_dir,) = (root / "second").iterdir()
    return ResumedRun(
        root=root,
        uri=uri,
        arguments=arguments,
        durable=durable,
        killed_at=killed_at,
        run_id=run_id,
        status_after_kill=status_after_kill,
        run_dir=run_dir,
    )

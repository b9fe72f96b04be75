"""What each step of a pipeline run receives: the bytes of its input artifacts.

The KFP launcher copies every input artifact whole into the pod before the step starts, so
these bytes are the step's download time and the least ephemeral storage it needs. Measured
on a run of kfp.local (whose pipeline root holds <run>/<task>/<output> folders) by following
each task's inputs in the compiled pipeline back to the task that produced them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from danq.errors import PipelineError

# Where the launcher stages a gs:// pipeline root's artifacts; the pipeline mounts each step's
# sized staging volume here (pipelines/danq_pipeline.py).
STAGING_MOUNT = "/gcs"
SCRATCH_FOLDER = "danq-scratch"


def scratch_dir() -> str | None:
    """Where a step's temporary files go: on the staging volume, which is sized for them,
    when one is mounted (on the cluster); None (the system's temporary folder) otherwise,
    as under kfp.local."""
    if not os.path.ismount(STAGING_MOUNT):
        return None
    path = os.path.join(STAGING_MOUNT, SCRATCH_FOLDER)
    os.makedirs(path, exist_ok=True)
    return path


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _producers(spec: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """task -> input name -> (producer task, output key), through condition groups: a task
    inside one reads its parent's inputs, which name the producer in the root DAG."""
    found: dict[str, dict[str, tuple[str, str]]] = {}

    def walk(dag: Mapping[str, Any], outer: Mapping[str, tuple[str, str]]) -> None:
        for name, task in dag.get("tasks", {}).items():
            inputs: dict[str, tuple[str, str]] = {}
            for key, value in task.get("inputs", {}).get("artifacts", {}).items():
                if "taskOutputArtifact" in value:
                    produced = value["taskOutputArtifact"]
                    inputs[key] = (produced["producerTask"], produced["outputArtifactKey"])
                elif value.get("componentInputArtifact") in outer:
                    inputs[key] = outer[value["componentInputArtifact"]]
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"], inputs)
            else:
                found[name] = inputs

    walk(spec["root"]["dag"], {})
    return found


def input_bytes(
    spec: Mapping[str, Any], run_dir: str | os.PathLike[str], imported: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """Bytes of each input artifact of each executed task of a kfp.local run in run_dir.
    imported: importer task -> the URI it imported (a local folder), which has no copy
    in run_dir."""
    run = Path(run_dir)
    received: dict[str, dict[str, int]] = {}
    for task, inputs in _producers(spec).items():
        if task in imported or not (run / task).is_dir():
            continue  # importers stage nothing; tasks that did not run received nothing
        received[task] = {}
        for key, (producer, output) in inputs.items():
            path = Path(imported[producer]) if producer in imported else run / producer / output
            if not path.exists():
                raise PipelineError(f"{run}: {task}'s input {key} ({producer}.{output}) is missing")
            received[task][key] = folder_bytes(path)
    return received


def table(received: Mapping[str, Mapping[str, int]]) -> str:
    """One line per step: its total, then each input, in KiB."""
    lines = []
    for task, inputs in sorted(received.items()):
        parts = ", ".join(f"{key} {size / 1024:,.1f}" for key, size in sorted(inputs.items()))
        lines.append(f"{task:<12} {sum(inputs.values()) / 1024:>10,.1f} KiB  ({parts})")
    return "\n".join(lines)

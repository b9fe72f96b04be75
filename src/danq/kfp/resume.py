"""Training that survives its pod: the train step's checkpoint in durable storage.

A pod's folders die with it, so a preempted Spot node, an eviction or a node upgrade would
restart training from epoch 0 and leave its MLflow run RUNNING. Here the run's folder lives
at <checkpoint_root>/<run_key>/<variant>/ (out/ and checkpoint/, the layout of
danq.training.loop), where run_key is the KFP run's id unless the pipeline names another. A
retried task, or a retried KFP run (same id), finds the folder and continues from the last
finished epoch in the same MLflow run, or, when training had finished, returns its outputs.

A gs:// root is mirrored: the step trains in a local copy, and after each epoch uploads the
checkpoint's new files, then its state.json (the commit point), then deletes what the new
state no longer names, so the remote copy is always one complete checkpoint.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from danq.artifacts import CHECKPOINT_STATE_FILE, RUN_FILE
from danq.config import Params, Variant
from danq.errors import ConfigError, TrainingStateError
from danq.io import storage
from danq.kfp.staging import scratch_dir
from danq.training.outputs import TrainResult

OUTPUTS_DIR = "out"
CHECKPOINT_DIR = "checkpoint"
DATA_MARKER = "data_fingerprint"  # the digest of the data this folder's training is on
RUN_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def run_folder(checkpoint_root: str, run_key: str, variant: str) -> str:
    """<checkpoint_root>/<run_key>/<variant>; run_key must be a plain name (no / or ..)."""
    if not RUN_KEY_PATTERN.fullmatch(run_key):
        raise ConfigError(
            f"resume key {run_key!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return storage.join(checkpoint_root, run_key, variant)


class CheckpointMirror(keras.callbacks.Callback):
    """Copies a local checkpoint folder to a remote one after every epoch's commit."""

    def __init__(self, local: Path, remote: str) -> None:
        super().__init__()
        self.local = local
        self.remote = remote

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.push()

    def push(self) -> None:
        state = self.local / CHECKPOINT_STATE_FILE
        if not state.exists():
            return
        present = set(_remote_names(self.remote))
        names = sorted(p.name for p in self.local.iterdir() if p.name != state.name)
        for name in names:
            if name not in present:  # epoch-named files never change once written
                storage.upload(self.local / name, storage.join(self.remote, name))
        storage.upload(state, storage.join(self.remote, state.name))
        for name in present - {*names, state.name}:
            storage.remove_tree(storage.join(self.remote, name))


def claim_for_data(folder: str, data_fingerprint: str) -> None:
    """Mark folder as training on this data, or check that it already is: a resume key
    reused on other data must not continue a training of the old data."""
    marker = storage.join(folder, DATA_MARKER)
    if storage.exists(marker):
        with storage.open_binary(marker) as fh:
            claimed = fh.read().decode().strip()
        if claimed != data_fingerprint:
            raise TrainingStateError(
                f"{folder}: this resume key's training is on data {claimed}, the run's data is "
                f"{data_fingerprint}; give the run another resume_key (empty: its own run id)"
            )
        return
    storage.makedirs(folder)
    with storage.open_binary(marker, "wb") as fh:
        fh.write(data_fingerprint.encode())


def _remote_names(folder: str) -> list[str]:
    return storage.listdir(folder) if storage.exists(folder) else []


def _pull(remote: str, local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    for name in _remote_names(remote):
        storage.download(storage.join(remote, name), local / name)


def _push_outputs(local: Path, remote: str) -> None:
    """out/ to the remote folder, run.json (the mark of a finished run) last."""
    names = sorted(p.name for p in local.iterdir() if p.is_file() and p.name != RUN_FILE)
    for name in [*names, RUN_FILE]:
        storage.upload(local / name, storage.join(remote, name))


def train_resumably(
    params: Params,
    variant: Variant,
    shard_dir: str,
    checkpoint_root: str,
    run_key: str,
    data_fingerprint: str,
    tags: Mapping[str, str],
) -> tuple[TrainResult, Path]:
    """Train (or resume, or return the finished run) in the durable folder of run_key and
    variant, which must be a training on data_fingerprint's data; returns the result and a
    local folder holding the outputs (model.keras, history.json, run.json, curve). A local
    checkpoint_root is used in place."""
    from danq.training.loop import train_variant

    folder = run_folder(checkpoint_root, run_key, variant)
    claim_for_data(folder, data_fingerprint)
    if not storage.is_remote(folder):
        out = Path(folder, OUTPUTS_DIR)
        result = train_variant(
            params,
            variant,
            shard_dir,
            str(out),
            checkpoint_dir=str(Path(folder, CHECKPOINT_DIR)),
            tags=tags,
        )
        return result, out
    local = Path(tempfile.mkdtemp(prefix=f"danq-train-{variant}-", dir=scratch_dir()))
    remote_out = storage.join(folder, OUTPUTS_DIR)
    remote_checkpoint = storage.join(folder, CHECKPOINT_DIR)
    _pull(remote_out, local / OUTPUTS_DIR)
    _pull(remote_checkpoint, local / CHECKPOINT_DIR)
    mirror = CheckpointMirror(local / CHECKPOINT_DIR, remote_checkpoint)
    result = train_variant(
        params,
        variant,
        shard_dir,
        str(local / OUTPUTS_DIR),
        checkpoint_dir=str(local / CHECKPOINT_DIR),
        callbacks=[mirror],
        tags=tags,
    )
    if not result.already_finished:
        _push_outputs(local / OUTPUTS_DIR, remote_out)
    storage.remove_tree(remote_checkpoint)  # spent: the finished run is in out/
    return result, local / OUTPUTS_DIR


def copy_outputs(source: Path, names: list[str], dest: str) -> None:
    """The named files of a training's outputs into an artifact folder."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, Path(dest, name))

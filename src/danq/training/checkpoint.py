"""The per-epoch resume state: every variable of the model and its optimizer, and state.json.

state.json holds the settings fingerprint, the MLflow run id, the epoch, the early-stopping
and dropout-redraw state, the history so far, and the names of the files beside it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from danq import artifacts
from danq.artifacts import CHECKPOINT_STATE_FILE
from danq.errors import TrainingStateError


def resumable_variables(model: keras.Model) -> list[keras.Variable]:
    """Model variables (weights, dropout rates, dropout seed-generator states) and optimizer
    variables. `model.save` leaves out the seed-generator states: without them a resumed run
    would draw other dropout masks."""
    return [*model.variables, *model.optimizer.variables]


class TrainingCheckpoint:
    """A checkpoint folder: state.json plus the files it names, replaced per finished epoch.

    Files carry the epoch in their name and state.json, the commit point, is renamed into
    place last, so a kill at any moment leaves the previous or the new checkpoint complete.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / CHECKPOINT_STATE_FILE

    def read(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        state: dict[str, Any] = artifacts.read_json(self.state_path)
        return state

    def save_variables(self, model: keras.Model, epoch: int) -> str:
        name = f"variables-e{epoch:04d}.npz"
        arrays = {
            f"{i:05d}": keras.ops.convert_to_numpy(v)
            for i, v in enumerate(resumable_variables(model))
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file, not a name: numpy would append .npz
                np.savez(fh, **arrays)

        artifacts.write_atomically(self.directory / name, write)
        return name

    def save_best_weights(self, model: keras.Model, epoch: int) -> str:
        name = f"best-e{epoch:04d}.weights.h5"
        artifacts.write_atomically(self.directory / name, model.save_weights)
        return name

    def restore_variables(self, model: keras.Model, name: str) -> None:
        variables = resumable_variables(model)
        with np.load(self.directory / name) as saved:
            if len(saved.files) != len(variables):
                raise TrainingStateError(
                    f"{self.directory / name}: {len(saved.files)} variables, the model has "
                    f"{len(variables)}"
                )
            for i, variable in enumerate(variables):
                value = saved[f"{i:05d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise TrainingStateError(
                        f"{self.directory / name}: variable {variable.path} has shape "
                        f"{value.shape} there, {tuple(variable.shape)} in the model"
                    )
                variable.assign(value)

    def commit(self, state: Mapping[str, Any]) -> None:
        artifacts.write_json(self.state_path, state)
        self.prune(state)

    def prune(self, state: Mapping[str, Any]) -> None:
        """Delete files the state does not name: superseded epochs, temporaries of a killed run."""
        keep = {self.state_path.name, state["variables"], state["early_stopping"]["best_weights"]}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

"""A training given only shards names its model's targets from the shards' targets.json."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from danq import tracking
from danq.artifacts import RUN_FILE
from danq.config import parse_params
from danq.data.targets import target_table
from danq.training.loop import train_variant

TINY = {
    "model": dict(
        preset="custom", conv_filters=4, conv_width=5, pool_size=8, lstm_units=3, dense_units=6
    ),
    "train": dict(batch_size=60, max_epochs=1, patience=1, shuffle_buffer=10, seed=1),
}


def test_training_without_the_data_folder_names_targets_from_the_shards(
    tiny_data: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.client(uri).create_experiment("outputs", artifact_location=str(tmp_path / "art"))
    params = parse_params({**TINY, "mlflow": {"tracking_uri": uri, "experiment": "outputs"}})
    out = tmp_path / "baseline"
    train_variant(params, "baseline", str(tiny_shards), str(out), None)
    run_info = json.loads((out / RUN_FILE).read_text())
    with tracking.using(uri):
        stored = mlflow.models.get_model_info(run_info["model_uri"]).metadata["target_names"]
    names = target_table(16, str(tiny_data))[0]
    assert stored == names and names[0] == "single:CTCF"

"""What a training leaves: target names from the shards, and a run.json without secrets."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import mlflow

from danq import tracking
from danq.artifacts import RUN_FILE
from danq.config import parse_params
from danq.data.targets import target_table
from danq.training.loop import train_variant

from ..deployed_registry import AuthServer

TINY = {
    "model": dict(
        preset="custom", conv_filters=4, conv_width=5, pool_size=8, lstm_units=3, dense_units=6
    ),
    "train": dict(batch_size=60, max_epochs=1, patience=1, shuffle_buffer=10, seed=1),
}


def test_training_names_targets_from_the_shards_and_keeps_no_password_in_run_json(
    auth_registry: AuthServer, tiny_data: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    """Given only shards, the model's target names come from the shards' targets.json. A login
    in the tracking URI (user:password@host) reaches the server, and not run.json, which
    pipeline artifacts and reports copy. (One training for both: training is the slow part.)"""
    user, password = auth_registry.admin
    server = urlsplit(auth_registry.uri)
    uri = f"http://{user}:{password}@{server.netloc}"
    experiment = f"outputs-{uuid4().hex[:8]}"
    params = parse_params({**TINY, "mlflow": {"tracking_uri": uri, "experiment": experiment}})
    out = tmp_path / "baseline"
    train_variant(params, "baseline", str(tiny_shards), str(out), None)
    text = (out / RUN_FILE).read_text()
    assert password not in text
    run_info = json.loads(text)
    assert run_info["tracking_uri"] == f"http://{user}:***@{server.netloc}"
    with tracking.using(uri):
        stored = mlflow.models.get_model_info(run_info["model_uri"]).metadata["target_names"]
    names = target_table(16, str(tiny_data))[0]
    assert stored == names and names[0] == "single:CTCF"

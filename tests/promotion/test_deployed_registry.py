"""End to end on the registry as deployed (auth_registry: PostgreSQL store, basic auth, default
permission READ): the pipeline's MLflow user, made and granted by `danq registry grant` on an
experiment and a registered model the admin owns, trains, evaluates and promotes a tiny model,
and `danq predict` loads the champion from models:/<name>@champion after checking its file
against the sha256 registered with it."""

from __future__ import annotations

import csv
import json
import os
import secrets
import uuid
from unittest import mock

import pytest
import yaml

from danq.artifacts import TAG_MODEL_SHA256, TAG_REPLACED_VERSION
from danq.cli.main import main
from tests.conftest import REPO

TINY = {
    "model": {
        "preset": "custom",
        "conv_filters": 8,
        "conv_width": 10,
        "pool_size": 5,
        "lstm_units": 4,
        "dense_units": 8,
    },
    "train": {"batch_size": 40, "max_epochs": 1, "shuffle_buffer": 100},
    "evaluate": {"batch_size": 100},
    "promote": {
        "min_macro_auroc": 0.0,
        "min_macro_aupr": 0.0,
        "bootstrap_samples": 20,
        "bootstrap_max_rows": 100,
        "bootstrap_block_rows": 1,
        "bootstrap_min_class_blocks": 2,
    },
}


@pytest.mark.slow  # it trains; 2.5 min on 2 busy cores, most of it the auth server's hashing
def test_the_granted_pipeline_user_trains_promotes_and_predicts_from_the_champion(
    auth_registry, tiny_data, tiny_shards, tmp_path, capsys
):
    from mlflow import MlflowClient

    suffix = uuid.uuid4().hex[:8]
    name, experiment = f"danq-e2e-{suffix}", f"danq-e2e-{suffix}"
    user, password = f"pipeline-{suffix}", secrets.token_hex(10)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, settings in TINY.items():
        raw[section].update(settings)
    raw["paths"].update(work_dir=str(tmp_path / "build"), metrics_dir=str(tmp_path / "metrics"))
    raw["mlflow"] = {"tracking_uri": auth_registry.uri, "experiment": experiment,
                     "registered_model": name}  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    danq = ["--params", str(params)]

    grant = [*danq, "registry", "grant", "--user", user, "--password-env", "E2E_PASSWORD"]
    with (
        auth_registry.login(*auth_registry.admin),
        mock.patch.dict(os.environ, {"E2E_PASSWORD": password}),
    ):
        assert main(grant) == 0
    granted = capsys.readouterr().out
    assert f"user {user!r}: created" in granted and "granted EDIT" in granted

    shards, test_shards = str(tiny_shards), str(tiny_shards / "test")
    valid_shards = str(tiny_shards / "valid")
    with auth_registry.login(user, password):
        assert main([*danq, "train", "--variant", "baseline", "--shards", shards,
                     "--data", str(tiny_data)]) == 0  # fmt: skip
        assert main([*danq, "evaluate", "--variants", "baseline", "--shards", test_shards,
                     "--valid-shards", valid_shards]) == 0  # fmt: skip
        assert main([*danq, "promote", "--variants", "baseline", "--shards", valid_shards]) == 0
        promoted = capsys.readouterr().out
        predictions = tmp_path / "predictions.tsv"
        assert main([*danq, "predict", "--input", str(tiny_data / "test.mat"),
                     "--out", str(predictions)]) == 0  # fmt: skip
    assert "promote: baseline promoted" in promoted

    blessing = json.loads((tmp_path / "build" / "promote" / "blessing.json").read_text())
    assert blessing["registry"] == {
        "tracking_uri": auth_registry.uri,
        "model": name,
        "aliases": {"champion": "1"},
    }
    with auth_registry.login(user, password):
        client = MlflowClient(auth_registry.uri, auth_registry.uri)
        version = client.get_model_version_by_alias(name, "champion")
        run_sha = client.get_run(version.run_id).data.tags[TAG_MODEL_SHA256]
    assert version.tags[TAG_MODEL_SHA256] == run_sha
    assert version.tags[TAG_REPLACED_VERSION] == "none"
    with open(predictions, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    # A header, then the tiny test file's 80 sequences (40, then their reverse complements).
    assert len(rows) == 1 + 80

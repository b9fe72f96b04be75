"""danq.model.loading: models from files and MLflow URIs, and their target names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from danq import tracking
from danq.errors import ModelIntegrityError, PredictError
from danq.model.loading import is_mlflow_uri, load_model, resolve_target_names


def test_target_names_from_file_data_metadata_or_generic(tmp_path: Path) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("a\nb\n\nc\n")
    assert resolve_target_names(3, names_file=names_file) == (["a", "b", "c"], str(names_file))
    with pytest.raises(PredictError, match="3 target names, the model has 4 outputs"):
        resolve_target_names(4, names_file=names_file)

    data = tmp_path / "data"
    data.mkdir()
    targets = [{"index": 1, "name": "pair:x+y"}, {"index": 0, "name": "single:x"}]
    (data / "metadata.json").write_text(json.dumps({"targets": targets}))
    names, source = resolve_target_names(2, data_dir=data)
    assert names == ["single:x", "pair:x+y"] and "metadata.json" in source
    assert resolve_target_names(3, data_dir=data)[0] == ["target_0", "target_1", "target_2"]


def test_target_names_with_tabs_are_refused(tmp_path: Path) -> None:
    names_file = tmp_path / "names.txt"
    names_file.write_text("a\nb\tc\n")
    with pytest.raises(PredictError, match="holds a tab or newline"):
        resolve_target_names(2, names_file=names_file)


def test_models_from_files(model_file: Path, tmp_path: Path) -> None:
    assert load_model(str(model_file)).output_shape == (None, 3)
    assert not is_mlflow_uri(str(model_file))
    assert is_mlflow_uri("models:/danq@champion") and is_mlflow_uri("runs:/abc/model")
    with pytest.raises(PredictError, match="^model nowhere.keras: no such file"):
        load_model("nowhere.keras")
    other = tmp_path / "model.txt"
    other.write_text("not a model")
    with pytest.raises(PredictError, match="expected a .keras file, an MLflow model folder"):
        load_model(str(other))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelIntegrityError, match="broken.keras is not a Keras v3 archive"):
        load_model(str(broken))


def test_mlflow_models_and_their_target_names(
    model,
    mlflow_store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    log_and_register,
) -> None:
    import mlflow.keras

    from danq.artifacts import TAG_MODEL_SHA256
    from danq.model.integrity import record_model_sha256

    client = tracking.client(mlflow_store)
    experiment = client.create_experiment("load", artifact_location=(tmp_path / "art").as_uri())
    names = ["CTCF", "GATA1", "noise"]
    first = log_and_register(mlflow_store, model, experiment, "tiny", names)
    client.set_registered_model_alias("tiny", "champion", first.version)
    global_uri = mlflow.get_tracking_uri()
    uri_variables = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    environment = [os.environ.get(name) for name in uri_variables]

    by_run = load_model(f"runs:/{first.run_id}/model", mlflow_store)
    assert by_run.input_shape == (None, 60, 4)
    assert load_model("models:/tiny@champion", mlflow_store).output_shape == (None, 3)
    with pytest.raises(PredictError, match="models:/absent@champion"):
        load_model("models:/absent@champion", mlflow_store)
    assert resolve_target_names(
        3, model_uri="models:/tiny@champion", tracking_uri=mlflow_store
    ) == (
        ["CTCF", "GATA1", "noise"],
        "the MLflow model's metadata",
    )

    # Without model metadata, names come from the registered version's tags, then the run's.
    with tracking.using(mlflow_store), mlflow.start_run(experiment_id=experiment):
        mlflow.set_tag("target_names", json.dumps(["r0", "r1", "r2"]))
        bare = mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
        sha256 = record_model_sha256(client, bare.model_uri)
        version = mlflow.register_model(
            bare.model_uri, "tiny", tags={TAG_MODEL_SHA256: sha256}
        ).version
    assert resolve_target_names(
        3, model_uri=f"models:/tiny/{version}", tracking_uri=mlflow_store
    ) == (
        ["r0", "r1", "r2"],
        "the MLflow run's tags",
    )
    client.set_model_version_tag("tiny", version, "target_names", '["v0","v1","v2"]')
    names, source = resolve_target_names(
        3, model_uri=f"models:/tiny/{version}", tracking_uri=mlflow_store
    )
    assert names == ["v0", "v1", "v2"] and "version" in source
    # Names of another count are not used: the data folder's or generic ones are.
    assert resolve_target_names(
        4, model_uri=f"models:/tiny/{version}", tracking_uri=mlflow_store
    ) == ([f"target_{i}" for i in range(4)], "generic target_<i>")
    assert "warning: 3 target names in the registered model version's tags" in (
        capsys.readouterr().err
    )
    assert mlflow.get_tracking_uri() == global_uri
    assert [os.environ.get(name) for name in uri_variables] == environment

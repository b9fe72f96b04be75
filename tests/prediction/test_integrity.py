"""Verified models: the sha256 recorded at logging and registration, checked before any load,
on the registry as deployed (PostgreSQL + basic auth, proxied artifacts); and the formats and
contents the loader refuses (.h5, exported SavedModels, Lambda layers, foreign classes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from danq import tracking
from danq.artifacts import TAG_MODEL_SHA256
from danq.cli.main import main
from danq.errors import ModelIntegrityError, PredictError
from danq.model.integrity import sha256_file, verified_sha256
from danq.model.loading import load_model, load_verified_model

NAMES = ["CTCF", "GATA1", "noise"]
READER_PASSWORD = "reader-password-1"


@dataclass(frozen=True)
class Registered:
    """The module's model on the shared auth server: registered model `name` has version
    `good` (tagged, alias champion) and `untagged` (the same logged model registered without
    the tag, alias untagged); `reader` is a user with the default READ permission."""

    server: Any
    reader: str
    name: str
    good: Any
    untagged: Any

    def admin(self) -> Any:
        return self.server.login(*self.server.admin)


def logged_id(version: Any) -> str:
    """The logged model a version was registered from (its source: the REST API drops
    ModelVersion.model_id)."""
    return str(version.source).removeprefix("models:/")


def stored_keras_file(artifacts: Path, model_id: str) -> Path:
    """The .keras file of a logged model in the server's artifact folder."""
    (found,) = artifacts.rglob(f"{model_id}/artifacts/data/model.keras")
    return found


@pytest.fixture(scope="module")
def registered(auth_registry, model, log_and_register) -> Registered:
    tag = uuid.uuid4().hex[:8]
    name, reader = f"integrity-{tag}", f"reader-{tag}"
    auth_registry.add_user(reader, READER_PASSWORD)
    uri = auth_registry.uri
    with auth_registry.login(*auth_registry.admin):
        client = tracking.client(uri)
        experiment = client.create_experiment(f"integrity-{tag}")
        good = log_and_register(uri, model, experiment, name, NAMES)
        with tracking.using(uri):
            untagged = client.create_model_version(
                name, good.source, run_id=good.run_id, model_id=logged_id(good)
            )
        client.set_registered_model_alias(name, "champion", good.version)
        client.set_registered_model_alias(name, "untagged", untagged.version)
    return Registered(auth_registry, reader, name, good, untagged)


def danq_predict(tmp_path: Path, registered_model: str, server_uri: str, *argv: str) -> int:
    overrides = [
        f"paths.data_dir={tmp_path / 'data'}",
        f"mlflow.tracking_uri={server_uri}",
        f"mlflow.registered_model={registered_model}",
    ]
    options = [item for override in overrides for item in ("-S", override)]
    return main(["--params", str(tmp_path / "none.yaml"), *options, "predict", *argv])


def test_logging_tags_model_and_run_with_the_stored_files_sha256(registered: Registered) -> None:
    server, good = registered.server, registered.good
    stored = sha256_file(stored_keras_file(server.artifacts, logged_id(good)))
    with registered.admin():
        client = tracking.client(server.uri)
        assert client.get_logged_model(logged_id(good)).tags[TAG_MODEL_SHA256] == stored
        assert client.get_run(good.run_id).data.tags[TAG_MODEL_SHA256] == stored
        assert good.tags[TAG_MODEL_SHA256] == stored
        assert verified_sha256(client, f"runs:/{good.run_id}/model") == stored
        assert verified_sha256(client, f"models:/{logged_id(good)}") == stored


def test_predict_loads_the_champion_once_verified(
    registered: Registered,
    tmp_path: Path,
    write_fasta,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As a user with the deployment's default READ permission."""
    fasta = write_fasta(tmp_path / "in.fa", {"r1": "ACGT" * 20})
    out = tmp_path / "champion.tsv"
    server = registered.server
    with server.login(registered.reader, READER_PASSWORD):
        code = danq_predict(tmp_path, registered.name, server.uri, "--input", str(fasta),
                            "--out", str(out))  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    sha256 = registered.good.tags[TAG_MODEL_SHA256]
    pinned = f"models:/{registered.name}/{registered.good.version}"
    assert f"models:/{registered.name}@champion = {pinned}, sha256 {sha256} verified" in stdout
    assert out.read_text().splitlines()[0].split("\t")[3:] == NAMES


def test_a_version_without_the_tag_is_refused(
    registered: Registered, tmp_path: Path, write_fasta, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"r1": "ACGT" * 20})
    out = tmp_path / "untagged.tsv"
    server = registered.server
    for model_uri in (
        f"models:/{registered.name}@untagged",
        f"models:/{registered.name}/{registered.untagged.version}",
    ):
        with server.login(registered.reader, READER_PASSWORD):
            code = danq_predict(tmp_path, registered.name, server.uri, "--model", model_uri,
                                "--input", str(fasta), "--out", str(out))  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1
        assert f"error: model {model_uri}: registered model {registered.name} version " in err
        assert f"has no {TAG_MODEL_SHA256} tag" in err and "danq promote" in err
        assert not out.exists()


def test_a_version_tag_that_disagrees_with_the_logged_model_is_refused(
    registered: Registered,
) -> None:
    """Someone with EDIT on the registered model re-tags a version: the logged model's tag,
    set at logging, still says what the file was."""
    server, good = registered.server, registered.good
    with registered.admin():
        client = tracking.client(server.uri)
        with tracking.using(server.uri):
            retagged = client.create_model_version(
                registered.name,
                good.source,
                run_id=good.run_id,
                model_id=logged_id(good),
                tags={TAG_MODEL_SHA256: "0" * 64},
            )
        uri = f"models:/{registered.name}/{retagged.version}"
        with pytest.raises(ModelIntegrityError, match=f"records sha256 {'0' * 64} but its logged"):
            load_model(uri, server.uri)


def test_a_tampered_model_is_refused_and_nothing_is_scored(
    registered: Registered, model_file: Path, tmp_path: Path, write_fasta
) -> None:
    """A valid model of the same shape swapped in for the stored file: only the checksum can
    tell. `danq predict` (its own process, as a READ-only user) exits 1 and writes nothing;
    promote's re-scoring and registration refuse it too. The file is put back afterwards."""
    from danq.evaluation.scoring import predict_uri

    server, good = registered.server, registered.good
    stored = stored_keras_file(server.artifacts, logged_id(good))
    original = tmp_path / "original.keras"
    shutil.copyfile(stored, original)
    fasta = write_fasta(tmp_path / "in.fa", {"r1": "ACGT" * 20})
    out = tmp_path / "tampered.tsv"
    try:
        shutil.copyfile(model_file, stored)
        expected, actual = good.tags[TAG_MODEL_SHA256], sha256_file(stored)
        assert expected != actual

        done = subprocess.run(
            [str(Path(sys.executable).with_name("danq")), "--params", str(tmp_path / "none.yaml"),
             "-S", f"mlflow.registered_model={registered.name}", "-S",
             f"paths.data_dir={tmp_path / 'data'}", "predict", "--input", str(fasta), "--out",
             str(out)],
            env=server.env(registered.reader, READER_PASSWORD),
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip

        assert done.returncode == 1, done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: model models:/{registered.name}@champion: sha256 mism")
        assert f"has sha256 {actual}, expected {expected}" in error and "do not use it" in error
        assert not out.exists() and not list(tmp_path.glob("*.tsv"))
        with registered.admin():
            with tracking.using(server.uri), pytest.raises(ModelIntegrityError, match=actual):
                predict_uri(f"models:/{registered.name}/{good.version}", "no-shards", 10)
            with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
                verified_sha256(tracking.client(server.uri), f"runs:/{good.run_id}/model")
    finally:
        shutil.copyfile(original, stored)


# --------------------------------------------------------------------------- local files


def test_h5_models_are_refused(tmp_path: Path) -> None:
    import keras

    legacy = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "legacy.h5"
    legacy.save(path)
    assert keras.saving.load_model(path, compile=False).output_shape == (None, 2)
    with pytest.raises(ModelIntegrityError, match=r"legacy.h5: legacy HDF5 \(.h5\) models are not"):
        load_model(str(path))


def test_mlflow_folders_load_only_as_keras_files(model, tmp_path: Path) -> None:
    import mlflow.keras
    import yaml

    folder = tmp_path / "mlflow_model"
    mlflow.keras.save_model(model, str(folder), pip_requirements=["keras"])
    keras_file = folder / "data" / "model.keras"
    sha256 = sha256_file(keras_file)
    loaded = load_verified_model(str(folder), expected_sha256=sha256)
    assert loaded.verified and loaded.sha256 == sha256
    assert loaded.model.output_shape == (None, 3)
    assert not load_verified_model(str(folder)).verified

    mlmodel = folder / "MLmodel"
    conf = yaml.safe_load(mlmodel.read_text())
    conf["flavors"]["keras"]["save_exported_model"] = True
    mlmodel.write_text(yaml.safe_dump(conf))
    with pytest.raises(ModelIntegrityError, match=r"exported TensorFlow SavedModel \(save_exp"):
        load_model(str(folder))
    del conf["flavors"]["keras"]["save_exported_model"]
    conf["flavors"]["keras"]["save_format"] = "h5"
    mlmodel.write_text(yaml.safe_dump(conf))
    with pytest.raises(ModelIntegrityError, match=r"old tf.keras flavor \(save_format h5\)"):
        load_model(str(folder))
    conf["flavors"]["keras"].update(save_exported_model=False, data="../elsewhere")
    mlmodel.write_text(yaml.safe_dump(conf))
    with pytest.raises(ModelIntegrityError, match="leaves the model folder"):
        load_model(str(folder))


def test_a_local_checksum_is_checked_when_given(model_file: Path) -> None:
    right = sha256_file(model_file)
    assert load_verified_model(str(model_file), expected_sha256=right.upper()).verified
    wrong = "f" * 64
    with pytest.raises(ModelIntegrityError, match=f"has sha256 {right}, expected {wrong}"):
        load_model(str(model_file), expected_sha256=wrong)
    with pytest.raises(PredictError, match="not 64 hexadecimal digits"):
        load_model(str(model_file), expected_sha256="abc")
    with pytest.raises(ModelIntegrityError, match="not a registered or logged model"):
        load_model(model_file.as_uri())


def test_a_lambda_layer_is_refused_by_safe_mode_even_when_unsafe_mode_is_on(
    tmp_path: Path,
) -> None:
    import keras
    from keras.src.saving.serialization_lib import SafeModeScope

    doubling = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    doubling.save(path)
    # As after keras.config.enable_unsafe_deserialization() elsewhere in the process.
    with SafeModeScope(False), pytest.raises(ModelIntegrityError) as refused:
        load_model(str(path))
    message = str(refused.value)
    assert message.startswith(f"model {path}: refused by Keras safe mode: Requested the ")
    assert "`Lambda` layer" in message and "Python bytecode" in message
    assert "safe_mode=False" not in message  # no advice to turn it off


def test_classes_registered_outside_danq_are_refused(tmp_path: Path) -> None:
    """Keras resolves a registered name among every class registered in the process, not
    only the custom_objects given: a model naming another package's class is refused."""
    import keras

    @keras.saving.register_keras_serializable(package="elsewhere")
    class Foreign(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs

    foreign = keras.Sequential([keras.Input((4,)), Foreign()])
    path = tmp_path / "foreign.keras"
    foreign.save(path)
    assert keras.saving.load_model(path, safe_mode=True).layers[0].__class__ is Foreign
    with pytest.raises(ModelIntegrityError, match=r"neither Keras built-ins nor danq's own"):
        load_model(str(path))

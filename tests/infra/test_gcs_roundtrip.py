"""gs:// end to end, against a real gcp-storage-emulator and a real `mlflow server` whose
artifact destination is a bucket on it, run with the Kubernetes Deployment's own options:
raw data on gs:// -> `danq data prepare` -> shards on gs:// -> `danq train` -> the model in
the bucket -> `danq predict` loads it back. And the DVC remote on gs:// through the dvc CLI.

Nothing is mocked: google-cloud-storage, gcsfs (danq.storage, dvc-gs) and MLflow's GCS
artifact repository all reach the emulator through STORAGE_EMULATOR_HOST alone, with
anonymous credentials (google-cloud-storage switches to them when the variable is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from danq import artifacts, tracking
from danq.cli.main import main
from danq.io import storage
from danq.model.integrity import verified_sha256

from .manifests import server_behaviour_options

BUCKET = "danq-gcs"
RAW = f"gs://{BUCKET}/raw"
SHARDS = f"gs://{BUCKET}/shards"
MODEL_NAME = "danq-gcs"
# The smallest DanQ-shaped model: the test is about where things are stored, not about learning.
TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
SEQUENCES = ">chr1:1000-1200\n" + "ACGT" * 50 + "\n>short\nGATTACANNNGATTACA\n"


def import_keras() -> None:
    import keras  # noqa: F401
    import mlflow.keras  # noqa: F401


def bucket_objects(prefix: str) -> list[str]:
    from google.cloud import storage as gcs

    client = gcs.Client()  # STORAGE_EMULATOR_HOST: the emulator, anonymous credentials
    return [blob.name for blob in client.list_blobs(BUCKET, prefix=prefix)]


@pytest.fixture(scope="module")
def gcs(gcs_emulator):
    with gcs_emulator(BUCKET) as host:
        yield host


@pytest.fixture(scope="module")
def server(gcs, tmp_path_factory: pytest.TempPathFactory, mlflow_server):
    """The tracking server as infra/k8s/mlflow runs it, storing artifacts in the bucket."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(
        root,
        while_starting=import_keras,
        artifacts=f"gs://{BUCKET}/mlflow",
        extra_args=server_behaviour_options(),
    ) as uri:
        yield uri


def mlflow_uris() -> tuple[str, str, str | None, str | None]:
    """MLflow's global tracking and registry URIs and the environment variables behind them."""
    import mlflow

    return (
        mlflow.get_tracking_uri(),
        mlflow.get_registry_uri(),
        os.environ.get("MLFLOW_TRACKING_URI"),
        os.environ.get("MLFLOW_REGISTRY_URI"),
    )


def status_with_host(uri: str, host: str) -> int:
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_server_answers_the_service_names_and_refuses_other_hosts(server: str) -> None:
    assert status_with_host(server, "mlflow.mlflow.svc.cluster.local:5000") == 200
    assert status_with_host(server, "mlflow:5000") == 200
    assert status_with_host(server, "localhost:5000") == 200  # kubectl port-forward
    assert status_with_host(server, "mlflow.attacker.example:5000") == 403


def write_params(folder: Path, tracking_uri: str) -> Path:
    params = {
        "paths": {"data_dir": RAW, "work_dir": str(folder / "build")},
        "prepare": {"shard_size": 100, "chunk_size": 50},
        "model": TINY_MODEL,
        "train": {"batch_size": 32, "max_epochs": 1, "patience": 1, "shuffle_buffer": 100},
        "mlflow": {
            "tracking_uri": tracking_uri,
            "experiment": "gcs",
            "registered_model": MODEL_NAME,
        },
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_prepare_train_predict_through_gcs(
    server: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("DANQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    before = mlflow_uris()  # unset, the default store is a path in the working directory
    for name in ("train.mat", "valid.mat", "test.mat", "metadata.json"):
        storage.upload(tiny_data / name, f"{RAW}/{name}")
    params = str(write_params(tmp_path, server))

    assert main(["--params", params, "data", "prepare", "--out", SHARDS, "--quiet"]) == 0
    assert "manifest.json" in storage.listdir(f"{SHARDS}/train")
    assert main(["--params", params, "train", "--variant", "baseline", "--shards", SHARDS]) == 0

    run = json.loads((tmp_path / "build" / "models" / "baseline" / "run.json").read_text())
    # The model and the run's files are in the bucket, not on the server's disk.
    objects = bucket_objects("mlflow/")
    assert [o for o in objects if o.endswith("/MLmodel")], objects
    assert [o for o in objects if o.endswith(".keras")], objects
    assert [o for o in objects if f"/{run['run_id']}/artifacts/" in o], objects

    # The commands leave MLflow's URIs as they found them: later tests never reach this server.
    assert mlflow_uris() == before
    # Registered as danq promote does: with the sha256 of the file in the bucket, which
    # danq predict checks before it loads the champion.
    client = tracking.client(server)
    digest = verified_sha256(client, run["logged_model_uri"])
    with tracking.using(server):
        version = mlflow.register_model(
            run["logged_model_uri"], MODEL_NAME, tags={artifacts.TAG_MODEL_SHA256: digest}
        )
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)

    fasta = f"gs://{BUCKET}/input/sequences.fa"
    with storage.open_binary(fasta, "wb") as fh:
        fh.write(SEQUENCES.encode())
    # Default model: models:/danq-gcs@champion, downloaded from the bucket via the server.
    assert main(["--params", params, "predict", "--input", fasta, "--out", "remote.tsv"]) == 0
    local_model = str(tmp_path / "build" / "models" / "baseline" / "model.keras")
    args = ["predict", "--input", fasta, "--out", "local.tsv", "--model", local_model]
    assert main(["--params", params, *args]) == 0

    remote = (tmp_path / "remote.tsv").read_text().splitlines()
    header = remote[0].split("\t")
    targets = json.loads((tiny_data / "metadata.json").read_text())["targets"]
    assert header[3:] == [t["name"] for t in targets]  # names travelled with the model
    assert [row.split("\t")[0] for row in remote[1:]] == ["chr1:1000-1200", "short"]
    assert remote[1:] == (tmp_path / "local.tsv").read_text().splitlines()[1:]
    assert mlflow_uris() == before


def md5_of_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def dvc(repo: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("dvc")
    done = subprocess.run(
        [str(exe), *args], cwd=repo, capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_dvc_remote_on_gcs_pushes_and_pulls_the_same_data(
    gcs, tiny_data: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    for name in ("valid.mat", "metadata.json"):
        (repo / "data" / name).write_bytes((tiny_data / name).read_bytes())
    original = md5_of_tree(repo / "data")

    dvc(repo, "init", "--no-scm", "-q")
    dvc(repo, "add", "data", "-q")
    # Nothing but the URL: dvc-gs (gcsfs) finds the emulator through STORAGE_EMULATOR_HOST.
    dvc(repo, "remote", "add", "-d", "gcs", f"gs://{BUCKET}/dvc")
    dvc(repo, "push")
    pointer = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    digest = pointer["md5"].removesuffix(".dir")
    assert f"dvc/files/md5/{digest[:2]}/{digest[2:]}.dir" in bucket_objects("dvc/")

    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc(repo, "pull")
    assert md5_of_tree(repo / "data") == original

"""MLflow tracking: runs reopened by id; provenance tags (DVC data version, git, versions)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import mlflow
import pytest

from danq import tracking

MD5 = "4e676c692044d19d8c81cf82225b8fea.dir"


def write_pointer(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    Path(f"{data_dir}.dvc").write_text(
        f"outs:\n- md5: {MD5}\n  size: 10\n  nfiles: 3\n  hash: md5\n  path: {data_dir.name}\n"
    )


def test_flatten_makes_dotted_keys():
    nested = {"variant": "baseline", "model": {"conv_filters": 8}, "dropout": {"pool": {"low": 0}}}
    assert tracking.flatten(nested) == {
        "variant": "baseline",
        "model.conv_filters": 8,
        "dropout.pool.low": 0,
    }


def test_untracked_data_has_no_version_tags(tmp_path):
    assert tracking.data_tags(None) == {}
    assert tracking.data_tags(tmp_path / "data") == {"data.path": str(tmp_path / "data")}


def test_dvc_pointer_gives_the_md5_and_no_remote_outside_a_dvc_repo(tmp_path):
    write_pointer(tmp_path / "data")
    tags = tracking.data_tags(tmp_path / "data")
    assert tags["data.md5"] == MD5
    assert "data.dvc_remote" not in tags


def test_dvc_repo_with_a_default_remote_gives_the_remote_url(tmp_path):
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    remote = tmp_path / "remote"
    (tmp_path / ".dvc" / "config").write_text(
        f"[core]\n    remote = store\n['remote \"store\"']\n    url = {remote}\n"
    )
    write_pointer(tmp_path / "data")
    tags = tracking.data_tags(tmp_path / "data")
    assert tags["data.md5"] == MD5
    assert tags["data.dvc_remote"] == f"{remote}/files/md5/4e/676c692044d19d8c81cf82225b8fea.dir"


def test_git_tags_name_the_commit_of_the_code_and_are_empty_outside_git(tmp_path):
    tags = tracking.git_tags()
    head = subprocess.run(
        ["git", "-C", str(Path(tracking.__file__).parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert tags["git.commit"] == head and len(head) == 40
    assert tags["git.dirty"] in ("true", "false")
    assert tracking.git_tags(tmp_path) == {}


def test_version_tags_cover_the_training_stack():
    tags = tracking.version_tags()
    for package in ("tensorflow", "keras", "mlflow", "numpy", "danq"):
        assert tags[f"versions.{package}"]
    assert tags["versions.python"].startswith("3.")


def test_quiet_mlflow_keeps_warnings_only():
    tracking.quiet_mlflow()
    assert logging.getLogger("mlflow").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("alembic").getEffectiveLevel() == logging.WARNING


def test_a_run_reopened_by_id_continues_with_its_params_and_metrics(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.client(uri).create_experiment(
        "tracking-test", artifact_location=str(tmp_path / "artifacts")
    )
    with tracking.using(uri):
        with tracking.start_run("tracking-test", None, "first") as run:
            run_id = run.info.run_id
            mlflow.log_params({"train.batch_size": 100})
            tracking.log_epoch(1, {"loss": 0.5})
        with tracking.start_run("tracking-test", run_id, "ignored") as again:
            assert again.info.run_id == run_id
            mlflow.log_params({"train.batch_size": 100})  # the same value again is accepted
            tracking.log_epoch(2, {"loss": 0.4})
            with pytest.raises(mlflow.exceptions.MlflowException):
                mlflow.log_params({"train.batch_size": 50})  # a changed setting is not
        assert tracking.logged_steps(run_id, "loss") == {1, 2}
    assert tracking.run_model_uri(run_id) == f"runs:/{run_id}/model"


def test_using_restores_the_uris_and_environment_it_found(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    uri = f"sqlite:///{tmp_path}/scoped.db"
    with tracking.using(uri):
        assert mlflow.get_tracking_uri() == uri
        assert mlflow.get_registry_uri() == uri
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.mark.parametrize(
    ("uri", "written"),
    [
        (
            "http://ci:hunter2@mlflow:5000/api?x=1&access_token=t0k",
            "http://ci:***@mlflow:5000/api?x=1&access_token=***",
        ),
        ("https://t0k@mlflow.example.org/", "https://***@mlflow.example.org/"),
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
        (
            "http://mlflow.mlflow.svc.cluster.local:5000",
            "http://mlflow.mlflow.svc.cluster.local:5000",
        ),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ],
)
def test_redact_uri_hides_passwords_and_tokens_and_keeps_the_rest(uri, written):
    from danq.redaction import redact_uri

    assert redact_uri(uri) == written

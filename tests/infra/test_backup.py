"""The PostgreSQL backup CronJob of infra/k8s/mlflow: it is wired to the database, the secret,
the bucket setting and its service account, and its own two commands, run here against a
throwaway PostgreSQL cluster and a GCS emulator, dump both databases to the bucket in a form
that pg_restore brings back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..deployed_registry import postgres_bindir, running_postgres
from .manifests import MLFLOW_K8S, find, kustomization, server_arguments
from .rendering import pod_spec, render

STAMP = re.compile(r"\d{8}T\d{6}Z")


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(MLFLOW_K8S, tmp_path_factory.mktemp("render"))


def backup_containers(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CronJob's dump (init) container and upload container."""
    spec = pod_spec(find(objects, "CronJob", "postgres-backup"))
    (dump,) = spec["initContainers"]
    (upload,) = spec["containers"]
    return dump, upload


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def env_refs(container: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}


def deployed_databases() -> set[str]:
    """POSTGRES_DB of the StatefulSet and the databases postgres-init.sql creates."""
    init = (MLFLOW_K8S / "postgres-init.sql").read_text()
    return {"mlflow"} | set(re.findall(r"CREATE DATABASE (\w+)", init))


def configured_destination() -> str:
    (generator,) = [
        g for g in kustomization(MLFLOW_K8S)["configMapGenerator"] if g["name"] == "postgres-backup"
    ]
    literals = dict(literal.split("=", 1) for literal in generator["literals"])
    return literals["BACKUP_DESTINATION"]


def test_backup_cronjob_dumps_both_databases_to_the_configured_bucket(
    objects: list[dict[str, Any]],
) -> None:
    cronjob = find(objects, "CronJob", "postgres-backup")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    for limit in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        assert 1 <= cronjob["spec"][limit] <= 5, limit
    pod = pod_spec(cronjob)
    account = find(objects, "ServiceAccount", pod["serviceAccountName"])
    assert "iam.gke.io/gcp-service-account" in account["metadata"].get("annotations", {})

    dump, upload = backup_containers(objects)
    store = urlsplit(server_arguments()["--backend-store-uri"])
    assert env_values(dump)["BACKUP_DATABASES"].split() == sorted(deployed_databases())
    assert env_values(upload)["BACKUP_DATABASES"] == env_values(dump)["BACKUP_DATABASES"]
    assert env_values(dump)["PGHOST"] == store.hostname
    assert env_values(dump)["PGPORT"] == str(store.port)
    assert env_values(dump)["PGUSER"] == store.username
    (server,) = pod_spec(find(objects, "Deployment", "mlflow"))["containers"]
    assert env_refs(dump)["PGPASSWORD"] == env_refs(server)["PGPASSWORD"]
    # pg_dump of the server's major version.
    (database,) = pod_spec(find(objects, "StatefulSet", "postgres"))["containers"]
    assert dump["image"] == database["image"]
    assert upload["image"] == server["image"]

    reference = env_refs(upload)["BACKUP_DESTINATION"]["configMapKeyRef"]
    assert reference["name"].startswith("postgres-backup")
    assert reference["key"] == "BACKUP_DESTINATION"
    assert configured_destination().startswith("gs://")
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]} for c in (dump, upload)}
    assert mounts["dump"]["backup"]["mountPath"] == mounts["upload"]["backup"]["mountPath"]
    assert mounts["upload"]["backup"].get("readOnly") is True


def run_container(
    container: dict[str, Any], env: dict[str, str], mount: Path, program: str | None = None
) -> str:
    """A container's command and script, run here with the backup volume at `mount`."""
    *command, script = [*container["command"], *container["args"]]
    if program is not None:
        assert command[0] == "python", command
        command[0] = program
    (backup,) = [m for m in container["volumeMounts"] if m["name"] == "backup"]
    done = subprocess.run(
        [*command, script.replace(backup["mountPath"], str(mount))],
        env={**os.environ, **env_values(container), **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_backup_commands_upload_dumps_that_restore_both_databases(
    objects: list[dict[str, Any]],
    free_port: int,
    gcs_emulator: Callable[[str], AbstractContextManager[str]],
    tmp_path: Path,
) -> None:
    import psycopg
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    dump, upload = backup_containers(objects)
    databases = sorted(deployed_databases())
    bindir = postgres_bindir()
    tools = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    prefix = urlsplit(configured_destination()).path.strip("/")
    with running_postgres(free_port, tuple(databases)) as cluster, gcs_emulator("danq-backups"):
        for name in databases:
            with psycopg.connect(cluster.uri(name, with_password=True), autocommit=True) as db:
                db.execute("CREATE TABLE marker (database text)")
                db.execute("INSERT INTO marker VALUES (%s)", (name,))
        login = {
            "PGHOST": cluster.host,
            "PGPORT": str(cluster.port),
            "PGUSER": cluster.user,
            "PGPASSWORD": cluster.password,
        }
        run_container(dump, {**tools, **login}, tmp_path)
        destination = {"BACKUP_DESTINATION": f"gs://danq-backups/{prefix}"}
        printed = run_container(upload, destination, tmp_path, program=sys.executable)

        client = storage.Client(project="danq-test", credentials=AnonymousCredentials())
        blobs = {b.name: b for b in client.list_blobs("danq-backups")}
        (stamp,) = {name.split("/")[-2] for name in blobs}
        assert STAMP.fullmatch(stamp), sorted(blobs)
        expected = {f"{prefix}/{stamp}/{name}.dump" for name in databases}
        assert set(blobs) == expected, printed
        for name in databases:
            restored = f"restored_{name}"
            with psycopg.connect(
                cluster.uri("postgres", with_password=True), autocommit=True
            ) as db:
                db.execute(f'CREATE DATABASE "{restored}" OWNER "{cluster.user}"')
            data = blobs[f"{prefix}/{stamp}/{name}.dump"].download_as_bytes()
            subprocess.run(
                [
                    str(bindir / "pg_restore"),
                    "--clean",
                    "--if-exists",
                    "--single-transaction",
                    f"--username={cluster.user}",
                    f"--dbname={restored}",
                ],
                input=data,
                env={**os.environ, **login},
                check=True,
                capture_output=True,
            )
            with psycopg.connect(cluster.uri(restored, with_password=True)) as db:
                rows = db.execute("SELECT database FROM marker").fetchall()
            assert rows == [(name,)], (name, rows)

"""The auth_registry fixture is the registry as deployed: these would pass against a SQLite
server without authentication only if they asserted nothing."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest


def test_the_registry_stores_in_postgresql_and_requires_a_login(auth_registry) -> None:
    import mlflow
    import psycopg

    name = f"fixture-{uuid.uuid4().hex[:8]}"
    with auth_registry.login(*auth_registry.admin):
        mlflow.MlflowClient(auth_registry.uri, auth_registry.uri).create_registered_model(name)
    cluster = auth_registry.database
    with psycopg.connect(cluster.uri("mlflow", with_password=True)) as db:
        rows = db.execute("SELECT name FROM registered_models WHERE name = %s", (name,)).fetchall()
    assert rows == [(name,)]

    url = f"{auth_registry.uri}/api/2.0/mlflow/registered-models/get?name={name}"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(url, timeout=10)
    assert anonymous.value.code == 401


def test_a_new_user_may_read_but_not_edit_what_others_created(auth_registry) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    name, user = f"fixture-{uuid.uuid4().hex[:8]}", f"reader-{uuid.uuid4().hex[:6]}"
    auth_registry.add_user(user, "reader-password-1")
    with auth_registry.login(*auth_registry.admin):
        mlflow.MlflowClient(auth_registry.uri, auth_registry.uri).create_registered_model(name)
    with auth_registry.login(user, "reader-password-1"):
        client = mlflow.MlflowClient(auth_registry.uri, auth_registry.uri)
        assert client.get_registered_model(name).name == name
        with pytest.raises(MlflowException) as denied:
            client.set_registered_model_tag(name, "k", "v")
    assert denied.value.error_code == "PERMISSION_DENIED"

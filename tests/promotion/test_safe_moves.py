"""Safe concurrent promotion and permissions on the registry as deployed (the auth_registry
fixture: PostgreSQL store, basic auth with default permission READ, proxied artifacts).

Users: the admin (an operator here), a pipeline user made and granted by
`danq registry grant`, and users with nothing but the default READ. Different users at once
run as subprocesses (MLflow reads the login from the environment); one user at a time runs
in-process under auth_registry.login.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from mlflow import MlflowClient

from danq.artifacts import TAG_ROLLED_BACK
from danq.cli.main import main
from danq.config import PromoteConfig
from danq.errors import AliasMoveError, ChampionChanged, RegistryLocked
from danq.promotion import lock, moves
from danq.promotion.promote import promote_candidates
from danq.promotion.registry import CHAMPION, PREVIOUS_CHAMPION, RetryingClient, aliases

from .tiny import (
    FailingClient,
    log_models,
    make_task,
    make_versions,
    predict_fn,
    version_sources,
    write_params,
    write_round,
)

CFG = PromoteConfig(bootstrap_samples=200, min_macro_auroc=0.55, lock_wait_s=30)
DANQ = str(Path(sys.executable).with_name("danq"))
# old < mid < r_random_dropout (the true model): the candidate of a promotion round.
MODELS = {"old": 1.0, "mid": 0.5, "r_random_dropout": 0.0}


@dataclass(frozen=True)
class Login:
    user: str
    password: str


@dataclass(frozen=True)
class Deployed:
    server: Any  # tests/deployed_registry.AuthServer
    folder: Path
    experiment: str
    pipeline: Login
    task: dict
    logged: dict
    sources: list[dict]

    @property
    def uri(self) -> str:
        return str(self.server.uri)

    def login(self, who: Login | None = None) -> contextlib.AbstractContextManager[None]:
        """MLflow calls in this process as who (default: the admin)."""
        return self.server.login(*((who.user, who.password) if who else self.server.admin))

    def params(self, name: str) -> str:
        return write_params(
            self.folder / f"{name}.yaml", self.uri, name, mlflow={"experiment": self.experiment}
        )


def new_login(server: Any, role: str) -> Login:
    """A new MLflow user with the default permission (READ) only."""
    login = Login(f"{role}-{uuid.uuid4().hex[:6]}", secrets.token_hex(10))
    server.add_user(login.user, login.password)
    return login


def danq_grant(deployed: Deployed, user: str, name: str, password: str | None = None) -> str:
    """`danq registry grant --user user` for registered model `name`, as the admin; stdout."""
    argv = ["--params", deployed.params(name), "registry", "grant", "--user", user]
    environment = {}
    if password is not None:
        argv += ["--password-env", "DANQ_TEST_PASSWORD"]
        environment["DANQ_TEST_PASSWORD"] = password
    out = io.StringIO()
    with (
        deployed.login(),
        mock.patch.dict(os.environ, environment),
        contextlib.redirect_stdout(out),
    ):
        assert main(argv) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def deployed(auth_registry, tmp_path_factory) -> Deployed:
    """A pipeline user made by `danq registry grant`, and tiny models it logged."""
    folder = tmp_path_factory.mktemp("safe_moves")
    experiment = f"danq-moves-{uuid.uuid4().hex[:6]}"
    pipeline = Login(f"pipeline-{uuid.uuid4().hex[:6]}", secrets.token_hex(10))
    partial = Deployed(auth_registry, folder, experiment, pipeline, {}, {}, [])
    created = danq_grant(partial, pipeline.user, f"{experiment}-sources", pipeline.password)
    assert f"user {pipeline.user!r}: created" in created
    task = make_task()
    with partial.login(pipeline):
        logged = log_models(auth_registry.uri, experiment, task, MODELS)
        client = RetryingClient(auth_registry.uri, max_retries=0)
        sources = version_sources(client, f"{experiment}-sources", logged)
    return Deployed(auth_registry, folder, experiment, pipeline, task, logged, sources)


def fresh_model(deployed: Deployed) -> tuple[str, list[str]]:
    """A registered model created by the admin, the pipeline user granted on it; versions
    v1 (old), v2 (mid), v3 and v4 (the true model); champion v2, previous-champion v1."""
    name = f"danq-{uuid.uuid4().hex[:8]}"
    granted = danq_grant(deployed, deployed.pipeline.user, name)
    assert f"registered model {name!r}: created" in granted
    with deployed.login(deployed.pipeline):
        sources = [*deployed.sources, deployed.sources[-1]]
        versions = make_versions(deployed.uri, name, sources)
        # Set directly, not promoted: fewer requests (each costs the auth server a password hash).
        client = MlflowClient(deployed.uri, deployed.uri)
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, versions[0])
        client.set_registered_model_alias(name, CHAMPION, versions[1])
    return name, versions


def current(deployed: Deployed, name: str) -> dict[str, str]:
    with deployed.login():
        return aliases(RetryingClient(deployed.uri, max_retries=0), name)


def test_after_grant_the_pipeline_user_promotes_and_a_reader_is_refused(deployed, tmp_path, capsys):
    name, (v1, v2, v3, _) = fresh_model(deployed)
    again = danq_grant(deployed, deployed.pipeline.user, name)
    assert f"user {deployed.pipeline.user!r}: exists" in again
    assert f"registered model {name!r}: exists" in again
    assert again.count(f"{deployed.pipeline.user!r} already has EDIT") == 2

    reader = new_login(deployed.server, "reader")
    by_hand = ["--params", deployed.params(name), "registry", "promote", "--version", v3]
    capsys.readouterr()
    with deployed.login(reader):
        assert main([*by_hand, "--expect-champion", v2]) == 1
    err = capsys.readouterr().err
    assert f"MLflow user {reader.user!r} lacks EDIT permission on registered model {name!r}" in err
    assert current(deployed, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    with deployed.login():
        client = RetryingClient(deployed.uri, max_retries=0)
        assert lock.read_lock(client, name) is None
        assert moves.pending_move(client, name) == (None, None)

    # `danq promote` by the reader, on a model the admin made and nobody granted it: refused
    # at registration, nothing registered, no alias.
    empty = f"danq-{uuid.uuid4().hex[:8]}"
    danq_grant(deployed, deployed.pipeline.user, empty)
    eval_dir = write_round(
        tmp_path / "eval", deployed.task, deployed.logged, "r", variants=("random_dropout",)
    )
    promote = ["--params", deployed.params(empty), "promote", "--eval-dir", str(eval_dir)]
    with deployed.login(reader):
        assert main([*promote, "--variants", "random_dropout", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"MLflow user {reader.user!r} lacks EDIT (and READ on the source run) permission " in err
    assert f"on registered model {empty!r}" in err
    assert current(deployed, empty) == {}

    with deployed.login(deployed.pipeline):
        assert main([*by_hand, "--expect-champion", v2]) == 0
    assert current(deployed, name) == {CHAMPION: v3, PREVIOUS_CHAMPION: v2}


def test_two_promotions_started_at_once_one_wins_the_other_is_refused(deployed):
    name, (v1, v2, v3, v4) = fresh_model(deployed)
    params = deployed.params(name)
    env = deployed.server.env(deployed.pipeline.user, deployed.pipeline.password)
    started = [
        subprocess.Popen(
            [
                DANQ,
                "--params",
                params,
                "registry",
                "promote",
                "--version",
                version,
                "--expect-champion",
                v2,
            ],  # fmt: skip
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in (v3, v4)
    ]
    done = {v: (*p.communicate(timeout=180), p.returncode) for v, p in zip((v3, v4), started)}
    assert sorted(rc for _, _, rc in done.values()) == [0, 1], done
    (winner,) = [v for v, (_, _, rc) in done.items() if rc == 0]
    (loser_err,) = [err for _, err, rc in done.values() if rc == 1]
    refused = (
        f"champion of {name!r} is now version {winner}, this promotion decided against "
        f"version {v2}: nothing moved"
    )
    assert refused in loser_err or "is locked by another command" in loser_err, loser_err
    assert current(deployed, name) == {CHAMPION: winner, PREVIOUS_CHAMPION: v2}


def test_a_rollback_during_a_promotion_refuses_it_and_the_rolled_back_version_stays_off(
    deployed, tmp_path
):
    name, (v1, v2, _, _) = fresh_model(deployed)
    eval_dir = write_round(
        tmp_path / "eval", deployed.task, deployed.logged, "r", variants=("random_dropout",)
    )
    score = predict_fn(deployed.task)
    operator = deployed.server.env(*deployed.server.admin)
    rollbacks = []

    def score_while_an_operator_rolls_back(model_uri: str):
        """The promotion scores champion v2; meanwhile an operator rolls v2 back to v1."""
        scores = score(model_uri)
        rollbacks.append(
            subprocess.run(
                [
                    DANQ,
                    "--params",
                    deployed.params(name),
                    "registry",
                    "rollback",
                    "--expect-champion",
                    v2,
                ],  # fmt: skip
                env=operator,
                capture_output=True,
                text=True,
            )
        )
        return scores

    client = RetryingClient(deployed.uri, max_retries=1)
    with deployed.login(deployed.pipeline):
        with pytest.raises(
            ChampionChanged,
            match=f"now version {v1}, this promotion decided against version {v2}: nothing",
        ):
            promote_candidates(
                client,
                name,
                CFG,
                eval_dir,
                ["random_dropout"],
                tmp_path / "promote",
                score_while_an_operator_rolls_back,
            )
    (rolled,) = rollbacks
    assert rolled.returncode == 0, rolled.stderr
    assert f"champion {v2} -> {v1}, previous-champion {v1} -> {v2}" in rolled.stdout
    assert current(deployed, name) == {CHAMPION: v1, PREVIOUS_CHAMPION: v2}
    with deployed.login():
        record = json.loads(client.get_model_version(name, v2).tags[TAG_ROLLED_BACK])
    assert record["champion"] == v1 and deployed.server.admin[0] in record["by"]

    # The next round decides against the champion as it now is; v2 stays off.
    with deployed.login(deployed.pipeline):
        again = promote_candidates(
            client, name, CFG, eval_dir, ["random_dropout"], tmp_path / "again", score
        )
    assert again.decision == "promote"
    new = again.verdict("random_dropout").registered_version
    assert current(deployed, name) == {CHAMPION: new, PREVIOUS_CHAMPION: v1}


def test_a_rollback_decided_before_a_promotion_is_refused_after_it(deployed, capsys):
    name, (v1, v2, v3, _) = fresh_model(deployed)
    # The operator decides to roll back champion v2; a promotion of v3 lands first.
    with deployed.login(deployed.pipeline):
        moves.promote(RetryingClient(deployed.uri, max_retries=0), name, v3, v2, CFG)
    capsys.readouterr()
    rollback = ["--params", deployed.params(name), "registry", "rollback"]
    with deployed.login():
        assert main([*rollback, "--expect-champion", v2]) == 1
    err = capsys.readouterr().err
    assert f"champion of {name!r} is now version {v3}, this rollback decided against " in err
    assert "nothing moved" in err
    assert current(deployed, name) == {CHAMPION: v3, PREVIOUS_CHAMPION: v2}


def test_a_failure_between_the_alias_writes_is_reported_and_repaired(deployed, capsys):
    name, (v1, v2, v3, _) = fresh_model(deployed)
    failing = FailingClient(
        MlflowClient(deployed.uri, deployed.uri),
        lambda n, alias, version: RuntimeError("killed") if n == 2 else None,
    )
    params = deployed.params(name)
    with deployed.login(deployed.pipeline):
        with pytest.raises(AliasMoveError, match="failed part-way"):
            moves.promote(RetryingClient(deployed.uri, 0, client=failing), name, v3, v2, CFG)
        # The state the issue describes: previous-champion moved, champion not yet.
        assert current(deployed, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v2}
        capsys.readouterr()
        assert main(["--params", params, "registry", "show"]) == 0
        shown = capsys.readouterr().out
        assert (
            f"unfinished alias move (promote: champion {v2} -> {v3}, previous-champion "
            f"{v1} -> {v2}, by MLflow user {deployed.pipeline.user!r}"
        ) in shown
        assert main(["--params", params, "registry", "rollback"]) == 0
    out, err = capsys.readouterr()
    assert f"registry: found an unfinished alias move of {name!r}" in err
    assert "completed it" in err
    assert f"champion {v3} -> {v2}, previous-champion {v2} -> {v3}" in out
    assert current(deployed, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v3}
    with deployed.login():
        assert moves.pending_move(RetryingClient(deployed.uri, 0), name) == (None, None)


def test_only_its_owner_or_an_admin_may_break_an_expired_lock(deployed, capsys):
    name, (v1, v2, v3, _) = fresh_model(deployed)
    editor = new_login(deployed.server, "editor")
    danq_grant(deployed, editor.user, name)
    no_wait = CFG.model_copy(update={"lock_wait_s": 0.0})
    with deployed.login(deployed.pipeline):  # a pipeline step that dies holding the lock
        lock.acquire(RetryingClient(deployed.uri, 0), name, expiry_s=0.5, wait_s=0)
    time.sleep(0.6)
    with deployed.login(editor):
        with pytest.raises(RegistryLocked, match="may not break another user's lock") as locked:
            moves.promote(RetryingClient(deployed.uri, 0), name, v3, v2, no_wait)
    assert f"held by MLflow user {deployed.pipeline.user!r}" in str(locked.value)
    assert "lacks EDIT permission on registered model" in str(locked.value)
    assert current(deployed, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    capsys.readouterr()
    with deployed.login():
        moves.promote(RetryingClient(deployed.uri, 0), name, v3, v2, no_wait)
    assert f"broke the expired registry lock of {name!r}" in capsys.readouterr().err
    assert current(deployed, name) == {CHAMPION: v3, PREVIOUS_CHAMPION: v2}
    with deployed.login():
        assert lock.read_lock(RetryingClient(deployed.uri, 0), name) is None

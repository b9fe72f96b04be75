"""Registry and promotion against a real `mlflow server` (SQLite, no authentication) on
127.0.0.1 with real Keras models (tests/promotion/tiny.py). The registry as deployed
(PostgreSQL, basic auth) is exercised in test_safe_moves.py and test_deployed_registry.py."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow import MlflowClient

from danq.artifacts import (
    TAG_ALIAS_MOVE,
    TAG_MODEL_SHA256,
    TAG_REPLACED_VERSION,
    TAG_ROLLED_BACK,
)
from danq.cli.main import main
from danq.config import VARIANTS, PromoteConfig
from danq.errors import (
    AliasMoveError,
    ChampionChanged,
    ModelIntegrityError,
    RegistryLocked,
    RegistryUnavailable,
)
from danq.model.loading import load_model, load_verified_model
from danq.promotion import lock, moves
from danq.promotion.decide import array_md5
from danq.promotion.promote import promote_candidates, score_champion
from danq.promotion.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    RetryingClient,
    aliases,
    connect,
    register_candidate,
)

from .tiny import (
    N_INPUTS,
    N_TARGETS,
    FailingClient,
    log_models,
    make_task,
    make_versions,
    predict_fn,
    version_sources,
    write_params,
    write_round,
)

CFG = PromoteConfig(bootstrap_samples=200, min_macro_auroc=0.55, lock_wait_s=5)
# Perturbation size of each logged model's weights: 0 is the true model.
MODELS = {
    "r1_baseline": 1.0,
    "r1_random_dropout": 0.5,
    "r2_baseline": 1.4,
    "r2_random_dropout": 1.0,
    "r3_baseline": 1.0,
    "r3_random_dropout": 0.0,
}


@pytest.fixture(scope="module")
def task():
    return make_task()


@pytest.fixture(scope="module")
def logged(server: str, task) -> dict[str, dict]:
    """The models of MODELS logged as runs on the server: run_id, model_uri, test scores."""
    return log_models(server, "danq-test", task, MODELS)


def test_worse_round_keeps_champion_better_round_moves_it_rollback_restores(
    server, task, logged, tmp_path
):
    from mlflow import MlflowClient

    name = "danq-lifecycle"
    client = RetryingClient(server, max_retries=1)
    plain = MlflowClient(server)

    def promotion_round(round_name: str, out: str | None = None):
        eval_dir = tmp_path / round_name / "eval"
        if not eval_dir.exists():
            write_round(eval_dir, task, logged, round_name)
        return promote_candidates(
            client,
            name,
            CFG,
            eval_dir,
            list(VARIANTS),
            tmp_path / round_name / (out or "promote"),
            predict_fn(task),
            seed=7,
        )

    # Round 1: no champion, floors only; the better of the two becomes champion.
    first = promotion_round("r1")
    assert (first.decision, first.chosen) == ("promote", "random_dropout")
    champion_v = first.verdict("random_dropout").registered_version
    assert aliases(client, name) == {CHAMPION: champion_v}
    version = plain.get_model_version(name, champion_v)
    assert version.run_id == logged["r1_random_dropout"]["run_id"]
    assert {
        k: version.tags[k]
        for k in ("danq.variant", "data.md5", "git.commit", "danq.blessed", "danq.chosen")
    } == {
        "danq.variant": "random_dropout",
        "data.md5": "d41d8cd9",
        "git.commit": "commit-r1",
        "danq.blessed": "true",
        "danq.chosen": "true",
    }
    assert float(version.tags["metric.aupr"]) == pytest.approx(
        first.verdict("random_dropout").metrics["aupr"], abs=1e-6
    )
    # Registration recorded the model file's sha256, the one logging recorded.
    run_sha = plain.get_run(version.run_id).data.tags[TAG_MODEL_SHA256]
    assert version.tags[TAG_MODEL_SHA256] == run_sha and len(run_sha) == 64
    assert version.tags[TAG_REPLACED_VERSION] == "none"
    assert TAG_ALIAS_MOVE not in plain.get_registered_model(name).tags

    # Round 2, a worse configuration: registered and tagged, but champion does not move.
    second = promotion_round("r2")
    assert (second.decision, second.chosen) == ("keep", None)
    assert aliases(client, name) == {CHAMPION: champion_v}
    assert second.champion["version"] == champion_v
    # The champion was re-scored from the registry on the same rows as its own evaluation.
    assert second.champion["predictions_md5"] == array_md5(logged["r1_random_dropout"]["y_score"])
    for verdict in second.candidates:
        assert not verdict.blessed and verdict.vs_champion.ci_high < 0
        tags = plain.get_model_version(name, verdict.registered_version).tags
        assert (tags["danq.blessed"], tags["danq.decision"]) == ("false", "keep")
        run = plain.get_run(verdict.run_id)
        assert run.data.tags["danq.blessed"] == "false"
        logged_doc = json.loads(
            Path(
                plain.download_artifacts(verdict.run_id, "promotion/blessing.json", str(tmp_path))
            ).read_text()
        )
        assert logged_doc["decision"] == "keep"
        assert logged_doc["registry"]["aliases"] == {CHAMPION: champion_v}
    local_doc = json.loads((tmp_path / "r2" / "promote" / "blessing.json").read_text())
    assert [c["registered_version"] for c in local_doc["candidates"]] == [
        v.registered_version for v in second.candidates
    ]

    # Round 3, a better configuration: champion moves, the old one is previous-champion.
    third = promotion_round("r3")
    assert (third.decision, third.chosen) == ("promote", "random_dropout")
    assert third.verdict("random_dropout").vs_champion.ci_low > 0
    new_v = third.verdict("random_dropout").registered_version
    assert aliases(client, name) == {CHAMPION: new_v, PREVIOUS_CHAMPION: champion_v}
    assert plain.get_model_version(name, new_v).tags[TAG_REPLACED_VERSION] == champion_v
    assert len(plain.search_model_versions(f"name = '{name}'")) == 6

    # Rollback swaps the two aliases and tags the version taken off; a second one swaps back.
    assert moves.rollback(client, name, new_v, CFG) == {
        CHAMPION: champion_v,
        PREVIOUS_CHAMPION: new_v,
    }
    rolled = json.loads(plain.get_model_version(name, new_v).tags[TAG_ROLLED_BACK])
    assert rolled["champion"] == champion_v and "pid" in rolled["by"]
    assert (
        plain.get_model_version_by_alias(name, CHAMPION).run_id
        == (logged["r1_random_dropout"]["run_id"])
    )
    # A rollback stating the champion it takes off is not repeated by a retry.
    with pytest.raises(ChampionChanged, match=f"now version {champion_v}, this rollback"):
        moves.rollback(client, name, new_v, CFG)
    assert moves.rollback(client, name, champion_v, CFG) == {
        CHAMPION: new_v,
        PREVIOUS_CHAMPION: champion_v,
    }

    # Promoting the same round again reuses its versions instead of adding new ones.
    again = promotion_round("r3", "again")
    assert again.decision == "keep"  # the champion is this very model: no gain
    assert again.verdict("random_dropout").registered_version == new_v
    assert len(plain.search_model_versions(f"name = '{name}'")) == 6

    # Rolled back once more, its version does not come back by itself: promotion blesses it
    # against the older champion but keeps the champion, and says why.
    moves.rollback(client, name, new_v, CFG)
    kept = promotion_round("r3", "after-rollback")
    assert kept.verdict("random_dropout").blessed
    assert (kept.decision, kept.chosen) == ("keep", None)
    assert f"version {new_v} was rolled back" in kept.reason
    assert aliases(client, name) == {CHAMPION: champion_v, PREVIOUS_CHAMPION: new_v}
    assert plain.get_model_version(name, new_v).tags["danq.chosen"] == "false"


FAIL_FAST_VARIABLES = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture(scope="module")
def sources(server, logged) -> list[dict]:
    """Three logged models, registered once: what each test's own versions are made from."""
    keys = ["r1_baseline", "r1_random_dropout", "r3_random_dropout"]
    client = RetryingClient(server, max_retries=0)
    return version_sources(client, "danq-sources", {k: logged[k] for k in keys})


@pytest.fixture
def three_versions(server, sources, request) -> tuple[str, list[str]]:
    """A model of its own with versions v1..v3, champion v2 and previous-champion v1."""
    name = f"danq-{uuid.uuid4().hex[:8]}"
    versions = make_versions(server, name, sources)
    client = RetryingClient(server, max_retries=0)
    moves.promote(client, name, versions[0], None, CFG)
    moves.promote(client, name, versions[1], versions[0], CFG)
    return name, versions


def test_promotion_chooses_on_validation_and_only_reports_test(server, task, logged, tmp_path):
    """Through promote_candidates and the registry: test scores that favour the other model
    change nothing. Round 1 (no champion): random_dropout is better on validation, baseline
    on test -> random_dropout. Round 2: candidates worse than the champion on validation but
    perfect on test -> the champion stays."""
    client = RetryingClient(server, max_retries=1)
    name = "danq-valid-decides"
    perfect = logged["r3_random_dropout"]["y_score"]  # the true model's scores
    worst = logged["r2_baseline"]["y_score"]
    first_dir = write_round(
        tmp_path / "r1",
        task,
        logged,
        "r1",
        test_scores={"baseline": perfect, "random_dropout": worst},
    )
    first = promote_candidates(
        client, name, CFG, first_dir, list(VARIANTS), tmp_path / "p1", predict_fn(task), seed=7
    )
    assert (first.decision, first.chosen) == ("promote", "random_dropout")
    assert (
        first.verdict("baseline").test_metrics["aupr"]
        > (first.verdict("random_dropout").test_metrics["aupr"])
    )
    document = json.loads((tmp_path / "p1" / "blessing.json").read_text())
    assert (document["decided_on"], document["reported_on"]) == ("valid", "test")
    champion_v = first.verdict("random_dropout").registered_version
    tags = MlflowClient(server).get_model_version(name, champion_v).tags
    assert float(tags["metric.aupr"]) == pytest.approx(
        first.verdict("random_dropout").test_metrics["aupr"], abs=1e-6
    )
    assert float(tags["metric.valid_aupr"]) == pytest.approx(
        first.verdict("random_dropout").metrics["aupr"], abs=1e-6
    )

    second_dir = write_round(
        tmp_path / "r2", task, logged, "r2", test_scores=dict.fromkeys(VARIANTS, perfect)
    )
    second = promote_candidates(
        client, name, CFG, second_dir, list(VARIANTS), tmp_path / "p2", predict_fn(task), seed=7
    )
    assert (second.decision, second.chosen) == ("keep", None)
    assert all(v.vs_champion.ci_high < 0 for v in second.candidates)
    assert aliases(client, name) == {CHAMPION: champion_v}


@pytest.mark.parametrize("failure", ["error", "connection"])
def test_failure_between_the_alias_writes_is_completed_by_the_next_command(
    server, three_versions, failure, capsys
):
    from mlflow import MlflowClient

    name, (v1, v2, v3) = three_versions
    assert aliases(RetryingClient(server, 0), name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    if failure == "error":  # the second alias write of the move fails once
        should_fail = lambda n, alias, version: RuntimeError("injected") if n == 2 else None  # noqa: E731
    else:  # the server drops every attempt to move champion
        should_fail = lambda n, alias, version: (  # noqa: E731
            requests.ConnectionError("injected: connection reset") if alias == CHAMPION else None
        )
    failing = FailingClient(MlflowClient(server), should_fail)
    client = RetryingClient(server, max_retries=2, client=failing)

    with pytest.raises(AliasMoveError, match="failed part-way .* next registry command completes"):
        moves.promote(client, name, v3, v2, CFG)
    # previous-champion first, champion last; nothing written back over the move.
    assert failing.alias_calls[0] == (PREVIOUS_CHAMPION, v2)
    assert failing.alias_calls[1:] == [(CHAMPION, v3)] * (1 if failure == "error" else 3)
    healthy = RetryingClient(server, 0)
    assert aliases(healthy, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v2}
    assert lock.read_lock(healthy, name) is None  # released despite the failure

    # The record of the move says what was meant; the next command completes it first.
    move, _ = moves.pending_move(healthy, name)
    assert (move.before, move.after) == (
        {CHAMPION: v2, PREVIOUS_CHAMPION: v1},
        {CHAMPION: v3, PREVIOUS_CHAMPION: v2},
    )
    capsys.readouterr()
    assert moves.rollback(healthy, name, v3, CFG) == {CHAMPION: v2, PREVIOUS_CHAMPION: v3}
    assert "found an unfinished alias move" in capsys.readouterr().err
    assert moves.pending_move(healthy, name) == (None, None)
    assert MlflowClient(server).get_model_version(name, v3).tags[TAG_REPLACED_VERSION] == v2


def test_failure_at_the_first_alias_write_moves_nothing_and_leaves_no_record(
    server, three_versions
):
    from mlflow import MlflowClient

    name, (v1, v2, v3) = three_versions
    failing = FailingClient(MlflowClient(server), lambda n, alias, version: RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        moves.promote(RetryingClient(server, 0, client=failing), name, v3, v2, CFG)
    healthy = RetryingClient(server, 0)
    assert aliases(healthy, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    assert moves.pending_move(healthy, name) == (None, None)


def test_a_version_without_its_sha256_is_not_made_champion(server, three_versions):
    from mlflow import MlflowClient

    name, (v1, v2, v3) = three_versions
    MlflowClient(server).delete_model_version_tag(name, v3, TAG_MODEL_SHA256)
    client = RetryingClient(server, 0)
    with pytest.raises(ModelIntegrityError, match=f"version {v3} .* no danq.model_sha256 tag"):
        moves.promote(client, name, v3, v2, CFG)
    with pytest.raises(AliasMoveError, match="has no version 99"):
        moves.promote(client, name, "99", v2, CFG)
    assert aliases(client, name) == {CHAMPION: v2, PREVIOUS_CHAMPION: v1}


def test_a_held_lock_makes_others_wait_then_fail_and_an_expired_one_is_broken(
    server, three_versions, capsys
):
    name, (v1, v2, v3) = three_versions
    client = RetryingClient(server, 0)
    held = lock.acquire(client, name, expiry_s=60, wait_s=0)
    started = time.monotonic()
    with pytest.raises(RegistryLocked, match=rf"{name}' is locked .* held by MLflow user .*pid"):
        moves.promote(client, name, v3, v2, CFG.model_copy(update={"lock_wait_s": 1.0}))
    assert 1.0 <= time.monotonic() - started < 10
    lock.release(client, held)
    assert lock.read_lock(client, name) is None

    # A command that died holding the lock: once expired, the next one breaks it.
    crashed = lock.acquire(client, name, expiry_s=0.5, wait_s=0)
    time.sleep(0.6)
    capsys.readouterr()
    assert moves.promote(client, name, v3, v2, CFG)[CHAMPION] == v3
    assert f"broke the expired registry lock of '{name}'" in capsys.readouterr().err
    assert lock.read_lock(client, name) is None
    # The crashed command, had it lived on, finds its lock gone and says so.
    lock.release(client, crashed)
    assert "had expired and was broken" in capsys.readouterr().err


def test_two_threads_promoting_at_once_one_wins_one_is_refused(server, three_versions, monkeypatch):
    name, (v1, v2, v3) = three_versions
    # tracking.fail_fast_http sets process-wide variables; threads can interleave its restores.
    for variable in FAIL_FAST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    outcomes: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def promote(version: str) -> None:
        client = RetryingClient(server, 0)
        barrier.wait()
        try:
            outcomes[version] = moves.promote(client, name, version, v2, CFG)
        except (ChampionChanged, RegistryLocked) as err:
            outcomes[version] = err

    threads = [threading.Thread(target=promote, args=(v,)) for v in (v1, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for v, outcome in outcomes.items() if isinstance(outcome, dict)]
    assert len(winners) == 1, outcomes
    (loser,) = {v1, v3} - set(winners)
    assert isinstance(outcomes[loser], ChampionChanged)
    assert f"now version {winners[0]}, this promotion decided against version {v2}" in str(
        outcomes[loser]
    )
    assert aliases(RetryingClient(server, 0), name) == {
        CHAMPION: winners[0],
        PREVIOUS_CHAMPION: v2,
    }


def test_unreachable_server_fails_fast_and_leaves_aliases(server, task, logged, tmp_path, dead_uri):
    name = "danq-unreachable"
    live = RetryingClient(server, max_retries=0)
    version = register_candidate(live, name, logged["r1_baseline"]["model_uri"], {})
    moves.promote(live, name, version, None, CFG)
    before = aliases(live, name)
    eval_dir = write_round(tmp_path / "eval", task, logged, "r3")

    started = time.monotonic()
    with pytest.raises(
        RegistryUnavailable,
        match=rf"^MLflow tracking server at {dead_uri} unreachable after 3 attempts: .*refused",
    ):
        promote_candidates(
            RetryingClient(dead_uri, max_retries=2),
            name,
            CFG,
            eval_dir,
            list(VARIANTS),
            tmp_path / "promote",
            predict_fn(task),
        )
    assert time.monotonic() - started < 30
    assert aliases(live, name) == before


def test_connect_uses_the_configured_server_and_errors_hide_its_password(server, free_port):
    from danq.config import parse_params

    params = parse_params({"mlflow": {"tracking_uri": server}, "promote": {"max_retries": 2}})
    client = connect(params)
    assert (client.tracking_uri, client.max_retries) == (server, 2)
    assert client.raw.tracking_uri == server
    assert connect(params, "http://127.0.0.1:1").tracking_uri == "http://127.0.0.1:1"

    secret = f"http://ci:hunter2@127.0.0.1:{free_port}"
    with pytest.raises(RegistryUnavailable) as unreachable:
        aliases(RetryingClient(secret, max_retries=0), "danq")
    assert f"http://ci:***@127.0.0.1:{free_port}" in str(unreachable.value)
    assert "hunter2" not in str(unreachable.value)


def mlflow_state() -> tuple[bool, str | None, str | None]:
    """MLflow's global URI settings: whether one is set, and the variables that hold them."""
    import mlflow

    return (
        mlflow.is_tracking_uri_set(),
        os.environ.get("MLFLOW_TRACKING_URI"),
        os.environ.get("MLFLOW_REGISTRY_URI"),
    )


def test_cli_promote_show_rollback(server, task, logged, tmp_path, capsys, dead_uri):
    name = "danq-cli"
    write_round(tmp_path / "eval", task, logged, "r1")
    params = write_params(tmp_path / "params.yaml", server, name)
    mlflow_state_before = mlflow_state()
    assert main(["--params", params, "promote"]) == 0
    # The command leaves no MLflow setting behind for whatever runs next in this process.
    assert mlflow_state() == mlflow_state_before
    out = capsys.readouterr().out
    assert "promote: random_dropout promoted" in out
    assert "decided on the valid split; test is reported only" in out
    assert "trained random_dropout model - trained baseline model on valid: macro AUPR" in out
    assert "compares two trained models, not two methods" in out
    assert "random_dropout: validation macro AUROC" in out and "[version 2]" in out
    assert "random_dropout test (reported, not used to choose): macro AUROC" in out
    blessing = json.loads((tmp_path / "promote" / "blessing.json").read_text())
    assert blessing["registry"] == {
        "tracking_uri": server,
        "model": name,
        "aliases": {CHAMPION: "2"},
    }

    assert main(["--params", params, "registry", "show"]) == 0
    shown = capsys.readouterr().out
    assert "2 versions" in shown and "aliases: champion -> 2" in shown
    assert "random_dropout" in shown and "true" in shown
    assert "lock:" not in shown and "unfinished" not in shown

    assert main(["--params", params, "registry", "rollback"]) == 1
    assert "has no previous-champion to roll back to" in capsys.readouterr().err

    # An operator's move, compare-and-set like promotion's.
    promote_by_hand = ["--params", params, "registry", "promote", "--version", "1"]
    assert main([*promote_by_hand, "--expect-champion", "none"]) == 1
    err = capsys.readouterr().err
    assert "champion of 'danq-cli' is now version 2, this promotion decided against there " in err
    assert "nothing moved" in err
    assert main([*promote_by_hand, "--expect-champion", "2"]) == 0
    assert "champion 2 -> 1, previous-champion - -> 2" in capsys.readouterr().out
    assert main(["--params", params, "registry", "rollback", "--expect-champion", "1"]) == 0
    assert "champion 1 -> 2, previous-champion 2 -> 1" in capsys.readouterr().out

    assert main(["--params", params, "registry", "grant", "--user", "pipeline"]) == 1
    assert "runs without authentication" in capsys.readouterr().err

    started = time.monotonic()
    dead = write_params(tmp_path / "dead.yaml", dead_uri, name)
    assert main(["--params", dead, "promote"]) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: MLflow tracking server at {dead_uri} unreachable after 2 ")
    assert "\n" not in err


# --------------------------------------------------------------------------- registry verify


def keras_model(task, perturbation: float):
    """A tiny model of the task (see tiny.py), perturbation 0 being the true one."""
    import keras

    model = keras.Sequential(
        [keras.Input((N_INPUTS,)), keras.layers.Dense(N_TARGETS, activation="sigmoid")]
    )
    kernel = task["weights"] + perturbation * task["direction"]
    model.set_weights([kernel.astype(np.float32), np.zeros(N_TARGETS, np.float32)])
    return model


def register_the_old_way(server: str, task, name: str) -> tuple[str, str, np.ndarray]:
    """A model logged and registered as danq did before it recorded checksums: plain
    mlflow.keras.log_model and mlflow.register_model, no TAG_MODEL_SHA256 anywhere.
    Returns (version, logged model id, its scores on the task)."""
    import mlflow
    import mlflow.keras

    from danq import tracking

    model = keras_model(task, 0.5)
    with tracking.using(server):
        experiment = mlflow.set_experiment("danq-before-checksums")
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = mlflow.keras.log_model(
                model, name="model", pip_requirements=["keras"], save_exported_model=False
            )
        version = mlflow.register_model(info.model_uri, name, await_registration_for=0)
    return str(version.version), info.model_id, model.predict(task["x"], verbose=0)


def model_repository(server: str, model_id: str):
    """The artifact repository of a logged model's files, through the server's proxy."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = MlflowClient(server).get_logged_model(model_id).artifact_location
    return get_artifact_repository(location, tracking_uri=server)


def store_as_model_file(server: str, model_id: str, keras_file: Path) -> None:
    """Put keras_file in place of a logged model's stored model.keras: what anyone who can
    write the artifact store could do."""
    assert keras_file.name == "model.keras"
    model_repository(server, model_id).log_artifact(str(keras_file), "data")


def sha256_tags(server: str, name: str, version: str, model_id: str) -> tuple[str | None, ...]:
    """TAG_MODEL_SHA256 of the version and of its logged model (None where missing)."""
    from mlflow import MlflowClient

    plain = MlflowClient(server)
    return (
        plain.get_model_version(name, version).tags.get(TAG_MODEL_SHA256),
        plain.get_logged_model(model_id).tags.get(TAG_MODEL_SHA256),
    )


def test_verify_lets_a_version_registered_before_checksums_load_and_become_champion(
    server, task, tmp_path, capsys
):
    name = f"danq-old-{uuid.uuid4().hex[:8]}"
    version, model_id, y_score = register_the_old_way(server, task, name)
    uri = f"models:/{name}/{version}"
    client = RetryingClient(server, 0)
    assert sha256_tags(server, name, version, model_id) == (None, None)
    # Refused, with the way out for such a version.
    verify = f"`danq registry verify --version {version} --model {name}`"
    with pytest.raises(ModelIntegrityError, match=f"no {TAG_MODEL_SHA256} tag.*{verify}"):
        load_model(uri, server)
    with pytest.raises(ModelIntegrityError, match=f"not made champion.*{verify}"):
        moves.promote(client, name, version, None, CFG)

    params = write_params(tmp_path / "params.yaml", server, name)
    command = ["--params", params, "registry", "verify", "--version", version]
    assert main(command) == 0
    out = capsys.readouterr().out
    recorded, on_logged_model = sha256_tags(server, name, version, model_id)
    assert recorded is not None and on_logged_model == recorded
    assert (
        f"version {version} of '{name}': recorded sha256 {recorded} of the file as stored now; "
        "check that this is the model you trained" in out
    )
    assert f"registered model '{name}' version {version}, logged model {model_id}" in out

    # What it recorded is the stored file's sha256: a verified load finds the same, and the
    # model is the one that was logged.
    loaded = load_verified_model(uri, server)
    assert (loaded.sha256, loaded.verified, loaded.source) == (recorded, True, uri)
    np.testing.assert_allclose(loaded.model.predict(task["x"], verbose=0), y_score, rtol=1e-6)
    # Promotion's compare-and-set move accepts it, and promotion can re-score it as champion.
    assert moves.promote(client, name, version, None, CFG) == {CHAMPION: version}
    champion = score_champion(client, name, predict_fn(task))
    assert champion is not None and champion.version == version
    np.testing.assert_allclose(champion.y_score, y_score, rtol=1e-6)

    # A second verify checks and changes nothing.
    assert main(command) == 0
    assert (
        f"version {version} of '{name}': sha256 {recorded} is already recorded and the stored "
        "file matches it; nothing changed" in capsys.readouterr().out
    )
    assert sha256_tags(server, name, version, model_id) == (recorded, recorded)


def test_verify_takes_the_checksum_a_logged_model_recorded_at_logging(server, logged, capsys):
    """A version registered without the tag from a model whose logging recorded it: verify
    takes that sha256 (the file still matching it), not a new first-use one."""
    import mlflow

    from danq import tracking
    from danq.promotion.verify import verify_version

    name = f"danq-untagged-{uuid.uuid4().hex[:8]}"
    model_id = logged["r1_baseline"]["model_uri"].removeprefix("models:/")
    with tracking.using(server):
        version = str(mlflow.register_model(f"models:/{model_id}", name).version)
    at_logging = sha256_tags(server, name, version, model_id)[1]
    assert at_logging is not None

    lines = verify_version(RetryingClient(server, 0), name, version).lines()
    assert lines[0] == (
        f"version {version} of '{name}': recorded sha256 {at_logging}, the one its logged model "
        f"{model_id} recorded when it was logged (the stored file matches it)"
    )
    assert sha256_tags(server, name, version, model_id) == (at_logging, at_logging)


def with_foreign_module(keras_file: Path, out: Path) -> Path:
    """A copy of a .keras archive whose layers claim a module outside Keras."""
    out.parent.mkdir(parents=True)
    with zipfile.ZipFile(keras_file) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                data = data.replace(b'"module": "keras.layers"', b'"module": "evil.layers"')
            dst.writestr(item, data)
    return out


def test_verify_checks_the_file_as_loading_does_and_never_overwrites_a_sha256(
    server, task, tmp_path, capsys
):
    from mlflow import MlflowClient

    name = f"danq-old-{uuid.uuid4().hex[:8]}"
    version, model_id, _ = register_the_old_way(server, task, name)
    params = write_params(tmp_path / "params.yaml", server, name)
    command = ["--params", params, "registry", "verify", "--version", version]
    stored = model_repository(server, model_id)
    original = Path(stored.download_artifacts("data/model.keras", str(tmp_path)))

    # A file loading would refuse is refused before anything is recorded.
    foreign = with_foreign_module(original, tmp_path / "foreign" / "model.keras")
    store_as_model_file(server, model_id, foreign)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "neither Keras built-ins nor danq's own" in err and "evil.layers" in err
    assert "nothing was recorded" in err
    assert sha256_tags(server, name, version, model_id) == (None, None)

    store_as_model_file(server, model_id, original)
    assert main(command) == 0
    capsys.readouterr()
    recorded = sha256_tags(server, name, version, model_id)[0]
    assert recorded is not None

    # The stored file swapped for another valid model afterwards: loading refuses it, and
    # verify neither accepts nor overwrites the recorded sha256.
    other = tmp_path / "other" / "model.keras"
    other.parent.mkdir()
    keras_model(task, 1.0).save(other)
    store_as_model_file(server, model_id, other)
    uri = f"models:/{name}/{version}"
    with pytest.raises(ModelIntegrityError, match=f"sha256 mismatch.*expected {recorded}"):
        load_model(uri, server)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: model {uri}: sha256 mismatch for registered model {name} ")
    assert f"expected {recorded}" in err and "nothing was recorded" in err
    assert sha256_tags(server, name, version, model_id) == (recorded, recorded)

    # Without the version's tag, the logged model's still says what the file was.
    MlflowClient(server).delete_model_version_tag(name, version, TAG_MODEL_SHA256)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert f"sha256 mismatch for logged model {model_id}" in err
    assert sha256_tags(server, name, version, model_id) == (None, recorded)


def test_a_move_left_part_way_in_a_sqlite_store_read_directly_is_completed(
    tmp_path, monkeypatch, capsys
):
    """A SQL store read directly (sqlite:, as `make run` uses) gives alias versions as ints;
    the recorded move holds strings: repair must still recognise the part-way state."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    raw = MlflowClient(uri, uri)
    name = "direct-store"
    raw.create_registered_model(name)
    for _ in range(3):
        raw.create_model_version(name, str(tmp_path), tags={TAG_MODEL_SHA256: "0" * 64})
    raw.set_registered_model_alias(name, PREVIOUS_CHAMPION, "2")  # written, then the kill
    raw.set_registered_model_alias(name, CHAMPION, "2")
    assert isinstance(raw.get_registered_model(name).aliases[CHAMPION], int)
    move = moves.Move(
        "promote",
        {CHAMPION: "2", PREVIOUS_CHAMPION: "1"},
        {CHAMPION: "3", PREVIOUS_CHAMPION: "2"},
        owner="killed command",
        time="2026-12-02T00:00:00+00:00",
    )
    raw.set_registered_model_tag(name, TAG_ALIAS_MOVE, move.to_json())

    client = RetryingClient(uri, 0)
    assert moves.repair(client, name, CFG) == {CHAMPION: "3", PREVIOUS_CHAMPION: "2"}
    assert "completed it" in capsys.readouterr().err
    assert moves.pending_move(client, name) == (None, None)
    assert raw.get_model_version(name, "3").tags[TAG_REPLACED_VERSION] == "2"

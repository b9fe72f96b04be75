"""Registry and promotion against a real `mlflow server` on 127.0.0.1 with real Keras models.

Candidates are tiny Keras models (4 inputs -> 5 sigmoid targets) whose weights are the true
weights of a synthetic task plus a fixed perturbation: the larger it is, the worse the model.
They are logged as runs with mlflow.keras.log_model, as training does, and the champion is
re-scored by loading it back from the registry.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from danq.config import PromoteConfig, parse_params
from danq.promotion.promote import array_md5, promote_candidates
from danq.promotion.promote import run as run_promote
from danq.promotion.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    AliasMoveError,
    RegistryUnavailable,
    RetryingClient,
    aliases,
    promote,
    register_candidate,
    rollback,
    run_rollback,
    run_show,
)

from .gcs_emulator import free_port
from .mlflow_server import mlflow_server

VARIANTS = ["baseline", "random_dropout"]
N_ROWS, N_INPUTS, N_TARGETS = 1500, 4, 5
CFG = PromoteConfig(bootstrap_samples=200, min_macro_auroc=0.55)
# Perturbation size of each logged model's weights: 0 is the true model.
MODELS = {
    "r1_baseline": 1.0,
    "r1_random_dropout": 0.5,
    "r2_baseline": 1.4,
    "r2_random_dropout": 1.0,
    "r3_baseline": 1.0,
    "r3_random_dropout": 0.0,
}


def import_keras() -> None:
    import keras  # noqa: F401
    import mlflow.keras  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow"), while_starting=import_keras) as uri:
        yield uri


@pytest.fixture(scope="module")
def task() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, N_INPUTS)).astype(np.float32)
    weights = rng.normal(size=(N_INPUTS, N_TARGETS))
    labels = (x @ weights + rng.logistic(size=(N_ROWS, N_TARGETS)) > 1.5).astype(np.uint8)
    return {"x": x, "y": labels, "weights": weights, "direction": rng.normal(size=weights.shape)}


@pytest.fixture(scope="module")
def logged(server: str, task) -> dict[str, dict]:
    """The models of MODELS logged as runs on the server: run_id, model_uri, test scores."""
    import keras
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server)  # also where predict() resolves models:/ URIs
    mlflow.set_experiment("danq-test")
    out = {}
    for key, perturbation in MODELS.items():
        model = keras.Sequential(
            [keras.Input((N_INPUTS,)), keras.layers.Dense(N_TARGETS, activation="sigmoid")]
        )
        kernel = task["weights"] + perturbation * task["direction"]
        model.set_weights([kernel.astype(np.float32), np.zeros(N_TARGETS, np.float32)])
        with mlflow.start_run(run_name=key) as run:
            mlflow.keras.log_model(model, name="model", pip_requirements=["tensorflow"])
        out[key] = {
            "run_id": run.info.run_id,
            "model_uri": f"runs:/{run.info.run_id}/model",
            "y_score": model.predict(task["x"], verbose=0),
        }
    yield out
    mlflow.set_tracking_uri(previous_uri)


def predict_fn(task):
    """Score a registered model on the test inputs after loading it back from the server."""
    import mlflow.keras

    return lambda model_uri: mlflow.keras.load_model(model_uri).predict(task["x"], verbose=0)


def write_round(folder: Path, task, logged, round_name: str) -> Path:
    """build/eval/<variant>/{metrics.json,predictions.npz} for one round's two candidates."""
    for variant in VARIANTS:
        entry = logged[f"{round_name}_{variant}"]
        out = folder / variant
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(
            json.dumps(
                {
                    "variant": variant,
                    "model_uri": entry["model_uri"],
                    "mlflow_run_id": entry["run_id"],
                    "n_test": N_ROWS,
                    "n_targets": N_TARGETS,
                    "data_md5": "d41d8cd9",
                    "git_commit": f"commit-{round_name}",
                }
            )
        )
        np.savez_compressed(out / "predictions.npz", y_true=task["y"], y_score=entry["y_score"])
    return folder


def test_worse_round_keeps_champion_better_round_moves_it_rollback_restores(
    server, task, logged, tmp_path
):
    from mlflow import MlflowClient

    name = "danq-lifecycle"
    client = RetryingClient(server, max_retries=1)
    plain = MlflowClient(server)

    def promotion_round(round_name: str):
        eval_dir = write_round(tmp_path / round_name / "eval", task, logged, round_name)
        return promote_candidates(
            client,
            name,
            CFG,
            eval_dir,
            VARIANTS,
            tmp_path / round_name / "promote",
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
    assert len(plain.search_model_versions(f"name = '{name}'")) == 6

    # Rollback swaps the two aliases; a second rollback swaps them back.
    assert rollback(client, name) == {CHAMPION: champion_v, PREVIOUS_CHAMPION: new_v}
    assert (
        plain.get_model_version_by_alias(name, CHAMPION).run_id
        == (logged["r1_random_dropout"]["run_id"])
    )
    assert rollback(client, name) == {CHAMPION: new_v, PREVIOUS_CHAMPION: champion_v}

    # Promoting the same round again reuses its versions instead of adding new ones.
    again = promote_candidates(
        client,
        name,
        CFG,
        tmp_path / "r3" / "eval",
        VARIANTS,
        tmp_path / "r3-again",
        predict_fn(task),
        seed=7,
    )
    assert again.decision == "keep"  # the champion is this very model: no gain
    assert again.verdict("random_dropout").registered_version == new_v
    assert len(plain.search_model_versions(f"name = '{name}'")) == 6


class FailingClient:
    """An MlflowClient whose set_registered_model_alias raises on chosen calls."""

    def __init__(self, inner, should_fail) -> None:
        self.inner = inner
        self.should_fail = should_fail  # (call number, alias, version) -> exception or None
        self.alias_calls: list[tuple[str, str]] = []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.alias_calls.append((alias, version))
        error = self.should_fail(len(self.alias_calls), alias, version)
        if error is not None:
            raise error
        self.inner.set_registered_model_alias(name, alias, version)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def three_versions(server, logged) -> tuple[str, list[str]]:
    """A model with versions v1..v3, champion v2 and previous-champion v1."""
    name = "danq-failures"
    client = RetryingClient(server, max_retries=0)
    keys = ["r1_baseline", "r1_random_dropout", "r3_random_dropout"]
    versions = [
        register_candidate(client, name, logged[k]["model_uri"], {"danq.variant": k}) for k in keys
    ]
    promote(client, name, versions[0])
    promote(client, name, versions[1])
    return name, versions


@pytest.mark.parametrize("failure", ["error", "connection"])
def test_failure_midway_leaves_aliases_as_they_were(server, three_versions, failure):
    from mlflow import MlflowClient

    name, (v1, v2, v3) = three_versions
    before = {CHAMPION: v2, PREVIOUS_CHAMPION: v1}
    assert aliases(RetryingClient(server, 0), name) == before
    if failure == "error":  # the second alias call of the move fails once
        should_fail = lambda n, alias, version: RuntimeError("injected") if n == 2 else None  # noqa: E731
    else:  # the server drops every attempt to move champion
        should_fail = lambda n, alias, version: (  # noqa: E731
            requests.ConnectionError("injected: connection reset") if alias == CHAMPION else None
        )
    failing = FailingClient(MlflowClient(server), should_fail)
    client = RetryingClient(server, max_retries=2, client=failing)

    with pytest.raises(AliasMoveError, match="left as they were"):
        promote(client, name, v3)
    assert aliases(RetryingClient(server, 0), name) == before
    # previous-champion was moved first, then put back by the restore.
    assert failing.alias_calls[0] == (PREVIOUS_CHAMPION, v2)
    assert failing.alias_calls[-1] == (PREVIOUS_CHAMPION, v1)
    if failure == "connection":
        assert failing.alias_calls.count((CHAMPION, v3)) == 3  # max_retries + 1, then stop

    failing.alias_calls.clear()
    with pytest.raises(AliasMoveError, match="left as they were"):
        rollback(client, name)
    assert aliases(RetryingClient(server, 0), name) == before


def test_unreachable_server_fails_fast_and_leaves_aliases(server, task, logged, tmp_path):
    name = "danq-unreachable"
    live = RetryingClient(server, max_retries=0)
    version = register_candidate(live, name, logged["r1_baseline"]["model_uri"], {})
    promote(live, name, version)
    before = aliases(live, name)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    eval_dir = write_round(tmp_path / "eval", task, logged, "r3")

    started = time.monotonic()
    with pytest.raises(
        RegistryUnavailable,
        match=rf"^MLflow tracking server at {dead} unreachable after 3 attempts: .*refused",
    ):
        promote_candidates(
            RetryingClient(dead, max_retries=2),
            name,
            CFG,
            eval_dir,
            VARIANTS,
            tmp_path / "promote",
            predict_fn(task),
        )
    assert time.monotonic() - started < 30
    assert aliases(live, name) == before


def cli_params(tmp_path: Path, tracking_uri: str, name: str):
    return parse_params(
        {
            "paths": {"work_dir": str(tmp_path)},
            "mlflow": {"tracking_uri": tracking_uri, "registered_model": name},
            "promote": {"bootstrap_samples": 100, "min_macro_auroc": 0.55, "max_retries": 1},
        }
    )


def test_cli_promote_show_rollback(server, task, logged, tmp_path, capsys):
    import mlflow

    name = "danq-cli"
    write_round(tmp_path / "eval", task, logged, "r1")
    args = argparse.Namespace(eval_dir=None, variants=VARIANTS, out=None, shards=None, model=None)
    try:
        assert run_promote(args, cli_params(tmp_path, server, name)) == 0
        out = capsys.readouterr().out
        assert "promote: random_dropout promoted" in out
        assert "random_dropout - baseline: macro AUPR" in out
        assert (tmp_path / "promote" / "blessing.json").exists()

        assert run_show(args, cli_params(tmp_path, server, name)) == 0
        shown = capsys.readouterr().out
        assert "2 versions" in shown and "aliases: champion -> " in shown

        assert run_rollback(args, cli_params(tmp_path, server, name)) == 1
        assert "has no previous-champion to roll back to" in capsys.readouterr().err

        dead = f"http://127.0.0.1:{free_port()}"
        started = time.monotonic()
        assert run_promote(args, cli_params(tmp_path, dead, name)) == 1
        assert time.monotonic() - started < 30
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: MLflow tracking server at {dead} unreachable after 2 ")
        assert "\n" not in err
    finally:
        mlflow.set_tracking_uri(server)  # run() points the fluent API at its tracking server

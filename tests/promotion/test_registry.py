"""Registry and promotion against a real `mlflow server` on 127.0.0.1 with real Keras models.

Candidates are tiny Keras models (4 inputs -> 5 sigmoid targets) whose weights are the true
weights of a synthetic task plus a fixed perturbation: the larger it is, the worse the model.
They are logged as runs with mlflow.keras.log_model, as training does, and the champion is
re-scored by loading it back from the registry.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from danq import artifacts, tracking
from danq.cli.main import main
from danq.config import VARIANTS, PromoteConfig
from danq.errors import AliasMoveError, RegistryUnavailable
from danq.promotion.decide import array_md5
from danq.promotion.promote import promote_candidates
from danq.promotion.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    RetryingClient,
    aliases,
    connect,
    promote,
    register_candidate,
    rollback,
)

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

    out = {}
    with tracking.using(server):
        experiment = mlflow.set_experiment("danq-test")
        for key, perturbation in MODELS.items():
            model = keras.Sequential(
                [keras.Input((N_INPUTS,)), keras.layers.Dense(N_TARGETS, activation="sigmoid")]
            )
            kernel = task["weights"] + perturbation * task["direction"]
            model.set_weights([kernel.astype(np.float32), np.zeros(N_TARGETS, np.float32)])
            with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=key) as run:
                mlflow.keras.log_model(model, name="model", pip_requirements=["tensorflow"])
            out[key] = {
                "run_id": run.info.run_id,
                "model_uri": f"runs:/{run.info.run_id}/model",
                "y_score": model.predict(task["x"], verbose=0),
            }
    return out


def predict_fn(task):
    """Score a registered model on the test inputs after loading it back from the server.

    The champion's models:/ URI resolves only if promotion points MLflow's fluent API at the
    registry's server while it scores: nothing else here does."""
    import mlflow.keras

    return lambda model_uri: mlflow.keras.load_model(model_uri).predict(task["x"], verbose=0)


def write_round(folder: Path, task, logged, round_name: str) -> Path:
    """build/eval/<variant>/{metrics.json,predictions.npz} for one round's two candidates."""
    for variant in VARIANTS:
        entry = logged[f"{round_name}_{variant}"]
        out = folder / variant
        out.mkdir(parents=True)
        (out / artifacts.METRICS_FILE).write_text(
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
        np.savez_compressed(
            out / artifacts.PREDICTIONS_FILE, y_true=task["y"], y_score=entry["y_score"]
        )
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
            list(VARIANTS),
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
        list(VARIANTS),
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


def test_unreachable_server_fails_fast_and_leaves_aliases(server, task, logged, tmp_path, dead_uri):
    name = "danq-unreachable"
    live = RetryingClient(server, max_retries=0)
    version = register_candidate(live, name, logged["r1_baseline"]["model_uri"], {})
    promote(live, name, version)
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


def test_connect_uses_the_configured_server_or_an_explicit_one(server):
    from danq.config import parse_params

    params = parse_params({"mlflow": {"tracking_uri": server}, "promote": {"max_retries": 2}})
    client = connect(params)
    assert (client.tracking_uri, client.max_retries) == (server, 2)
    assert client.raw.tracking_uri == server
    assert connect(params, "http://127.0.0.1:1").tracking_uri == "http://127.0.0.1:1"


def write_params(tmp_path: Path, tracking_uri: str, name: str) -> str:
    path = tmp_path / f"params-{tracking_uri.rsplit(':', 1)[-1]}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "paths": {"work_dir": str(tmp_path)},
                "mlflow": {"tracking_uri": tracking_uri, "registered_model": name},
                "promote": {"bootstrap_samples": 100, "min_macro_auroc": 0.55, "max_retries": 1},
            }
        )
    )
    return str(path)


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
    params = write_params(tmp_path, server, name)
    mlflow_state_before = mlflow_state()
    assert main(["--params", params, "promote"]) == 0
    out = capsys.readouterr().out
    assert "promote: random_dropout promoted" in out
    assert "random_dropout - baseline: macro AUPR" in out
    assert "random_dropout: macro AUROC" in out and "[version 2]" in out
    assert (tmp_path / "promote" / artifacts.BLESSING_FILE).exists()
    # The command leaves no MLflow setting behind for whatever runs next in this process.
    assert mlflow_state() == mlflow_state_before

    assert main(["--params", params, "registry", "show"]) == 0
    shown = capsys.readouterr().out
    assert "2 versions" in shown and "aliases: champion -> " in shown
    assert "random_dropout" in shown and "true" in shown

    assert main(["--params", params, "registry", "rollback"]) == 1
    assert "has no previous-champion to roll back to" in capsys.readouterr().err

    started = time.monotonic()
    assert main(["--params", write_params(tmp_path, dead_uri, name), "promote"]) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: MLflow tracking server at {dead_uri} unreachable after 2 ")
    assert "\n" not in err

"""Each Kubeflow component's function called directly on tiny data, as a user unit-tests one.

A component's `python_func` is the plain function; artifacts are dsl.Artifact objects whose
uri is a local path. The chain validate -> prepare -> train -> evaluate -> compare -> promote
runs once per module on one variant, against a real SQLite MLflow store; it trains a model, so
the tests that use it are marked slow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components.compare import compare
from components.evaluate import evaluate
from components.prepare import prepare
from components.promote import promote
from components.scheduling import gpu_node_selector
from components.train import train
from components.validate import validate
from danq.errors import ConfigError, DataGateFailed, PipelineError
from danq.kfp.tasks import roc_curve, task_params

REGISTERED = "danq-components-test"


def artifact(cls, path: Path):
    return cls(name=path.name, uri=str(path), metadata={})


@pytest.fixture(scope="module")
def chain(
    tiny_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_overrides: list[str],
    tiny_train: dict[str, Any],
    tracking_store: Callable[[Path], str],
) -> dict:
    """validate, prepare, train (baseline), evaluate: the artifacts each step wrote."""
    root = tmp_path_factory.mktemp("components")
    uri = tracking_store(root)
    out = {"root": root, "uri": uri, "data": artifact(Dataset, tiny_data)}
    out["validation"] = artifact(Dataset, root / "validation")
    out["data_docs"] = artifact(HTML, root / "data_docs.html")
    out["summary"] = artifact(Markdown, root / "validation.md")
    validate.python_func(
        data=out["data"],
        validation=out["validation"],
        data_docs=out["data_docs"],
        summary=out["summary"],
        overrides=tiny_overrides,
    )
    out["shards"] = artifact(Dataset, root / "shards")
    prepare.python_func(data=out["data"], shards=out["shards"], overrides=tiny_overrides)
    out["model"] = artifact(Model, root / "model")
    train.python_func(
        variant="baseline",
        shards=out["shards"],
        data=out["data"],
        model=out["model"],
        mlflow_tracking_uri=uri,
        overrides=tiny_overrides,
        **tiny_train,
    )
    out["evaluation"] = artifact(Dataset, root / "evaluation")
    out["metrics"] = artifact(Metrics, root / "metrics")
    out["roc"] = artifact(ClassificationMetrics, root / "roc")
    evaluate.python_func(
        model=out["model"],
        shards=out["shards"],
        data=out["data"],
        evaluation=out["evaluation"],
        metrics=out["metrics"],
        roc=out["roc"],
        mlflow_tracking_uri=uri,
        overrides=tiny_overrides,
    )
    return out


@pytest.mark.slow
def test_validate_writes_data_docs_and_summary(chain: dict) -> None:
    assert (Path(chain["validation"].path) / "report.json").exists()
    assert "<html" in Path(chain["data_docs"].path).read_text().lower()
    summary = Path(chain["summary"].path).read_text()
    assert summary.startswith("# Data gate passed") and "| pass |" in summary
    assert chain["validation"].metadata["passed"] is True


def test_validate_fails_on_bad_labels(
    tiny_data: Path,
    tmp_path: Path,
    tiny_overrides: list[str],
    corrupt_labels: Callable[[Path, Path], Path],
) -> None:
    bad = corrupt_labels(tiny_data, tmp_path / "bad")
    with pytest.raises(DataGateFailed, match="test.mat testdata"):
        validate.python_func(
            data=artifact(Dataset, bad),
            validation=artifact(Dataset, tmp_path / "validation"),
            data_docs=artifact(HTML, tmp_path / "docs.html"),
            summary=artifact(Markdown, tmp_path / "summary.md"),
            overrides=tiny_overrides,
        )
    # The report is still written, for whoever investigates.
    report = json.loads((tmp_path / "validation" / "report.json").read_text())
    assert report["passed"] is False


@pytest.mark.slow
def test_prepare_writes_shards_per_split(chain: dict) -> None:
    for split, n in (("train", 240), ("valid", 80), ("test", 80)):
        manifest = json.loads((Path(chain["shards"].path) / split / "manifest.json").read_text())
        assert manifest["n_samples"] == n
        assert chain["shards"].metadata[f"{split}_samples"] == n


@pytest.mark.slow
def test_train_writes_model_and_tracks_it(chain: dict) -> None:
    model_dir = Path(chain["model"].path)
    assert (model_dir / "model.keras").exists()
    run = json.loads((model_dir / "run.json").read_text())
    meta = chain["model"].metadata
    assert meta["variant"] == "baseline" and meta["mlflow_run_id"] == run["run_id"]
    mlflow_run = mlflow.MlflowClient(chain["uri"]).get_run(run["run_id"])
    assert mlflow_run.data.params["train.max_epochs"] == "1"
    assert mlflow_run.data.params["model.conv_filters"] == "8"


@pytest.mark.slow
def test_train_refuses_to_run_without_the_gpus_it_was_given(
    chain: dict, tmp_path: Path, tiny_overrides: list[str], tiny_train: dict[str, Any]
) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: the CPU-fallback guard cannot trigger")
    with pytest.raises(PipelineError, match="gpu_count: 1 GPU"):
        train.python_func(
            variant="baseline",
            shards=chain["shards"],
            data=chain["data"],
            model=artifact(Model, tmp_path / "model"),
            mlflow_tracking_uri=chain["uri"],
            overrides=tiny_overrides,
            **{**tiny_train, "gpu_count": 1},
        )
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_evaluate_logs_metrics_and_a_roc_curve(chain: dict) -> None:
    written = json.loads((Path(chain["evaluation"].path) / "metrics.json").read_text())
    metrics = chain["metrics"].metadata
    assert metrics["test_macro_auroc"] == pytest.approx(written["overall"]["auroc"])
    assert metrics["test_macro_aupr"] == pytest.approx(written["overall"]["aupr"])
    points = chain["roc"].metadata["confidenceMetrics"]
    assert (
        chain["roc"].metadata["target"]
        == json.loads((Path(chain["evaluation"].path) / "curves.json").read_text())[0]["target"]
    )
    fpr = [p["falsePositiveRate"] for p in points]
    thresholds = [p["confidenceThreshold"] for p in points]
    assert (fpr[0], points[0]["recall"]) == (0.0, 0.0)
    assert (fpr[-1], points[-1]["recall"]) == (1.0, 1.0)
    assert fpr == sorted(fpr) and thresholds == sorted(thresholds, reverse=True)


def test_roc_curve_thresholds_match_the_points(tmp_path: Path) -> None:
    y_true = np.array([[1], [0], [1], [0]], dtype=np.uint8)
    y_score = np.array([[0.9], [0.8], [0.8], [0.1]], dtype=np.float32)
    np.savez(tmp_path / "predictions.npz", y_true=y_true, y_score=y_score)
    (tmp_path / "curves.json").write_text(json.dumps([{"target": "t0"}]))
    (tmp_path / "per_target.tsv").write_text("index\tname\n0\tt0\n")
    curve = roc_curve(str(tmp_path))
    # Predicting positive at score >= threshold: above 0.9 nothing, at 0.9 one TP, ...
    assert curve.tpr == [0.0, 0.5, 1.0, 1.0]
    assert curve.fpr == [0.0, 0.0, 0.5, 1.0]
    assert curve.thresholds[1:] == pytest.approx([0.9, 0.8, 0.1])
    assert curve.thresholds[0] > float(y_score.max())
    assert len(roc_curve(str(tmp_path), max_points=2).fpr) == 2


@pytest.mark.slow
def test_compare_then_promote_sets_the_champion(chain: dict, tiny_overrides: list[str]) -> None:
    root = chain["root"]
    outs = {
        "report": artifact(HTML, root / "report.html"),
        "report_markdown": artifact(Markdown, root / "report.md"),
        "decision": artifact(Markdown, root / "decision.md"),
        "candidates": artifact(Dataset, root / "candidates"),
        "champion_scores": artifact(Dataset, root / "champion_scores.npz"),
    }
    settings = dict(
        mlflow_tracking_uri=chain["uri"],
        registered_model=REGISTERED,
        min_macro_auroc=0.0,
        min_macro_aupr=0.0,
        overrides=tiny_overrides,
    )
    blessed = compare.python_func(
        models=[chain["model"]],
        evaluations=[chain["evaluation"]],
        shards=chain["shards"],
        **outs,
        **settings,
    )
    assert blessed is True
    assert "promote" in Path(outs["decision"].path).read_text()
    assert "<table>" in Path(outs["report"].path).read_text()
    assert (root / "candidates" / "baseline" / "predictions.npz").exists()
    with np.load(outs["champion_scores"].path) as saved:
        assert str(saved["model_uri"]) == ""  # no champion yet
    client = mlflow.MlflowClient(chain["uri"])
    assert not client.search_registered_models(f"name='{REGISTERED}'")  # compare changes nothing

    blessing = artifact(Artifact, root / "blessing.json")
    summary = artifact(Markdown, root / "promotion.md")
    version = promote.python_func(
        candidates=outs["candidates"],
        shards=chain["shards"],
        champion_scores=outs["champion_scores"],
        blessing=blessing,
        summary=summary,
        **settings,
    )
    assert version == "1"
    assert client.get_registered_model(REGISTERED).aliases == {"champion": 1}
    assert json.loads(Path(blessing.path).read_text())["chosen"] == "baseline"
    assert blessing.metadata["decision"] == "promote"

    # Against a champion now: compare scores it and hands the scores on to promote.
    blessed = compare.python_func(
        models=[chain["model"]],
        evaluations=[chain["evaluation"]],
        shards=chain["shards"],
        **{**outs, "candidates": artifact(Dataset, root / "candidates2")},
        **settings,
    )
    with np.load(outs["champion_scores"].path) as saved:
        assert str(saved["model_uri"]) == f"models:/{REGISTERED}/1"
        assert saved["y_score"].shape == (40, 16)
    # The same model cannot beat itself with a CI above zero.
    assert blessed is False


def test_gpu_node_selector() -> None:
    assert gpu_node_selector.python_func(gpu_type="nvidia-l4") == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }
    with pytest.raises(ConfigError, match="gpu_type"):
        gpu_node_selector.python_func(gpu_type="nvidia l4; rm")


def test_task_params_name_bad_settings() -> None:
    params = task_params({"train.max_epochs": 3}, ["train.patience=1"])
    assert (params.train.max_epochs, params.train.patience) == (3, 1)
    assert params.model.preset == "danq"  # package defaults, not the work tree's params.yaml
    with pytest.raises(ConfigError, match="train.max_epochs"):
        task_params({"train.max_epochs": 0})
    with pytest.raises(ConfigError, match="model.no_such_key"):
        task_params({}, ["model.no_such_key=1"])
    with pytest.raises(ConfigError, match="overrides"):
        task_params({}, ["train.patience"])

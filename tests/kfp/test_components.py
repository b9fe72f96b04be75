"""Each Kubeflow component's function called directly on tiny data, as a user unit-tests one.

A component's `python_func` is the plain function; artifacts are dsl.Artifact objects whose
uri is a local path. The chain validate -> prepare -> train -> evaluate -> compare -> promote
runs once per module on one variant, against a real SQLite MLflow store; it trains a model, so
the tests that use it are marked slow.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components.compare import compare
from components.evaluate import evaluate
from components.explain import explain
from components.prepare import prepare
from components.promote import promote
from components.scheduling import gpu_node_selector
from components.train import train
from components.validate import validate
from danq.errors import ConfigError, DataError, DataGateFailed, PipelineError
from danq.evaluation.metrics import bootstrap_rows
from danq.kfp.tasks import roc_curve, shards_for_explain, task_params

REGISTERED = "danq-components-test"
TEST_ROWS = 40  # the tiny test set's sequences, fewer than promote.bootstrap_max_rows
KFP_RUN_ID = "run-components-test"
IMAGE = "registry.example/danq-gpu:git-0123456789ab"


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
    """validate, prepare, train and evaluate (both variants): the artifacts each step wrote."""
    root = tmp_path_factory.mktemp("components")
    uri = tracking_store(root)
    overrides = list(tiny_overrides)
    out = {"root": root, "uri": uri, "data": artifact(Dataset, tiny_data), "overrides": overrides}
    out["validation"] = artifact(Dataset, root / "validation")
    out["data_docs"] = artifact(HTML, root / "data_docs.html")
    out["summary"] = artifact(Markdown, root / "validation.md")
    out["fingerprint"] = validate.python_func(
        data=out["data"],
        validation=out["validation"],
        data_docs=out["data_docs"],
        summary=out["summary"],
        overrides=overrides,
    )
    out["fit_shards"] = artifact(Dataset, root / "fit_shards")
    out["valid_shards"] = artifact(Dataset, root / "valid_shards")
    out["test_shards"] = artifact(Dataset, root / "test_shards")
    prepare.python_func(
        data=out["data"],
        data_fingerprint=out["fingerprint"],
        fit_shards=out["fit_shards"],
        valid_shards=out["valid_shards"],
        test_shards=out["test_shards"],
        overrides=overrides,
    )
    out["checkpoints"] = root / "checkpoints"
    for variant in ("baseline", "random_dropout"):
        trained = out[variant] = {
            "model": artifact(Model, root / variant / "model"),
            "training": artifact(Artifact, root / variant / "training"),
        }
        train.python_func(
            variant=variant,
            shards=out["fit_shards"],
            mlflow_tracking_uri=uri,
            checkpoint_root=str(out["checkpoints"]),
            resume_key="",
            kfp_run_id=KFP_RUN_ID,
            image=IMAGE,
            data_uri=str(tiny_data),
            data_fingerprint=out["fingerprint"],
            overrides=overrides,
            **trained,
            **tiny_train,
        )
        trained["evaluation"] = artifact(Dataset, root / variant / "evaluation")
        trained["metrics"] = artifact(Metrics, root / variant / "metrics")
        trained["roc"] = artifact(ClassificationMetrics, root / variant / "roc")
        evaluate.python_func(
            model=trained["model"],
            valid_shards=out["valid_shards"],
            test_shards=out["test_shards"],
            evaluation=trained["evaluation"],
            metrics=trained["metrics"],
            roc=trained["roc"],
            mlflow_tracking_uri=uri,
            overrides=overrides,
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


def test_validate_returns_the_fingerprint_that_prepare_holds_the_data_to(
    tiny_data: Path, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    """The data gate's fingerprint ties prepare to the content it checked: a test.mat
    replaced in between (same URI, as KFP's cache sees it) is refused, and nothing is
    sharded."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    fingerprint = validate.python_func(
        data=artifact(Dataset, data),
        validation=artifact(Dataset, tmp_path / "validation"),
        data_docs=artifact(HTML, tmp_path / "docs.html"),
        summary=artifact(Markdown, tmp_path / "summary.md"),
        overrides=tiny_overrides,
    )
    assert set(json.loads(fingerprint)["files"]) >= {"train.mat", "valid.mat", "test.mat"}
    shutil.copyfile(data / "valid.mat", data / "test.mat")  # a valid file, other content
    with pytest.raises(DataError, match="test.mat"):
        prepare.python_func(
            data=artifact(Dataset, data),
            data_fingerprint=fingerprint,
            fit_shards=artifact(Dataset, tmp_path / "fit"),
            valid_shards=artifact(Dataset, tmp_path / "valid"),
            test_shards=artifact(Dataset, tmp_path / "test"),
            overrides=tiny_overrides,
        )
    assert not (tmp_path / "fit").exists() and not (tmp_path / "test").exists()
    assert not (tmp_path / "valid").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_prepare_splits_fit_and_test_shards(chain: dict) -> None:
    """train receives train and valid only; the steps after it valid and test, apart."""
    fit, test = Path(chain["fit_shards"].path), Path(chain["test_shards"].path)
    valid = Path(chain["valid_shards"].path)
    assert sorted(p.name for p in fit.iterdir()) == ["train", "valid"]
    assert sorted(p.name for p in valid.iterdir()) == ["valid"]
    assert sorted(p.name for p in test.iterdir()) == ["test"]
    for folder, split, n in (
        (fit, "train", 240),
        (fit, "valid", 80),
        (valid, "valid", 80),
        (test, "test", 80),
    ):
        manifest = json.loads((folder / split / "manifest.json").read_text())
        assert manifest["n_samples"] == n
    assert chain["fit_shards"].metadata == {"train_samples": 240, "valid_samples": 80}
    assert chain["valid_shards"].metadata == {"valid_samples": 80}
    assert chain["test_shards"].metadata == {"test_samples": 80}


@pytest.mark.slow
def test_train_writes_model_and_training_and_tags_the_run_with_its_lineage(chain: dict) -> None:
    model_dir = Path(chain["baseline"]["model"].path)
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.keras", "run.json"]
    training_dir = Path(chain["baseline"]["training"].path)
    assert sorted(p.name for p in training_dir.iterdir()) == [
        "history.json",
        "run.json",
        "training_curve.png",
    ]
    run = json.loads((model_dir / "run.json").read_text())
    meta = chain["baseline"]["model"].metadata
    assert meta["variant"] == "baseline" and meta["mlflow_run_id"] == run["run_id"]
    mlflow_run = mlflow.MlflowClient(chain["uri"]).get_run(run["run_id"])
    assert mlflow_run.data.params["train.max_epochs"] == "1"
    assert mlflow_run.data.params["model.conv_filters"] == "8"
    tags = mlflow_run.data.tags
    assert tags["kfp.run_id"] == KFP_RUN_ID
    assert tags["kfp.image"] == IMAGE and tags["kfp.pipeline_version"] == "git-0123456789ab"
    assert tags["data.uri"] == str(chain["data"].path)
    assert tags["data.fingerprint"] == json.loads(chain["fingerprint"])["digest"]
    assert "data.path" not in tags  # a pod-local copy says nothing about the data
    # The finished run stays in the durable folder: a retried task returns it, untrained.
    durable = chain["checkpoints"] / KFP_RUN_ID / "baseline"
    assert (durable / "out" / "run.json").exists() and not (durable / "checkpoint").exists()


def train_baseline(chain: dict, out: Path, checkpoint_root: Path) -> dict[str, Any]:
    """The train component's arguments for baseline on the chain's shards, into out/."""
    return dict(
        variant="baseline",
        shards=chain["fit_shards"],
        model=artifact(Model, out / "model"),
        training=artifact(Artifact, out / "training"),
        mlflow_tracking_uri=chain["uri"],
        checkpoint_root=str(checkpoint_root),
        resume_key="",
        kfp_run_id=KFP_RUN_ID,
        image=IMAGE,
        data_uri="unused",
        data_fingerprint=chain["fingerprint"],
        overrides=chain["overrides"],
    )


@pytest.mark.slow
def test_a_retried_train_task_returns_the_finished_run(
    chain: dict, tmp_path: Path, tiny_train: dict[str, Any]
) -> None:
    arguments = train_baseline(chain, tmp_path, chain["checkpoints"])
    train.python_func(**arguments, **tiny_train)
    model = arguments["model"]
    assert model.metadata["mlflow_run_id"] == chain["baseline"]["model"].metadata["mlflow_run_id"]
    first = (Path(chain["baseline"]["model"].path) / "model.keras").read_bytes()
    assert (tmp_path / "model" / "model.keras").read_bytes() == first


@pytest.mark.slow
def test_train_refuses_to_run_without_the_gpus_it_was_given(
    chain: dict, tmp_path: Path, tiny_train: dict[str, Any]
) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: the CPU-fallback guard cannot trigger")
    with pytest.raises(PipelineError, match="gpu_count: 1 GPU"):
        train.python_func(
            **train_baseline(chain, tmp_path, tmp_path / "checkpoints"),
            **{**tiny_train, "gpu_count": 1},
        )
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_evaluate_logs_metrics_and_a_roc_curve(chain: dict) -> None:
    scored = chain["baseline"]
    written = json.loads((Path(scored["evaluation"].path) / "metrics.json").read_text())
    metrics = scored["metrics"].metadata
    assert metrics["test_macro_auroc"] == pytest.approx(written["overall"]["auroc"])
    assert metrics["test_macro_aupr"] == pytest.approx(written["overall"]["aupr"])
    points = scored["roc"].metadata["confidenceMetrics"]
    assert (
        scored["roc"].metadata["target"]
        == json.loads((Path(scored["evaluation"].path) / "curves.json").read_text())[0]["target"]
    )
    fpr = [p["falsePositiveRate"] for p in points]
    thresholds = [p["confidenceThreshold"] for p in points]
    assert (fpr[0], points[0]["recall"]) == (0.0, 0.0)
    assert (fpr[-1], points[-1]["recall"]) == (1.0, 1.0)
    assert fpr == sorted(fpr) and thresholds == sorted(thresholds, reverse=True)


@pytest.mark.slow
def test_evaluate_hands_on_the_rows_the_bootstrap_uses(chain: dict) -> None:
    """predictions.npz holds bootstrap_rows' rows (here all 40: fewer than the cap; the cut
    itself is tested with paired_bootstrap_delta in tests/evaluation) and their indices."""
    folder = Path(chain["baseline"]["evaluation"].path)
    written = json.loads((folder / "metrics.json").read_text())
    assert written["n_test"] == TEST_ROWS and written["validation"]["n"] == TEST_ROWS
    params = task_params({}, chain["overrides"])
    expected = bootstrap_rows(TEST_ROWS, params.promote.bootstrap_max_rows, params.seed)
    for split in ("", "valid"):
        with np.load(folder / split / "predictions.npz") as predictions:
            assert np.array_equal(predictions["rows"], expected)
            assert predictions["y_score"].shape == predictions["y_true"].shape == (TEST_ROWS, 16)
        other = Path(chain["random_dropout"]["evaluation"].path) / split / "predictions.npz"
        with np.load(other) as predictions:
            assert np.array_equal(predictions["rows"], expected)
    assert chain["baseline"]["metrics"].metadata["valid_macro_auroc"] == pytest.approx(
        written["validation"]["overall"]["auroc"]
    )


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


def run_explain(chain: dict, variant: str, overrides: list[str]) -> dict[str, Any]:
    folder = chain["root"] / variant / "explain"
    outs = {
        "explanation": artifact(Dataset, folder / "explanation"),
        "report": artifact(HTML, folder / "report.html"),
        "metrics": artifact(Metrics, folder / "metrics"),
    }
    explain.python_func(
        model=chain[variant]["model"],
        evaluation=chain[variant]["evaluation"],
        valid_shards=chain["valid_shards"],
        test_shards=chain["test_shards"],
        mlflow_tracking_uri=chain["uri"],
        overrides=overrides,
        **outs,
    )
    return outs


@pytest.mark.slow
def test_explain_shows_the_filter_report_in_the_ui_and_logs_it_to_the_training_run(
    chain: dict,
) -> None:
    outs = run_explain(chain, "baseline", [*chain["overrides"], "explain_filters.min_sites=1"])
    folder = Path(outs["explanation"].path)
    page = Path(outs["report"].path).read_text()
    assert page == (folder / "report.html").read_text()  # self-contained: tests/interpretation
    assert 'src="data:image/png;base64,' in page
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_sequences"] == TEST_ROWS * 2  # the test shards, both strands
    assert outs["metrics"].metadata == {
        "filters_compared": summary["n_compared"],
        "filters_matching_jaspar": summary["n_matched"],
    }
    run_id = chain["baseline"]["model"].metadata["mlflow_run_id"]
    assert outs["explanation"].metadata == {"variant": "baseline", "mlflow_run_id": run_id}
    logged = {
        Path(f.path).name
        for f in mlflow.MlflowClient(chain["uri"]).list_artifacts(run_id, "explain")
    }
    assert {"report.html", "report.md", "filters.meme", "matches.tsv", "summary.json"} <= logged


def test_explain_scans_the_split_asked_for_and_never_the_training_split() -> None:
    assert shards_for_explain(task_params({}), "/v", "/t") == "/t/test"  # the default
    valid = task_params({}, ["explain_filters.split=valid"])
    assert shards_for_explain(valid, "/v", "/t") == "/v/valid"
    train = task_params({}, ["explain_filters.split=train"])
    with pytest.raises(ConfigError, match="explain_filters.split: 'train'"):
        shards_for_explain(train, "/v", "/t")


def compare_inputs(chain: dict) -> dict[str, Any]:
    return {
        f"{variant}_{output}": chain[variant][output]
        for variant in ("baseline", "random_dropout")
        for output in ("training", "evaluation")
    }


@pytest.mark.slow
def test_compare_then_promote_sets_the_champion(chain: dict) -> None:
    root = chain["root"]
    outs = {
        "report": artifact(HTML, root / "report.html"),
        "report_markdown": artifact(Markdown, root / "report.md"),
        "decision": artifact(Markdown, root / "decision.md"),
        "candidates": artifact(Dataset, root / "candidates"),
        # named as KFP names it: no suffix for numpy to add to
        "champion_scores": artifact(Dataset, root / "champion_scores"),
    }
    settings = dict(
        mlflow_tracking_uri=chain["uri"],
        registered_model=REGISTERED,
        min_macro_auroc=0.0,
        min_macro_aupr=0.0,
        overrides=chain["overrides"],
    )
    blessed = compare.python_func(
        valid_shards=chain["valid_shards"], **compare_inputs(chain), **outs, **settings
    )
    assert blessed is True
    decision = Path(outs["decision"].path).read_text()
    assert "promote" in decision and "Decided on valid; test is reported only." in decision
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
        valid_shards=chain["valid_shards"],
        champion_scores=outs["champion_scores"],
        blessing=blessing,
        summary=summary,
        kfp_run_id=KFP_RUN_ID,
        image="registry.example/danq-cpu:git-0123456789ab",
        data_uri="gs://bucket/deepsea",
        data_fingerprint=chain["fingerprint"],
        **settings,
    )
    chosen = json.loads(Path(blessing.path).read_text())["chosen"]
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert version == str(champion.version)
    assert champion.tags["danq.variant"] == chosen
    assert blessing.metadata["decision"] == "promote"
    for registered in client.search_model_versions(f"name='{REGISTERED}'"):
        assert registered.tags["kfp.run_id"] == KFP_RUN_ID
        assert registered.tags["data.uri"] == "gs://bucket/deepsea"
        assert registered.tags["kfp.pipeline_version"] == "git-0123456789ab"

    # Against a champion now: compare scores it on the sampled validation rows, hands the
    # scores on.
    blessed = compare.python_func(
        valid_shards=chain["valid_shards"],
        **compare_inputs(chain),
        **{**outs, "candidates": artifact(Dataset, root / "candidates2")},
        **settings,
    )
    with np.load(outs["champion_scores"].path) as saved:
        assert str(saved["model_uri"]) == f"models:/{REGISTERED}/{version}"
        champion_scores = saved["y_score"]
    assert champion_scores.shape == (TEST_ROWS, 16)
    # The champion's scores on those rows are its validation evaluation's, row for row.
    with np.load(root / "candidates2" / chosen / "valid" / "predictions.npz") as own:
        np.testing.assert_allclose(champion_scores, own["y_score"], rtol=1e-5, atol=1e-6)
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


@pytest.mark.parametrize(
    "override",
    [
        "mlflow.tracking_uri=http://collector.example:5000",
        "mlflow={tracking_uri: 'http://collector.example:5000'}",
    ],
)
def test_overrides_cannot_move_the_compiled_tracking_uri(override: str) -> None:
    """`overrides` is a free run parameter: a run must not redirect the MLflow login the steps
    carry (the URI is compiled into the pipeline)."""
    compiled = "http://mlflow.mlflow.svc.cluster.local:5000"
    with pytest.raises(ConfigError, match="fixed when the pipeline is compiled") as refused:
        task_params({"mlflow.tracking_uri": compiled}, [override])
    assert f"compiled in as {compiled}" in str(refused.value)
    assert "collector" not in str(refused.value)
    # Nor can a step that does not use MLflow be given one.
    with pytest.raises(ConfigError, match="not used by this step"):
        task_params({}, [override])
    # Other mlflow settings still can be overridden.
    params = task_params({"mlflow.tracking_uri": compiled}, ["mlflow.experiment=trial"])
    assert (params.mlflow.tracking_uri, params.mlflow.experiment) == (compiled, "trial")

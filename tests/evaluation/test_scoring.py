"""Evaluation (DeepSEA protocol) and the comparison report, on a tiny real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from danq.cli.main import main
from danq.config import Params
from danq.data.targets import target_table
from danq.evaluation.report import ONE_SEED_METHOD_VERDICT, build_report
from danq.evaluation.scoring import curve_points, evaluate_variant, predict_split
from danq.io.deepsea import open_split


def test_predictions_average_each_sequence_with_its_reverse_complement(
    tiny_data: Path, tiny_shards: Path, tiny_models: Path
) -> None:
    import keras

    model = keras.models.load_model(tiny_models / "baseline" / "model.keras")
    labels, scores = predict_split(model, str(tiny_shards / "test"), batch_size=16)
    with open_split(tiny_data / "test.mat") as reader:
        x, y = reader.read(0, reader.n)
    half = len(x) // 2
    direct = model.predict(x.astype(np.float32), verbose=0)
    np.testing.assert_allclose(scores, (direct[:half] + direct[half:]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y[:half])


def test_curve_points_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(np.uint8)
    s = np.round(rng.random(300) + y * 0.3, 2)
    points = curve_points(y, s)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(points["fpr"], fpr)
    np.testing.assert_allclose(points["tpr"], tpr)
    # Average precision = sum over thresholds of (recall step) x precision.
    ap = np.sum(np.diff(points["recall"]) * points["precision"][1:])
    assert ap == pytest.approx(average_precision_score(y, s))


def test_target_names_and_categories_from_metadata(tiny_data: Path) -> None:
    names, categories = target_table(16, str(tiny_data))
    assert names[0] == "single:CTCF" and set(categories) >= {"single", "pair", "noise"}
    names, categories = target_table(919, None)
    assert names[600] == "target_600" and len(categories["TF"]) == 690
    assert target_table(5, None)[1] == {"all": [0, 1, 2, 3, 4]}


def test_evaluate_and_report(
    tiny_data: Path, tiny_shards: Path, tiny_models: Path, tmp_path: Path
) -> None:
    params = Params.model_validate(
        {"promote": {"bootstrap_samples": 50, "bootstrap_min_class_blocks": 2}}
    )
    for variant in ("baseline", "random_dropout"):
        metrics = evaluate_variant(
            params,
            variant,
            str(tiny_models / variant),
            str(tiny_shards / "test"),
            str(tmp_path / "eval" / variant),
            str(tiny_data),
            valid_shard_dir=str(tiny_shards / "valid"),
        )
        saved = json.loads((tmp_path / "eval" / variant / "metrics.json").read_text())
        assert saved["overall"]["auroc"] == pytest.approx(metrics["overall"]["auroc"])
        # Validation beside test, labelled: its own predictions and metrics under valid/.
        assert saved["split"] == "test" and saved["validation"]["split"] == "valid"
        valid = np.load(tmp_path / "eval" / variant / "valid" / "predictions.npz")
        assert len(valid["y_true"]) == saved["validation"]["n"] == 40
        valid_auroc = [
            roc_auc_score(valid["y_true"][:, t], valid["y_score"][:, t])
            for t in range(16)
            if 0 < valid["y_true"][:, t].sum() < len(valid["y_true"])
        ]
        assert saved["validation"]["overall"]["auroc"] == pytest.approx(np.mean(valid_auroc))
        assert (
            json.loads((tmp_path / "eval" / variant / "valid" / "metrics.json").read_text())[
                "overall"
            ]
            == saved["validation"]["overall"]
        )
        preds = np.load(tmp_path / "eval" / variant / "predictions.npz")
        auroc = [
            roc_auc_score(preds["y_true"][:, t], preds["y_score"][:, t])
            for t in range(16)
            if 0 < preds["y_true"][:, t].sum() < len(preds["y_true"])
        ]
        assert saved["overall"]["auroc"] == pytest.approx(np.mean(auroc), abs=1e-6)
        tsv = (tmp_path / "eval" / variant / "per_target.tsv").read_text().splitlines()
        assert tsv[0].split("\t") == ["index", "name", "category", "positives", "auroc", "aupr"]
        assert len(tsv) == 17 and tsv[1].split("\t")[1] == "single:CTCF"
    comparison = build_report(
        params,
        ["baseline", "random_dropout"],
        str(tiny_models),
        str(tmp_path / "eval"),
        str(tmp_path / "report"),
        plots_dir=str(tmp_path / "plots"),
        data_dir=str(tiny_data),  # synthetic: independent rows, blocks of 1
    )
    assert comparison["block_rows"] == 1 and comparison["oracle"] is None
    for split in ("valid", "test"):
        delta = comparison["delta"][split]["aupr"]
        assert delta["ci_low"] <= delta["delta"] <= delta["ci_high"]
        assert delta["verdict"] in (
            "within noise (the interval includes 0)",
            "the trained random_dropout model is better",
            "the trained baseline model is better",
        )
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    assert "Verdict on valid (decides promotion), trained random-dropout model" in markdown
    assert "Verdict on test (reported only)" in markdown
    assert "What the interval means" in markdown
    # One seed per variant: the verdict on the methods is "within training noise" whatever the
    # trained models' intervals say, so it is the same on every machine.
    assert ONE_SEED_METHOD_VERDICT in markdown
    report = tmp_path / "report"
    for name in (
        "comparison.md",
        "comparison.html",
        "comparison.json",
        "training_curves.png",
        "aupr_scatter.png",
        "roc_pr_curves.png",
    ):
        assert (report / name).stat().st_size > 0, name
    assert json.loads((report / "comparison.json").read_text())["delta"]["test"]["aupr"] == delta
    # The tables for dvc plots go to their own folder, and only there.
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "aupr_scatter.csv",
        "history_baseline.csv",
        "history_random_dropout.csv",
        "pr_baseline.csv",
        "pr_random_dropout.csv",
        "roc_baseline.csv",
        "roc_random_dropout.csv",
    ]
    assert not list(report.glob("*.csv"))
    history = (tmp_path / "plots" / "history_baseline.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,val_loss" and len(history) == 4
    html = (report / "comparison.html").read_text()
    assert "<table>" in html and "data:image/png;base64" in html
    assert "DanQ (random dropout)" in (report / "comparison.md").read_text()


def test_cli_copies_metrics_and_plot_tables_for_dvc(
    tiny_data: Path, tiny_shards: Path, tiny_models: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`danq evaluate` copies each metrics.json to <metrics_dir>/<variant>.json and `danq
    report` writes its CSV tables to <metrics_dir>/plots; options override both folders."""
    monkeypatch.chdir(tmp_path)  # paths.metrics_dir is relative: "metrics"
    common = ["--params", "absent.yaml", "-S", "promote.bootstrap_samples=20"]
    folders = ["--models", str(tiny_models), "--shards", str(tiny_shards / "test")]
    folders += ["--valid-shards", str(tiny_shards / "valid")]
    folders += ["--data", str(tiny_data)]
    assert main([*common, "evaluate", *folders, "--out", "eval"]) == 0
    out = capsys.readouterr().out
    assert "baseline: validation macro AUROC" in out and "decides promotion" in out
    assert "; test macro AUROC" in out and "(reported only)" in out
    for variant in ("baseline", "random_dropout"):
        copy = tmp_path / "metrics" / f"{variant}.json"
        assert copy.read_text() == (tmp_path / "eval" / variant / "metrics.json").read_text()
    assert main([*common, "evaluate", *folders, "--variants", "baseline", "--out", "eval2",
                 "--metrics-dir", "elsewhere"]) == 0  # fmt: skip
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["baseline.json"]

    report = ["report", "--models", str(tiny_models), "--eval", "eval", "--out", "report"]
    assert main([*common, *report]) == 0
    out = capsys.readouterr().out
    assert "report: report/comparison.md and comparison.html" in out
    # 40 rows in blocks of 50 (DeepSEA's, the data not being at hand): no interval, said so.
    assert "Verdict on valid (decides promotion): no interval" in out
    assert "oracle" not in out
    assert (tmp_path / "metrics" / "plots" / "aupr_scatter.csv").exists()
    assert (tmp_path / "report" / "comparison.md").exists()
    assert main([*common, *report, "--plots-dir", "tables"]) == 0
    assert (tmp_path / "tables" / "roc_baseline.csv").exists()
    capsys.readouterr()

    # The oracle's scores, when `danq data oracle` wrote them: the ceiling row and each
    # model's test macro AUROC as a share of the oracle's.
    (tmp_path / "oracle").mkdir()
    oracle = {
        "overall": {"auroc": 0.8, "aupr": 0.5},
        "categories": {"single": {"auroc": 0.9, "aupr": 0.6}},
    }
    (tmp_path / "oracle" / "metrics.json").write_text(json.dumps(oracle))
    blocks_of_one = [
        "-S",
        "promote.bootstrap_block_rows=1",
        "-S",
        "promote.bootstrap_min_class_blocks=2",
    ]
    assert main([*common, *blocks_of_one, *report, "--oracle", "oracle"]) == 0
    out = capsys.readouterr().out
    oracle_row = next(line for line in out.splitlines() if "PWM-scan oracle" in line)
    assert "| 0.8000 | 0.5000 | 1.000 |" in oracle_row
    baseline = json.loads((tmp_path / "eval" / "baseline" / "metrics.json").read_text())
    share = baseline["overall"]["auroc"] / 0.8
    assert f"| {share:.3f} |" in next(line for line in out.splitlines() if "(baseline)" in line)
    assert "Verdict on valid (decides promotion), trained random-dropout model" in out
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    category_row = next(
        line for line in markdown.splitlines() if line.startswith("| PWM-scan oracle |")
    )
    assert category_row.endswith("| 0.6000 |")  # "single", the last category in order


def test_evaluation_scores_the_logged_model_once_verified(
    tiny_shards: Path, tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training folder whose run logged its model: evaluation scores that logged model (the
    one registration will pick up), records its sha256, and refuses it once tampered with,
    before writing anything."""
    import shutil

    import mlflow

    from danq import tracking
    from danq.errors import ModelIntegrityError
    from danq.model.integrity import sha256_file
    from danq.model.loading import load_model

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    experiment = tracking.client(store).create_experiment("eval", str(tmp_path / "art"))
    model = load_model(str(tiny_models / "baseline" / "model.keras"))
    with tracking.using(store), mlflow.start_run(experiment_id=experiment) as run:
        logged = tracking.log_keras_model(
            model, np.zeros((2, 200, 4), np.float32), [f"t{i}" for i in range(16)]
        )
    folder = tmp_path / "models" / "baseline"  # run.json alone: no local model.keras
    folder.mkdir(parents=True)
    run_info = {"variant": "baseline", "run_id": run.info.run_id}
    (folder / "run.json").write_text(json.dumps(run_info | {"model_uri": logged}))
    params = Params.model_validate({"mlflow": {"tracking_uri": store}})
    shards = str(tiny_shards / "test")

    metrics = evaluate_variant(params, "baseline", str(folder), shards, "eval", None)

    (stored,) = (tmp_path / "art").rglob("data/model.keras")
    assert metrics["model_source"] == logged
    assert metrics["model_sha256"] == sha256_file(stored)
    local = predict_split(model, shards, 32)[1]
    np.testing.assert_allclose(np.load("eval/predictions.npz")["y_score"], local, rtol=1e-5)

    shutil.copyfile(tiny_models / "random_dropout" / "model.keras", stored)
    with pytest.raises(ModelIntegrityError, match=f"{logged}: sha256 mismatch"):
        evaluate_variant(params, "baseline", str(folder), shards, "eval2", None)
    assert not Path("eval2").exists()


def test_a_password_in_the_tracking_uri_stays_out_of_errors(
    tiny_shards: Path, tiny_models: Path, tmp_path: Path, free_port: int
) -> None:
    """MLflow quotes the request URL, userinfo included, in its connection errors."""
    from danq import tracking
    from danq.errors import EvaluationError

    folder = tmp_path / "baseline"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"variant": "baseline", "run_id": "abc"}))
    uri = f"http://danq:s3cret@127.0.0.1:{free_port}"
    params = Params.model_validate({"mlflow": {"tracking_uri": uri}})
    with tracking.fail_fast_http(2), pytest.raises(EvaluationError) as refused:
        evaluate_variant(params, "baseline", str(folder), str(tiny_shards / "test"), "x", None)
    assert f"http://danq:***@127.0.0.1:{free_port}" in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(("seq_len", "n_targets"), [(150, 16), (200, 15)])
def test_a_model_of_another_data_layout_is_refused_before_scoring(
    tiny_shards: Path, seq_len: int, n_targets: int
) -> None:
    """A champion trained on data of another layout (e.g. 500-bp sequences when the embedded
    data became 300 bp) gets a data error naming the shards, not a Keras shape error."""
    from danq.config import DropoutConfig
    from danq.errors import DataError
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq
    from tests.evaluation.conftest import TINY_MODEL

    model = build_danq(TINY_MODEL, seq_len, n_targets, dropout_policy(DropoutConfig(), "baseline"))
    shards = str(tiny_shards / "valid")
    with pytest.raises(
        DataError, match=rf"{shards}: 200-bp sequences with 16 targets.*{seq_len}-bp"
    ):
        predict_split(model, shards, 32)

"""Reading the candidates' evaluation outputs, as `danq promote` does before deciding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from danq.errors import CandidateError
from danq.promotion.promote import load_candidates


def write_eval(
    folder: Path, variant: str, labels: np.ndarray, y_score: np.ndarray, **metrics: object
) -> None:
    """An evaluation as danq evaluate leaves it: validation predictions under valid/ (what
    promotion reads), test predictions (not read) and metrics.json with the test metrics."""
    (folder / variant / "valid").mkdir(parents=True)
    (folder / variant / "metrics.json").write_text(
        json.dumps(
            {
                "variant": variant,
                "model_uri": f"runs:/{variant}-run/model",
                "mlflow_run_id": f"{variant}-run",
                "data_md5": "d5",
                "git_commit": "c0ffee",
                "overall": {"auroc": 0.7, "aupr": 0.3},
                **metrics,
            }
        )
    )
    np.savez_compressed(
        folder / variant / "valid" / "predictions.npz", y_true=labels, y_score=y_score
    )
    np.savez_compressed(
        folder / variant / "predictions.npz", y_true=labels[::-1], y_score=y_score[::-1]
    )


def test_load_candidates_reads_eval_outputs_and_checks_the_split(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    write_eval(tmp_path, "baseline", labels, rng.random(labels.shape).astype(np.float32))
    write_eval(tmp_path, "random_dropout", labels, rng.random(labels.shape).astype(np.float32))
    y_true, candidates = load_candidates(tmp_path, ["baseline", "random_dropout"])
    np.testing.assert_array_equal(y_true, labels)
    assert [(c.variant, c.run_id, c.git_commit) for c in candidates] == [
        ("baseline", "baseline-run", "c0ffee"),
        ("random_dropout", "random_dropout-run", "c0ffee"),
    ]
    assert candidates[0].model_uri == "runs:/baseline-run/model"
    assert candidates[1].data_md5 == "d5"
    assert candidates[0].test_metrics == {"auroc": 0.7, "aupr": 0.3}
    assert candidates[0].seed_metrics == ()
    write_eval(tmp_path, "other", labels[::-1], rng.random(labels.shape).astype(np.float32))
    with pytest.raises(CandidateError, match="other was evaluated on other validation labels"):
        load_candidates(tmp_path, ["baseline", "other"])
    with pytest.raises(CandidateError, match="missing: validation evaluation unreadable"):
        load_candidates(tmp_path, ["missing"])


def test_load_candidates_reads_every_seeds_validation_metric(tmp_path):
    labels = np.eye(4, dtype=np.uint8)
    seeds = [
        {"index": i, "seed": 7 + i, "valid": {"auroc": 0.6 + i / 10, "aupr": 0.2 + i / 10}}
        for i in range(3)
    ]
    write_eval(
        tmp_path,
        "baseline",
        labels,
        labels.astype(np.float32),
        seeds=seeds,
        selected_seed=seeds[2],
    )
    _, [candidate] = load_candidates(tmp_path, ["baseline"], metric="auroc")
    assert candidate.seed_metrics == pytest.approx((0.6, 0.7, 0.8))
    assert candidate.seed == 9


def test_load_candidates_needs_a_logged_model(tmp_path):
    labels = np.zeros((3, 2), np.uint8)
    write_eval(tmp_path, "baseline", labels, np.zeros((3, 2), np.float32))
    (tmp_path / "baseline" / "metrics.json").write_text(json.dumps({"variant": "baseline"}))
    with pytest.raises(CandidateError, match=r"metrics.json: no model_uri"):
        load_candidates(tmp_path, ["baseline"])
    with pytest.raises(CandidateError, match="no variants given"):
        load_candidates(tmp_path, [])

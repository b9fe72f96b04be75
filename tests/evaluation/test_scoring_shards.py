"""Evaluation names targets from the shards alone, and scores a subset of rows exactly as the
full split scores them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from danq.config import Params, PrepareConfig
from danq.data.shards import prepare_split
from danq.errors import DataError
from danq.evaluation.scoring import evaluate_variant, predict_split, predict_uri

N_FORWARD = 40  # the tiny test split: 80 samples, forward half then reverse complements


@pytest.fixture(scope="module")
def forward_shards(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test split stored as forward halves (reverse complements regenerated)."""
    out = tmp_path_factory.mktemp("forward") / "test"
    cfg = PrepareConfig(halves="forward", shard_size=15)
    prepare_split(str(tiny_data / "test.mat"), str(out), cfg, progress=False)
    return out


def test_evaluation_names_targets_from_the_shards(
    tiny_data: Path, tiny_shards: Path, tiny_models: Path, tmp_path: Path
) -> None:
    params = Params()
    model_dir, shards = str(tiny_models / "baseline"), str(tiny_shards / "test")
    evaluate_variant(params, "baseline", model_dir, shards, str(tmp_path / "shards_only"), None)
    evaluate_variant(
        params, "baseline", model_dir, shards, str(tmp_path / "with_data"), str(tiny_data)
    )
    tsv = (tmp_path / "shards_only" / "per_target.tsv").read_text()
    assert tsv.splitlines()[1].split("\t")[1:3] == ["single:CTCF", "single"]  # not target_0/all
    for name in ("per_target.tsv", "metrics.json", "curves.json"):
        assert (tmp_path / "shards_only" / name).read_text() == (
            tmp_path / "with_data" / name
        ).read_text(), name
    categories = json.loads((tiny_data / "metadata.json").read_text())["categories"]
    metrics = json.loads((tmp_path / "shards_only" / "metrics.json").read_text())
    assert list(metrics["categories"]) == list(categories)

    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match=r"targets\.json differ from .*elsewhere \(no metadata"):
        evaluate_variant(
            params, "baseline", model_dir, shards, str(tmp_path / "c"), str(tmp_path / "elsewhere")
        )


@pytest.mark.parametrize("halves", ["both", "forward"])
def test_scoring_rows_equals_indexing_the_full_scores(
    tiny_shards: Path, forward_shards: Path, tiny_models: Path, halves: str
) -> None:
    from danq.model.loading import load_model

    shards = str(tiny_shards / "test" if halves == "both" else forward_shards)
    path = str(tiny_models / "random_dropout" / "model.keras")
    model = load_model(path)
    labels, full = predict_split(model, shards, batch_size=16)
    assert full.shape == (N_FORWARD, 16)
    rows = np.array([0, 3, 15, 16, 17, 39])
    np.testing.assert_allclose(predict_uri(path, shards, 16, rows), full[rows], rtol=1e-5)
    for rows in (np.array([39]), np.arange(N_FORWARD), np.array([], dtype=np.int64)):
        picked_labels, picked = predict_split(model, shards, batch_size=16, rows=rows)
        assert picked.shape == (len(rows), 16)
        np.testing.assert_allclose(picked, full[rows], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(picked_labels, labels[rows])


def test_bad_rows_are_refused(tiny_shards: Path, tiny_models: Path) -> None:
    model = str(tiny_models / "baseline" / "model.keras")
    shards = str(tiny_shards / "test")
    for rows, words in (
        ([0, 40], "row 40 is out of range (the split has 40 sequences)"),
        ([-1, 2], "row -1 is out of range"),
        ([5, 2, 7], "rows are not sorted (5 before 2)"),
        ([1, 3, 3], "row 3 is given twice"),
        ([[1, 2]], "rows must be a 1-D array of integer indices"),
        ([1.0, 2.0], "rows must be a 1-D array of integer indices"),
    ):
        with pytest.raises(DataError, match="^" + re.escape(f"{shards}: {words}")):
            predict_uri(model, shards, batch_size=16, rows=np.array(rows))


class CountingModel:
    """A model that records how many samples each call scores."""

    def __init__(self, model) -> None:
        self.model, self.seen = model, []
        self.name, self.input_shape, self.output_shape = (
            model.name,
            model.input_shape,
            model.output_shape,
        )

    def predict_on_batch(self, x):
        self.seen.append(len(x))
        return self.model.predict_on_batch(x)


def test_only_the_chosen_rows_reach_the_model(tiny_shards: Path, tiny_models: Path) -> None:
    from danq.model.loading import load_model

    model = CountingModel(load_model(str(tiny_models / "baseline" / "model.keras")))
    predict_split(model, str(tiny_shards / "test"), 16, rows=np.array([2, 30, 31]))
    assert model.seen == [6]  # three forward rows and their three reverse complements

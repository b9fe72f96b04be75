"""The benchmark suite at tiny sizes: well-formed records, a faithful PyTorch port, and the
summary arithmetic. No timing is asserted: these check the code, not the machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.records import Figure, Summary

SEQ_LEN, TARGETS = 120, 12
SIZES = [200, 400]


def test_summary_min_median_max() -> None:
    s = Summary.of([3.0, 1.0, 2.0, 10.0])
    assert (s.min, s.median, s.max) == (1.0, 2.5, 10.0)
    assert s.values == (3.0, 1.0, 2.0, 10.0)
    with pytest.raises(ValueError):
        Summary.of([])


def test_ratio_is_oriented_so_that_above_one_means_ours_wins() -> None:
    rate = Figure(
        "r", "samples/s", Summary.of([30.0]), "ours", Summary.of([10.0]), "ref", target=1.5
    )
    assert rate.ratio == pytest.approx(3.0) and rate.target_met is True
    time = Figure(
        "t",
        "s",
        Summary.of([4.0, 2.0, 3.0]),
        "ours",
        Summary.of([6.0]),
        "ref",
        higher_is_better=False,
        target=5.0,
    )
    assert time.ratio == pytest.approx(2.0) and time.target_met is False
    alone = Figure("a", "s", Summary.of([1.0]), "ours")
    assert alone.ratio is None and alone.target_met is None
    assert json.dumps(time.to_json())  # serialisable, ratio included


@pytest.mark.parametrize("preset", ["small", "danq"])
def test_torch_port_has_keras_parameters_plus_second_lstm_biases(preset: str) -> None:
    from benchmarks.torch_danq import TorchDanQ, TorchDanQConfig, count_parameters
    from danq.config import DropoutConfig, ModelConfig
    from danq.model.dropout import dropout_policy
    from danq.model.network import build_danq

    cfg = ModelConfig(preset=preset)
    keras_model = build_danq(cfg, 1000, 919, dropout_policy(DropoutConfig(), "baseline"))
    port = TorchDanQ(
        TorchDanQConfig(
            conv_filters=cfg.conv_filters,
            conv_width=cfg.conv_width,
            pool_size=cfg.pool_size,
            lstm_units=cfg.lstm_units,
            dense_units=cfg.dense_units,
        )
    )
    # PyTorch's LSTM has b_ih and b_hh per gate; Keras one bias: 2 directions x 4 gates x units.
    extra = 2 * 4 * cfg.lstm_units
    # Trainable only: the dropout layers hold their rates as non-trainable variables.
    keras_params = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert count_parameters(port) == keras_params + extra
    if preset == "danq":
        assert keras_params == 46_926_479


def test_torch_port_trains_on_batch_first_input() -> None:
    import torch

    from benchmarks.torch_danq import TorchDanQConfig, TorchTrainer

    cfg = TorchDanQConfig(
        seq_len=SEQ_LEN,
        n_targets=TARGETS,
        conv_filters=8,
        conv_width=6,
        pool_size=5,
        lstm_units=4,
        dense_units=16,
    )
    trainer = TorchTrainer(cfg)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (6, SEQ_LEN)), 4).float()
    y = (torch.rand(6, TARGETS) < 0.3).float()
    assert trainer.model(x).shape == (6, TARGETS)
    assert math.isfinite(trainer.step(x, y))


def test_training_flops_match_the_published_estimate() -> None:
    from benchmarks.training import training_flops_per_sample
    from danq.config import ModelConfig

    gflop = training_flops_per_sample(ModelConfig(preset="danq"), 1000, 919) / 1e9
    assert 1.1 < gflop < 1.3  # ~1.2 GFLOP per training sample


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def prepared(work: Path) -> list[Figure]:
    from benchmarks.memory import prepare_benchmark

    figures, writes = prepare_benchmark(work, SIZES, SEQ_LEN, TARGETS)
    assert set(writes) == set(SIZES)
    return figures


def _well_formed(figure: Figure) -> None:
    assert figure.name and figure.unit and figure.ours_label
    assert all(v > 0 for v in figure.ours.values)
    assert figure.ours.min <= figure.ours.median <= figure.ours.max
    if figure.reference is not None:
        assert figure.ratio is not None and figure.ratio > 0
    json.dumps(figure.to_json(), default=str)


@pytest.mark.slow  # runs the prepare benchmark in child processes
def test_prepare_benchmark_records(prepared: list[Figure], work: Path) -> None:
    from benchmarks.memory import shard_dir
    from danq.data.shards import read_manifest

    for figure in prepared:
        _well_formed(figure)
    names = [f.name for f in prepared]
    assert names[:2] == ["prepare peak RSS, 200 samples", "prepare peak RSS, 400 samples"]
    assert "growth" in names[2] and prepared[2].target is not None
    assert read_manifest(str(shard_dir(work, 400) / "train")).n_source_samples == 400
    # The in-memory reference is the bytes of x as uint8.
    assert prepared[0].reference.median * 2**20 == 200 * SEQ_LEN * 4


@pytest.mark.slow  # trains a model
def test_training_and_pipeline_records(prepared: list[Figure], work: Path) -> None:
    from benchmarks.memory import shard_dir
    from benchmarks.pipeline import pipeline_throughput
    from benchmarks.training import TrainingSettings, training_throughput

    shards = str(shard_dir(work, 200) / "train")
    settings = TrainingSettings(preset="small", batch_size=20, steps=1, repeats=2)
    trained = training_throughput(shards, settings)
    assert [f.target for f in trained] == [1.0, 1.5, None]
    for figure in trained:
        _well_formed(figure)
        assert len(figure.ours.values) == 2
    assert 0 < trained[2].ratio  # fraction of the matmul peak
    piped = pipeline_throughput(shards, 20, 3, 1, trained[0].ours)
    assert piped[1].reference == trained[0].ours
    for figure in piped:
        _well_formed(figure)


@pytest.mark.slow  # trains models (in child processes for memory)
def test_training_memory_records(prepared: list[Figure], work: Path) -> None:
    from benchmarks.memory import training_memory_benchmark

    figures = training_memory_benchmark(work, SIZES, SEQ_LEN, "small", 20, 2)
    assert len(figures) == 3
    for figure in figures:
        _well_formed(figure)


def test_evaluation_records_and_agreement_with_sklearn() -> None:
    from benchmarks.evaluation import evaluation_benchmark

    (figure,) = evaluation_benchmark(3000, 30, 4, repeats=2)
    _well_formed(figure)
    assert figure.details["max_abs_difference"] < 1e-9
    assert len(figure.reference.values) == 2


@pytest.mark.slow  # runs the benchmark suite end to end
def test_runner_writes_markdown_and_json(tmp_path: Path) -> None:
    from benchmarks.__main__ import main

    argv = [
        "--only",
        "evaluation",
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path),
        "--sizes",
        "200",
        "--seq-len",
        str(SEQ_LEN),
        "--targets",
        str(TARGETS),
        "--eval-rows",
        "2000",
        "--eval-targets",
        "10",
        "--sklearn-targets",
        "2",
        "--repeats",
        "1",
    ]
    assert main(argv) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["machine"]["cores"] >= 1 and "tensorflow" in data["versions"]
    assert [f["name"] for f in data["figures"]] == [
        "evaluation, 2,000 x 10 (AUROC + AUPR per target)"
    ]
    markdown = (tmp_path / "results.md").read_text()
    assert "| evaluation, 2,000 x 10" in markdown and "min / median / max" in markdown


def test_synthetic_split_is_reused_when_the_shape_matches(tmp_path: Path) -> None:
    from benchmarks.data import write_random_split
    from danq.io.deepsea import open_split

    path = write_random_split(tmp_path / "train.mat", "train", 50, SEQ_LEN, TARGETS)
    stamp = path.stat().st_mtime_ns
    write_random_split(path, "train", 50, SEQ_LEN, TARGETS)
    assert path.stat().st_mtime_ns == stamp
    with open_split(path, "train") as reader:
        x, y = reader.read(0, 50)
    assert (x.sum(axis=2) == 1).all() and set(np.unique(y)) <= {0, 1}


def test_child_peak_rss_is_its_own_not_the_parents() -> None:
    import sys

    from benchmarks.memory import run_measured

    parent_block = np.ones(400 * 2**20, dtype=np.uint8)  # touched: 400 MB resident here
    child = "import numpy as np; np.ones(20 * 2**20, dtype=np.uint8)"
    run = run_measured([sys.executable, "-c", child])
    assert 20 * 2**20 < run.peak_rss_bytes < 300 * 2**20
    del parent_block

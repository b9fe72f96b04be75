"""Epoch lengths: every epoch trains its full number of steps and validates on every sample,
whether the shards hold both strands or the forward half only."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from danq import tracking
from danq.artifacts import HISTORY_FILE
from danq.config import PrepareConfig, parse_params
from danq.data.dataset import make_dataset, steps_per_epoch
from danq.data.encoding import onehot_to_codes, reverse_complement_codes
from danq.data.shards import prepare_dataset
from danq.io.deepsea import open_split
from danq.training.batches import training_batches, validation_batches
from danq.training.loop import train_variant

TINY_MODEL = dict(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)
# 240 training samples (120 sequences and their reverse complements) in batches of 32: 8 steps.
TINY_TRAIN = dict(batch_size=32, max_epochs=4, patience=10, shuffle_buffer=100, seed=5)


@pytest.fixture(scope="module")
def forward_shards(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data set stored as forward halves, in several shards per split."""
    out = tmp_path_factory.mktemp("forward_shards")
    prepare_dataset(
        str(tiny_data), str(out), PrepareConfig(halves="forward", shard_size=50), progress=False
    )
    return out


def shards(halves: str, tiny_shards: Path, forward_shards: Path) -> Path:
    return tiny_shards if halves == "both" else forward_shards


@pytest.mark.parametrize("rc_augment", [False, True])
@pytest.mark.parametrize("halves", ["both", "forward"])
def test_every_epoch_has_its_full_steps_for_both_storage_modes(
    tiny_shards, forward_shards, halves, rc_augment
) -> None:
    root = shards(halves, tiny_shards, forward_shards)
    cfg = parse_params({"train": {**TINY_TRAIN, "rc_augment": rc_augment}}).train
    batches, steps = training_batches(str(root / "train"), cfg, 0, 4)
    sizes = [len(y) for _, y in batches]
    # ceil(240 / 32) = 8 steps, the last batch of each pass 16 samples: four whole passes.
    assert steps == 8 and len(sizes) == 4 * steps
    assert sizes == ([32] * 7 + [16]) * 4
    resumed, _ = training_batches(str(root / "train"), cfg, 3, 4)
    assert sum(1 for _ in resumed) == steps
    assert steps_per_epoch(str(root / "valid"), 20) == 4
    assert sum(len(y) for _, y in validation_batches(str(root / "valid"), 20)) == 80


def test_a_shuffled_pass_over_forward_shards_holds_each_sequence_once_per_strand(
    tiny_data, forward_shards
) -> None:
    with open_split(tiny_data / "train.mat") as reader:
        x, _ = reader.read(0, reader.n)
    forward = onehot_to_codes(x[: len(x) // 2])[0]
    expected = sorted(map(bytes, np.concatenate([forward, reverse_complement_codes(forward)])))
    got = np.concatenate(
        [
            codes.numpy()
            for codes, _ in make_dataset(
                str(forward_shards / "train"), 16, shuffle=True, seed=4, codes_only=True
            )
        ]
    )
    assert sorted(map(bytes, got)) == expected
    assert not np.array_equal(got[: len(forward)], forward)  # shuffled, strands mixed


class StepCounter(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps[-1] += 1


@pytest.mark.slow
def test_training_on_forward_shards_runs_every_epoch_in_full(
    tiny_data, forward_shards, tmp_path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.client(uri).create_experiment("danq-test", artifact_location=str(tmp_path / "art"))
    params = parse_params(
        {
            "model": TINY_MODEL,
            "train": TINY_TRAIN,
            "mlflow": {"tracking_uri": uri, "experiment": "danq-test"},
        }
    )
    counter = StepCounter()
    out = tmp_path / "baseline"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_variant(
            params,
            "baseline",
            str(forward_shards),
            str(out),
            str(tiny_data),
            callbacks=[counter],
        )
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert counter.steps == [8, 8, 8, 8]
    history = json.loads((out / HISTORY_FILE).read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3, 4]

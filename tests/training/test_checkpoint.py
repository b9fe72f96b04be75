"""The checkpoint folder: every variable restored exactly, files replaced atomically, and
nothing kept that state.json does not name."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from danq import artifacts
from danq.artifacts import CHECKPOINT_STATE_FILE
from danq.config import ModelConfig, parse_params
from danq.errors import TrainingStateError
from danq.model.dropout import dropout_policy
from danq.model.network import build_danq, compile_danq
from danq.training.checkpoint import TrainingCheckpoint, resumable_variables

TINY = ModelConfig(
    preset="custom", conv_filters=8, conv_width=10, pool_size=5, lstm_units=4, dense_units=8
)


def tiny_model(seed: int, seq_len: int = 100) -> keras.Model:
    params = parse_params({})
    policy = dropout_policy(params.dropout, "random_dropout")
    model = compile_danq(build_danq(TINY, seq_len, 5, policy, seed=seed), params.train)
    model.optimizer.build(model.trainable_variables)
    return model


def values(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in resumable_variables(model)]


def test_variables_are_restored_exactly_including_the_dropout_generators(tmp_path: Path) -> None:
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint")
    saved = tiny_model(seed=1)
    name = checkpoint.save_variables(saved, 3)
    assert name == "variables-e0003.npz" and (checkpoint.directory / name).exists()

    restored = tiny_model(seed=2)
    assert any(
        not np.array_equal(a, b) for a, b in zip(values(saved), values(restored), strict=True)
    )
    checkpoint.restore_variables(restored, name)
    for ours, theirs in zip(values(saved), values(restored), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    seed_states = [v for v in resumable_variables(restored) if "seed_generator" in v.path]
    assert seed_states  # the masks a resumed run draws depend on them


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint")
    name = checkpoint.save_variables(tiny_model(seed=1, seq_len=100), 1)
    with pytest.raises(TrainingStateError, match=r"variable .* has shape"):
        checkpoint.restore_variables(tiny_model(seed=1, seq_len=200), name)


def test_commit_keeps_only_the_files_the_state_names(tmp_path: Path) -> None:
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint")
    assert checkpoint.read() is None
    model = tiny_model(seed=1)
    first = checkpoint.save_variables(model, 1)
    best = checkpoint.save_best_weights(model, 1)
    (checkpoint.directory / ".model.keras.123.tmp").write_text("left by a killed run")
    second = checkpoint.save_variables(model, 2)
    state = {"epoch": 2, "variables": second, "early_stopping": {"best_weights": best}}
    checkpoint.commit(state)

    assert checkpoint.read() == state
    assert sorted(p.name for p in checkpoint.directory.iterdir()) == sorted(
        [CHECKPOINT_STATE_FILE, second, best]
    )
    assert first != second
    checkpoint.remove()
    assert not checkpoint.directory.exists()


def test_keras_files_are_written_whole_under_their_own_name(tmp_path: Path) -> None:
    model = tiny_model(seed=1)
    path = tmp_path / "out" / "model.keras"
    artifacts.write_atomically(path, model.save)
    assert [p.name for p in path.parent.iterdir()] == ["model.keras"]
    for ours, loaded in zip(
        model.get_weights(), keras.models.load_model(path).get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, loaded)

    def fails(target: Path) -> None:
        target.write_text("half a model")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        artifacts.write_atomically(path, fails)
    assert [p.name for p in path.parent.iterdir()] == ["model.keras"]
    keras.models.load_model(path)  # the previous file, intact

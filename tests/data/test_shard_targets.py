"""Target names travel with the shards: targets.json in each split folder, checked against the
data folder when both are given."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from danq.artifacts import SHARD_TARGETS_FILE
from danq.config import SPLITS
from danq.data.targets import read_shard_targets, shard_target_table, target_table
from danq.errors import DataError


def test_prepare_writes_the_target_table_into_each_split(tiny_data, tiny_shards) -> None:
    expected = target_table(16, str(tiny_data))
    assert expected[0][0] == "single:CTCF"  # the synthetic names, not generic ones
    for split in SPLITS:
        saved = json.loads((tiny_shards / split / SHARD_TARGETS_FILE).read_text())
        assert (saved["names"], saved["categories"]) == expected
        assert read_shard_targets(str(tiny_shards / split)) == expected


def test_shards_name_targets_without_the_data_folder(tiny_data, tiny_shards, tmp_path) -> None:
    valid = str(tiny_shards / "valid")
    expected = target_table(16, str(tiny_data))
    assert shard_target_table(16, valid) == expected
    assert shard_target_table(16, valid, str(tiny_data)) == expected

    other = tmp_path / "other"  # a data folder without metadata.json: generic names
    other.mkdir()
    with pytest.raises(DataError) as caught:
        shard_target_table(16, valid, str(other))
    message = str(caught.value)
    assert f"{valid}/{SHARD_TARGETS_FILE}" in message and f"{other} (no metadata.json" in message
    assert "target 0 is 'single:CTCF' in one and 'target_0' in the other" in message

    with pytest.raises(DataError, match=f"{SHARD_TARGETS_FILE}: 16 target names for 15 targets"):
        shard_target_table(15, valid)


def test_disagreeing_metadata_is_named(tiny_data, tiny_shards, tmp_path) -> None:
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    metadata = json.loads((data / "metadata.json").read_text())
    metadata["targets"][3]["name"] = "renamed"
    (data / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(DataError, match=r"differ from .*data/metadata\.json \(target 3 is"):
        shard_target_table(16, str(tiny_shards / "test"), str(data))


def test_old_shards_and_broken_tables(tiny_shards, tmp_path) -> None:
    old = Path(shutil.copytree(tiny_shards / "test", tmp_path / "old"))
    (old / SHARD_TARGETS_FILE).unlink()
    assert read_shard_targets(str(old)) is None
    assert shard_target_table(16, str(old)) == target_table(16, None)

    (old / SHARD_TARGETS_FILE).write_text(json.dumps({"names": ["a"], "categories": {"x": [1]}}))
    with pytest.raises(DataError, match="'categories' must map each category to target indices"):
        read_shard_targets(str(old))
    (old / SHARD_TARGETS_FILE).write_text("[")
    with pytest.raises(DataError, match=f"{SHARD_TARGETS_FILE}: not JSON"):
        read_shard_targets(str(old))

"""Target names and categories of a data set: its metadata.json, DeepSEA's layout, or indices.

A data folder written by `danq data synth` (or a future data builder) carries metadata.json
with target names and categories; the DeepSEA bundle has none, but its 919 targets fall into
fixed DNase / TF / histone index ranges.

`prepare` copies the table into every split folder of the shards (targets.json), so a step
given only shards (a pipeline's train or evaluate step) names targets without the raw data.
"""

from __future__ import annotations

import json
import os
from typing import Any

from danq import artifacts
from danq.artifacts import DATA_METADATA_FILE, SHARD_TARGETS_FILE
from danq.errors import DataError
from danq.io import storage

DEEPSEA_N_TARGETS = 919

TargetTable = tuple[list[str], dict[str, list[int]]]  # names, {category: target indices}


def read_metadata(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The data folder's metadata.json (target names, categories), or None when it has none."""
    path = storage.join(str(data_dir), DATA_METADATA_FILE)
    if not storage.exists(path):
        return None
    with storage.open_binary(path) as fh:
        metadata: dict[str, Any] = json.loads(fh.read())
    return metadata


def deepsea_categories(n_targets: int) -> dict[str, list[int]] | None:
    """DeepSEA's DNase / TF / histone index ranges, or None unless there are 919 targets."""
    if n_targets != DEEPSEA_N_TARGETS:
        return None
    return {
        "DNase": list(range(0, 125)),
        "TF": list(range(125, 815)),
        "histone": list(range(815, 919)),
    }


def _metadata_table(n_targets: int, data_dir: str | None) -> TargetTable | None:
    """The table in data_dir's metadata.json, or None when it has none for n_targets."""
    metadata = read_metadata(data_dir) if data_dir else None
    if metadata and len(metadata["targets"]) == n_targets:
        return [t["name"] for t in metadata["targets"]], metadata["categories"]
    return None


def target_table(n_targets: int, data_dir: str | None) -> TargetTable:
    """Target names and categories: synthetic metadata, DeepSEA's ranges, or one group."""
    from_metadata = _metadata_table(n_targets, data_dir)
    if from_metadata is not None:
        return from_metadata
    categories = deepsea_categories(n_targets) or {"all": list(range(n_targets))}
    return [f"target_{i}" for i in range(n_targets)], categories


def write_shard_targets(split_dir: str | os.PathLike[str], table: TargetTable) -> None:
    """targets.json in a (local, staging) split folder of the shards."""
    names, categories = table
    artifacts.write_json(
        os.path.join(split_dir, SHARD_TARGETS_FILE), {"names": names, "categories": categories}
    )


def read_shard_targets(shard_dir: str) -> TargetTable | None:
    """The target table prepare stored in a split folder (local or gs://), or None for
    shards prepared before it did."""
    path = storage.join(shard_dir, SHARD_TARGETS_FILE)
    if not storage.exists(path):
        return None
    with storage.open_binary(path) as fh:
        try:
            raw = json.loads(fh.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not JSON ({err})") from None
    names = raw.get("names") if isinstance(raw, dict) else None
    categories = raw.get("categories") if isinstance(raw, dict) else None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DataError(f"{path}: 'names' must be a list of target names")
    if not (
        isinstance(categories, dict)
        and all(
            isinstance(members, list)
            and all(isinstance(t, int) and 0 <= t < len(names) for t in members)
            for members in categories.values()
        )
    ):
        raise DataError(
            f"{path}: 'categories' must map each category to target indices below {len(names)}"
        )
    return names, categories


def _first_difference(ours: TargetTable, theirs: TargetTable) -> str:
    for t, (a, b) in enumerate(zip(ours[0], theirs[0])):
        if a != b:
            return f"target {t} is {a!r} in one and {b!r} in the other"
    if len(ours[0]) != len(theirs[0]):
        return f"{len(ours[0])} names against {len(theirs[0])}"
    return "the names agree, the categories differ"


def shard_target_table(n_targets: int, shard_dir: str, data_dir: str | None = None) -> TargetTable:
    """Target names and categories for n_targets outputs scored on shard_dir.

    From the shards' targets.json; when data_dir is given too, its table must be the same
    (the shards were prepared from that folder). Shards without targets.json fall back to
    `target_table(n_targets, data_dir)`.
    """
    stored = read_shard_targets(shard_dir)
    if stored is None:
        return target_table(n_targets, data_dir)
    path = storage.join(shard_dir, SHARD_TARGETS_FILE)
    if len(stored[0]) != n_targets:
        raise DataError(f"{path}: {len(stored[0])} target names for {n_targets} targets")
    if data_dir is not None:
        from_metadata = _metadata_table(n_targets, data_dir)
        from_data = from_metadata or target_table(n_targets, None)
        if from_data != stored:
            source = (
                storage.join(data_dir, DATA_METADATA_FILE)
                if from_metadata
                else f"{data_dir} (no metadata.json for {n_targets} targets: generic names)"
            )
            raise DataError(
                f"target names in {path} differ from {source} "
                f"({_first_difference(stored, from_data)}): the shards were prepared from "
                "other data"
            )
    return stored

"""Target names and categories of a data set: its metadata.json, DeepSEA's layout, or indices.

A data folder written by `danq data synth` (or a future data builder) carries metadata.json
with target names and categories; the DeepSEA bundle has none, but its 919 targets fall into
fixed DNase / TF / histone index ranges.
"""

from __future__ import annotations

import json
import os
from typing import Any

from danq.artifacts import DATA_METADATA_FILE
from danq.io import storage

DEEPSEA_N_TARGETS = 919


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


def target_table(n_targets: int, data_dir: str | None) -> tuple[list[str], dict[str, list[int]]]:
    """Target names and categories: synthetic metadata, DeepSEA's ranges, or one group."""
    metadata = read_metadata(data_dir) if data_dir else None
    if metadata and len(metadata["targets"]) == n_targets:
        return [t["name"] for t in metadata["targets"]], metadata["categories"]
    categories = deepsea_categories(n_targets) or {"all": list(range(n_targets))}
    return [f"target_{i}" for i in range(n_targets)], categories

"""The content fingerprint of a DeepSEA-format folder: what ties shards to validated data.

The data gate hashes the files it is about to check and records the fingerprint in its
report; `prepare` is given that fingerprint and refuses to read a folder whose files differ.
The gate hashes before scanning, so a file that changes during or after the scan no longer
matches, and prepare fails instead of sharding data the gate never saw.

Files are hashed with SHA-256 in bounded chunks (DeepSEA's train.mat is 4.4 GB) through
danq.io.storage, so local paths, gcsfuse mounts (/gcs/...) and gs:// URIs give the same
fingerprint for the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from danq.artifacts import DATA_METADATA_FILE
from danq.config import SPLITS
from danq.errors import ConfigError, DataError
from danq.io import storage

CHUNK_BYTES = 8 << 20
SHORT_HASH = 12  # hex digits of a file hash shown in messages
# What the gate scans, and metadata.json: prepare copies its target names into the shards.
DATASET_FILES = (*(f"{split}.mat" for split in SPLITS), DATA_METADATA_FILE)


@dataclass(frozen=True)
class DataFingerprint:
    """Per file: (SHA-256 hex of its bytes, size in bytes); `digest` covers them all."""

    files: Mapping[str, tuple[str, int]]

    @property
    def digest(self) -> str:
        """The "sha256:<hex>" of the per-file records sorted by name: one string to compare,
        log or tag a run with."""
        records = "".join(
            f"{name}\t{sha}\t{size}\n" for name, (sha, size) in sorted(self.files.items())
        )
        return "sha256:" + hashlib.sha256(records.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "files": {
                name: {"sha256": sha, "bytes": size}
                for name, (sha, size) in sorted(self.files.items())
            },
        }

    def to_json(self) -> str:
        """Compact JSON (one line): fits a pipeline parameter or an MLflow tag."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "data fingerprint") -> DataFingerprint:
        """The fingerprint to_dict wrote; ConfigError naming the malformed part. The stored
        digest must match the files: a hand-edited or truncated record is refused."""
        if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict):
            raise ConfigError(f"{where}: expected an object with 'digest' and 'files'")
        files: dict[str, tuple[str, int]] = {}
        for name, record in raw["files"].items():
            sha = record.get("sha256") if isinstance(record, dict) else None
            size = record.get("bytes") if isinstance(record, dict) else None
            if not (isinstance(sha, str) and len(sha) == 64 and _is_hex(sha)):
                raise ConfigError(f"{where}: files.{name}.sha256 is not a SHA-256 hex digest")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ConfigError(f"{where}: files.{name}.bytes is not a byte count")
            files[name] = (sha, size)
        fingerprint = cls(files)
        if raw.get("digest") != fingerprint.digest:
            raise ConfigError(
                f"{where}: digest {raw.get('digest')!r} does not match its files "
                f"({fingerprint.digest})"
            )
        return fingerprint

    @classmethod
    def from_json(cls, text: str, where: str = "data fingerprint") -> DataFingerprint:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not JSON ({err})") from None
        return cls.from_dict(raw, where)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def dataset_files(folder: str) -> list[str]:
    """The fingerprinted files present in folder: train/valid/test.mat and metadata.json.

    A missing .mat is left out here: the gate reports it as a failed check."""
    return [name for name in DATASET_FILES if storage.exists(storage.join(folder, name))]


def hash_file(path: str) -> tuple[str, int]:
    """SHA-256 hex and size of one file, read in CHUNK_BYTES pieces."""
    sha, size = hashlib.sha256(), 0
    try:
        with storage.open_binary(path) as fh:
            while chunk := fh.read(CHUNK_BYTES):
                sha.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it to fingerprint ({err})") from None
    return sha.hexdigest(), size


def fingerprint_folder(folder: str, names: Sequence[str] | None = None) -> DataFingerprint:
    """The fingerprint of the named files in folder (default: `dataset_files(folder)`)."""
    names = dataset_files(folder) if names is None else names
    return DataFingerprint({name: hash_file(storage.join(folder, name)) for name in names})


def _short(record: tuple[str, int]) -> str:
    return f"sha256 {record[0][:SHORT_HASH]}, {record[1]:,} bytes"


def differences(expected: DataFingerprint, actual: DataFingerprint) -> list[str]:
    """One phrase per file that changed, appeared or vanished, naming both versions."""
    found = []
    for name in sorted(set(expected.files) | set(actual.files)):
        before, now = expected.files.get(name), actual.files.get(name)
        if before == now:
            continue
        if before is None:
            assert now is not None
            found.append(f"{name} appeared ({_short(now)})")
        elif now is None:
            found.append(f"{name} vanished (was {_short(before)})")
        else:
            found.append(f"{name} changed (validated: {_short(before)}; now: {_short(now)})")
    return found


def verify(folder: str, expected: DataFingerprint) -> DataFingerprint:
    """Raise DataError unless folder holds exactly the fingerprinted content; return it.

    Compared: the expected files and every file the gate would fingerprint now, so a
    metadata.json added after validation counts as a change too."""
    names = sorted(set(expected.files) | set(dataset_files(folder)))
    present = [name for name in names if storage.exists(storage.join(folder, name))]
    actual = DataFingerprint({name: hash_file(storage.join(folder, name)) for name in present})
    changes = differences(expected, actual)
    if changes:
        raise DataError(
            f"{folder}: the data changed after validation: {'; '.join(changes)}. Validate the "
            f"folder again (expected {expected.digest}, found {actual.digest})"
        )
    return actual

"""`danq data prepare`: DeepSEA-format splits to sample-major TFRecord shards.

Each record is one sample as raw bytes, no protobuf: L base codes (1 byte per base, A=0 G=1
C=2 T=3 N=4) followed by the T labels packed 8 to a byte (numpy.packbits, big bit order).
Fixed-length records decode in a single vectorised `tf.io.decode_raw` per batch, which is what
lets the input pipeline outrun the model by a wide margin. The source is read in bounded
chunks, so peak memory does not depend on the number of samples.

A split's folder holds its shards, targets.json (the data set's target names, so steps given
only shards can name targets) and a manifest.json written last: readers trust only folders
with a manifest, and the folder is assembled under a temporary name and renamed into place
(uploaded, then the manifest, for gs://), so a failure never leaves partial shards.

Given the data gate's fingerprint, prepare refuses a folder whose content differs from what
the gate validated, before reading it and again before publishing the shards.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from danq import __version__, artifacts
from danq.artifacts import SHARD_MANIFEST_FILE
from danq.config import SPLITS, PrepareConfig
from danq.data.encoding import onehot_to_codes
from danq.data.fingerprint import DataFingerprint, verify
from danq.data.targets import target_table, write_shard_targets
from danq.errors import DataError
from danq.io import limits as reader_limits
from danq.io import storage
from danq.io.deepsea import SplitReader

FORMAT = "danq-raw-v1"


@dataclass
class Manifest:
    split: str
    n_samples: int
    seq_len: int
    n_targets: int
    halves: str  # "both": as in the source; "forward": first half only, RC regenerated
    compression: str
    shards: list[dict] = field(default_factory=list)  # {"file", "samples"}
    source: str = ""
    format: str = FORMAT
    label_bytes: int = 0
    danq_version: str = __version__

    @property
    def record_bytes(self) -> int:
        return self.seq_len + self.label_bytes

    @property
    def n_source_samples(self) -> int:
        """Samples the shards stand for, counting regenerated reverse complements."""
        return self.n_samples * (2 if self.halves == "forward" else 1)


def read_manifest(shard_dir: str) -> Manifest:
    path = storage.join(shard_dir, SHARD_MANIFEST_FILE)
    if not storage.exists(path):
        raise DataError(
            f"{shard_dir}: no {SHARD_MANIFEST_FILE}; not a prepared shard folder (run `danq "
            "data prepare`)"
        )
    max_bytes = reader_limits.active().max_manifest_bytes
    with storage.open_binary(path) as fh:
        content = fh.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise DataError(
            f"{path}: larger than {max_bytes:,} bytes (limits.max_manifest_bytes); not a shard "
            "manifest"
        )
    try:
        raw = json.loads(content)
    # ValueError also covers an integer past Python's 4,300-digit limit; RecursionError, arrays
    # nested a few thousand deep (tests/fuzz/crashes/manifest).
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: not JSON ({err})") from err
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a JSON object expected, got {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise DataError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    return _checked_manifest(raw, path)


# Shard files are plain names inside the split's folder: a "/" or ".." in a manifest would
# make readers (and the gs:// staging cache, danq.kfp.staging) open files outside it.
SHARD_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _checked_manifest(raw: dict, path: str) -> Manifest:
    """The manifest's fields with their types, ranges and shard names checked: a DataError
    naming the key, not a TypeError or a path outside the folder."""
    known = {f.name for f in fields(Manifest)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}")
    for key in ("split", "n_samples", "seq_len", "n_targets", "halves", "compression"):
        if key not in raw:
            raise DataError(f"{path}: key {key!r} missing")
    for key in ("n_samples", "seq_len", "n_targets", "label_bytes"):
        value = raw.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataError(f"{path}: {key} must be a positive integer, got {value!r}")
    for key in ("source", "danq_version"):
        if not isinstance(raw.get(key, ""), str):
            raise DataError(f"{path}: {key} must be a string, got {type(raw[key]).__name__}")
    if raw["split"] not in SPLITS:
        raise DataError(f"{path}: split {raw['split']!r}, expected one of {', '.join(SPLITS)}")
    for key, allowed in (("halves", ("both", "forward")), ("compression", ("none", "gzip"))):
        if raw[key] not in allowed:
            raise DataError(f"{path}: {key} {raw[key]!r}, expected one of {', '.join(allowed)}")
    shards = raw.get("shards", [])
    if not isinstance(shards, list) or not shards:
        raise DataError(f"{path}: shards must be a non-empty list")
    total = 0
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict) or set(shard) != {"file", "samples"}:
            raise DataError(f"{path}: shards[{i}] must be {{'file': ..., 'samples': ...}}")
        name, samples = shard["file"], shard["samples"]
        if not isinstance(name, str) or not SHARD_FILE_NAME.fullmatch(name) or ".." in name:
            raise DataError(
                f"{path}: shards[{i}].file {name!r} is not a plain file name inside the folder"
            )
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise DataError(f"{path}: shards[{i}].samples must be a positive integer")
        total += samples
    if total != raw["n_samples"]:
        raise DataError(
            f"{path}: the shards hold {total:,} samples but n_samples is {raw['n_samples']:,}"
        )
    if "label_bytes" in raw and raw["label_bytes"] != -(-raw["n_targets"] // 8):
        raise DataError(
            f"{path}: label_bytes {raw['label_bytes']} does not fit {raw['n_targets']} targets"
        )
    return Manifest(**raw)


def encode_records(x: np.ndarray, y: np.ndarray, where: str) -> np.ndarray:
    """One-hot x (n, L, 4) and labels y (n, T) to fixed-length records (n, L + ceil(T/8))."""
    codes, invalid = onehot_to_codes(x)
    if invalid.any():  # the reader already rejects these; guard the format anyway
        raise DataError(f"{where}: invalid one-hot positions")
    return np.concatenate([codes, np.packbits(y, axis=1)], axis=1)


def _write_shards(
    reader: SplitReader, cfg: PrepareConfig, work: Path, n_samples: int, progress: bool
) -> list[dict]:
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP" if cfg.compression == "gzip" else "")
    n_shards = max(1, -(-n_samples // cfg.shard_size))
    shards = []
    started = time.monotonic()
    for shard in range(n_shards):
        lo, hi = shard * cfg.shard_size, min((shard + 1) * cfg.shard_size, n_samples)
        name = f"{reader.split}-{shard:05d}-of-{n_shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(work / name), options) as writer:
            for start, x, y in reader.iter_chunks(cfg.chunk_size, lo, hi):
                assert y is not None  # SplitReader requires labels unless told otherwise
                records = encode_records(x, y, f"{reader.name} samples {start}-")
                for record in records:
                    writer.write(record.tobytes())
        shards.append({"file": name, "samples": hi - lo})
        if progress:
            rate = hi / max(time.monotonic() - started, 1e-9)
            print(f"  {reader.name}: {hi}/{n_samples} samples ({rate:,.0f}/s)", flush=True)
    return shards


def _folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if storage.is_remote(path) else str(Path(path).parent)


def prepare_split(
    source: str, out_dir: str, cfg: PrepareConfig, split: str | None = None, progress: bool = True
) -> Manifest:
    """Convert one .mat split into shards under out_dir (local path or gs:// URI), with the
    target table of source's folder (see danq.data.targets) in targets.json."""
    with SplitReader(source, split) as reader:
        if cfg.halves == "forward":
            if reader.n % 2:
                raise DataError(
                    f"{reader.name}: {reader.n} samples cannot split into forward and "
                    "reverse-complement halves (prepare.halves: forward needs an even count)"
                )
            n_samples = reader.n // 2
        else:
            n_samples = reader.n
        n_targets = reader.n_targets
        assert n_targets is not None  # SplitReader requires labels unless told otherwise
        manifest = Manifest(
            split=reader.split,
            n_samples=n_samples,
            seq_len=reader.seq_len,
            n_targets=n_targets,
            halves=cfg.halves,
            compression=cfg.compression,
            source=str(source),
            label_bytes=-(-n_targets // 8),
        )
        work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=artifacts.staging_parent(out_dir)))
        try:
            manifest.shards = _write_shards(reader, cfg, work, n_samples, progress)
            write_shard_targets(work, target_table(n_targets, _folder_of(str(source))))
            artifacts.write_json(work / SHARD_MANIFEST_FILE, asdict(manifest))
            artifacts.publish_dir(work, out_dir, SHARD_MANIFEST_FILE)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return manifest


def prepare_dataset(
    data_dir: str,
    out_dir: str,
    cfg: PrepareConfig,
    splits: Sequence[str] = SPLITS,
    progress: bool = True,
    expected_fingerprint: DataFingerprint | None = None,
) -> dict[str, Manifest]:
    """Prepare every split of a DeepSEA-format folder into out_dir/<split>/.

    Locally all requested splits are converted in one temporary folder before any of them
    replaces its older version, so a bad split leaves no shards behind; splits not
    requested are left as they are.

    expected_fingerprint (the data gate's): data_dir must hold exactly that content, checked
    before anything is read or written and again once the shards are built (a file replaced
    meanwhile); DataError otherwise. Locally nothing is published then; on gs:// the splits
    written are removed again.
    """
    if expected_fingerprint is not None:
        verify(data_dir, expected_fingerprint)

    def convert(root: str) -> dict[str, Manifest]:
        return {
            split: prepare_split(
                storage.join(data_dir, f"{split}.mat"),
                storage.join(root, split),
                cfg,
                split,
                progress,
            )
            for split in splits
        }

    if storage.is_remote(out_dir):
        manifests = convert(out_dir)
        if expected_fingerprint is not None:
            try:
                verify(data_dir, expected_fingerprint)
            except DataError:
                for split in splits:
                    storage.remove_tree(storage.join(out_dir, split))
                raise
        return manifests
    target = Path(out_dir).resolve()
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=artifacts.staging_parent(target)))
    try:
        manifests = convert(str(work))
        if expected_fingerprint is not None:
            verify(data_dir, expected_fingerprint)
        target.mkdir(exist_ok=True)
        for split in splits:  # every split converted before any is replaced
            artifacts.publish_dir(work / split, target / split, SHARD_MANIFEST_FILE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifests

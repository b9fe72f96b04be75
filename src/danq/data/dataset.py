"""The tf.data input pipeline over prepared shards.

shards -> (file shuffle, interleave) -> record shuffle buffer -> batch -> one vectorised
decode per batch (raw bytes to one-hot float32 and unpacked labels) -> optional
reverse-complement augmentation -> prefetch.

With shuffle off, samples come out in exactly the source order (for "forward" shards: the
forward half, then the regenerated reverse-complement half, as in the DeepSEA files). With
shuffle on, a pass still holds every sample the shards stand for once: "forward" shards are
read once per strand, so one pass is n_source_samples long whatever `halves` is, and an epoch
of steps_per_epoch() batches never runs past the end of its pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import tensorflow as tf

from danq import artifacts
from danq.artifacts import SHARD_MANIFEST_FILE
from danq.data.shards import Manifest, read_manifest
from danq.errors import DataError
from danq.io import storage

# Complement in code space (A=0 G=1 C=2 T=3 N=4): A<->T, G<->C, N stays N.
_COMPLEMENT = tf.constant([3, 2, 1, 0, 4], dtype=tf.uint8)
_BIT_SHIFTS = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], dtype=tf.uint8)


def _decode(records: tf.Tensor, manifest: Manifest) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of serialized records to base codes (B, L) uint8 and labels (B, T) float32."""
    raw = tf.io.decode_raw(records, tf.uint8, fixed_length=manifest.record_bytes)
    codes = raw[:, : manifest.seq_len]
    packed = raw[:, manifest.seq_len :]
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed[:, :, None], _BIT_SHIFTS), 1)
    labels = tf.reshape(bits, [-1, manifest.label_bytes * 8])[:, : manifest.n_targets]
    return codes, tf.cast(labels, tf.float32)


def reverse_complement(codes: tf.Tensor) -> tf.Tensor:
    return tf.gather(_COMPLEMENT, tf.cast(tf.reverse(codes, axis=[-1]), tf.int32))


def one_hot(codes: tf.Tensor) -> tf.Tensor:
    """Base codes to float32 one-hot (..., L, 4); N (code 4) becomes an all-zero row."""
    return tf.one_hot(tf.cast(codes, tf.int32), 4, dtype=tf.float32)


def _random_rc(codes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    flip = tf.random.stateless_uniform([tf.shape(codes)[0]], seed=seed) < 0.5
    return tf.where(flip[:, None], reverse_complement(codes), codes)


def local_shard_dir(shard_dir: str) -> str:
    """A local copy of a gs:// shard folder (downloaded once, checked by size), or the path.

    TensorFlow's own GCS client cannot be pointed at an emulator or a private endpoint, so
    remote shards are staged to local disk (DANQ_CACHE_DIR, default ~/.cache/danq) and read
    from there: sequential local reads also keep the input pipeline ahead of a GPU.
    """
    if not storage.is_remote(shard_dir):
        return shard_dir
    manifest = read_manifest(shard_dir)
    key = hashlib.sha256(json.dumps([shard_dir, asdict(manifest)]).encode()).hexdigest()[:16]
    local = storage.cache_dir() / "shards" / key
    complete = local / SHARD_MANIFEST_FILE
    if not complete.exists():
        local.mkdir(parents=True, exist_ok=True)
        for shard in manifest.shards:
            storage.download(storage.join(shard_dir, shard["file"]), local / shard["file"])
            expected = shard["samples"] * manifest.record_bytes
            if manifest.compression == "none" and (local / shard["file"]).stat().st_size < expected:
                raise DataError(f"{shard_dir}/{shard['file']}: incomplete download")
        # Written last: the copy is whole.
        artifacts.write_text(complete, json.dumps(asdict(manifest)))
    return str(local)


def shard_files(shard_dir: str, manifest: Manifest) -> list[str]:
    return [storage.join(shard_dir, s["file"]) for s in manifest.shards]


def make_dataset(
    shard_dir: str,
    batch_size: int,
    *,
    shuffle: bool = False,
    shuffle_buffer: int = 10_000,
    seed: int = 0,
    rc_augment: bool = False,
    epochs: tuple[int, int] | None = None,
    drop_remainder: bool = False,
    codes_only: bool = False,
) -> tf.data.Dataset:
    """Batches of (one-hot x (B, L, 4) float32, labels (B, T) float32).

    `epochs=(first, stop)` chains epochs first..stop-1, each shuffled and augmented from a
    seed derived from (seed, epoch): a run resumed at epoch k sees exactly the batches an
    uninterrupted run would. Without it, one pass.
    `rc_augment` replaces each sample by its reverse complement with probability 1/2.
    Shards stored as "forward" halves are expanded to both strands, each sample once per
    strand: in order when shuffle is off (the forward half, then the reverse-complement half),
    by shuffling (file, strand) pairs when it is on. Either way a pass yields
    manifest.n_source_samples samples, as "both" shards do.
    `codes_only` yields base codes (B, L) uint8 instead of one-hot.
    """
    shard_dir = local_shard_dir(shard_dir)
    manifest = read_manifest(shard_dir)
    files = shard_files(shard_dir, manifest)
    compression = "GZIP" if manifest.compression == "gzip" else ""
    expand_forward = manifest.halves == "forward"
    strands = [False, True] if expand_forward else [False]
    sources = [(file, is_rc) for is_rc in strands for file in files]

    def decode(batch_records, is_rc, batch_seed):
        codes, labels = _decode(batch_records, manifest)
        codes = tf.where(is_rc[:, None], reverse_complement(codes), codes)
        if rc_augment:
            codes = _random_rc(codes, batch_seed)
        return (codes if codes_only else one_hot(codes)), labels

    def read(file: tf.Tensor, is_rc: tf.Tensor) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(file, compression).map(lambda r: (r, is_rc))

    def one_epoch(epoch: int) -> tf.data.Dataset:
        # Python-int seeds: a tensor seed breaks Dataset.shuffle once a global seed is set
        # (keras.utils.set_random_seed), and plain ints keep each epoch's order reproducible.
        epoch_seed = (seed * 1_000_003 + epoch) % 2**63
        if shuffle:
            # A forward shard file comes twice, once per strand, in random places of the order.
            file_ds = tf.data.Dataset.from_tensor_slices(
                ([file for file, _ in sources], [is_rc for _, is_rc in sources])
            ).shuffle(len(sources), seed=epoch_seed, reshuffle_each_iteration=False)
            records = file_ds.interleave(
                read,
                cycle_length=min(4, len(sources)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            if shuffle_buffer > 1:
                records = records.shuffle(
                    shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False
                )
        else:
            records = tf.data.TFRecordDataset(files, compression).map(lambda r: (r, False))
            if expand_forward:  # forward half, then the reverse-complement half, as in the file
                records = records.concatenate(records.map(lambda r, _: (r, True)))
        batches = records.batch(batch_size, drop_remainder=drop_remainder)
        return batches.enumerate().map(
            lambda step, batch: (
                batch[0],
                batch[1],
                tf.stack([tf.constant(epoch_seed, tf.int64), step]),
            )
        )

    first, stop = epochs if epochs is not None else (0, 1)
    if stop <= first:
        raise ValueError(f"epochs: empty range {first}..{stop}")
    batches = one_epoch(first)
    for epoch in range(first + 1, stop):
        batches = batches.concatenate(one_epoch(epoch))
    batches = batches.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(shard_dir: str, batch_size: int) -> int:
    """Batches in one pass of make_dataset (without drop_remainder), shuffled or not."""
    return -(-read_manifest(shard_dir).n_source_samples // batch_size)

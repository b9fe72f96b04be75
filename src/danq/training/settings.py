"""What shapes the trained weights, and the devices that train them.

The settings are logged as MLflow params and fingerprinted: a checkpoint or a finished run is
reused only when its fingerprint matches the current one, and otherwise the difference is
named key by key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from danq import tracking
from danq.config import Params, Variant
from danq.data.shards import Manifest


def training_settings(
    params: Params, variant: Variant, train: Manifest, valid: Manifest
) -> dict[str, Any]:
    """Everything that shapes the trained weights, flat with dotted keys: logged as MLflow
    params and compared with a checkpoint's before it is resumed."""
    return tracking.flatten(
        {
            "variant": variant,
            "model": params.model.model_dump(),
            "train": params.train.model_dump(),
            "dropout": getattr(params.dropout, variant).model_dump(),
            # Validation runs in inference-sized batches: it decides the best epoch.
            "evaluate": {"batch_size": params.evaluate.batch_size},
            "data": {
                "n_train": train.n_source_samples,
                "n_valid": valid.n_source_samples,
                "seq_len": train.seq_len,
                "n_targets": train.n_targets,
            },
        }
    )


def settings_hash(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def settings_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    changed = [
        f"{key}: {saved.get(key)!r} there, {current.get(key)!r} now"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    return "; ".join(changed)


def configure_devices() -> tf.distribute.Strategy:
    """Mixed precision on GPU and data parallelism over several GPUs; CPU runs stay float32."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def prepare_devices() -> tuple[tf.distribute.Strategy, str]:
    """configure_devices, with deterministic ops on CPU; returns the strategy and a
    description of the devices and precision for the MLflow tag and the log."""
    gpus = tf.config.list_physical_devices("GPU")
    strategy = configure_devices()
    devices = f"{len(gpus)} GPU" if gpus else "CPU"
    devices += f", {keras.mixed_precision.global_policy().name}"
    if not gpus:
        # Same seed, same per-epoch losses; on GPU the deterministic kernels cost too much speed.
        tf.config.experimental.enable_op_determinism()
    return strategy, devices

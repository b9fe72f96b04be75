"""The batches an epoch trains and validates on, such that a resumed run sees exactly the
batches of an uninterrupted one."""

from __future__ import annotations

import tensorflow as tf

from danq.config import TrainConfig
from danq.data.dataset import make_dataset, steps_per_epoch


def training_batches(
    train_dir: str, cfg: TrainConfig, first_epoch: int, max_epochs: int
) -> tuple[tf.data.Dataset, int]:
    """Batches for epochs first_epoch..max_epochs-1, and the steps per epoch.

    An epoch is one pass over the shards unless train.steps_per_epoch sets its length; epoch e
    then starts at step e * steps_per_epoch of the chained seeded passes, inside a
    pass if need be, so a resumed run still sees exactly the batches of an uninterrupted one.
    """
    pass_steps = steps_per_epoch(train_dir, cfg.batch_size)
    steps = cfg.steps_per_epoch or pass_steps
    first_pass, offset = divmod(first_epoch * steps, pass_steps)
    stop_pass = -(-max_epochs * steps // pass_steps)
    batches = make_dataset(
        train_dir,
        cfg.batch_size,
        shuffle=True,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed,
        rc_augment=cfg.rc_augment,
        epochs=(first_pass, stop_pass),
    )
    return (batches.skip(offset) if offset else batches), steps


def validation_batches(valid_dir: str, batch_size: int) -> tf.data.Dataset:
    # A known length spares Keras a probe for the end of the data on every evaluation.
    return make_dataset(valid_dir, batch_size).apply(
        tf.data.experimental.assert_cardinality(steps_per_epoch(valid_dir, batch_size))
    )

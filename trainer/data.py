"""The input pipeline: uint8 digits -> shuffled, repeated batches in [-1, 1] via tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dcgan_export.contract import to_images


def make_dataset(images: np.ndarray, batch_size: int, d_steps: int, seed: int,
                 start_iteration: int = 0) -> tf.data.Dataset:
    """Each element feeds one iteration: ``d_steps * batch_size`` images, one batch per D update.

    The order depends only on ``seed``, so skipping the images of ``start_iteration``
    iterations puts a resumed run on exactly the batches an uninterrupted run would see.
    """
    per_iteration = batch_size * d_steps
    return (
        tf.data.Dataset.from_tensor_slices(to_images(images))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .skip(start_iteration * per_iteration)
        .batch(per_iteration, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )

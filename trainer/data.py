"""The input pipeline: uint8 images -> each iteration's real batch in [-1, 1], in numpy.

numpy, not tf.data, so that every backend trains on the same batches in the same order (a run
can resume on another backend) and a JAX machine needs no TensorFlow. A ``keras.utils.PyDataset``
with random access: iteration t's images are positions [t * per, (t + 1) * per) of a stream that
visits the data in a fresh seeded permutation per epoch, so a resumed run starts exactly where
an uninterrupted one would be, without replaying anything.
"""

from __future__ import annotations

import keras
import numpy as np

from dcgan_export.contract import to_images


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class IterationBatches(keras.utils.PyDataset):
    """Element i feeds iteration ``start + i + 1``: ``d_steps * batch_size`` images, one batch per
    D update. With ``shard=(k, count)`` it is the k-th of ``count`` equal, contiguous slices of
    them: the part one process of a multi-process run feeds (their concatenation, in process
    order, is the whole). With ``labels`` (a conditional run), elements are (images, labels int32)."""

    def __init__(self, images: np.ndarray, batch_size: int, d_steps: int, seed: int, start: int, steps: int,
                 shard: tuple[int, int] = (0, 1), labels: np.ndarray | None = None):
        super().__init__()
        per_iteration = batch_size * d_steps
        index, count = shard
        if per_iteration % count:
            raise ValueError(f"{per_iteration} images per iteration do not split into {count} equal shards")
        self.images, self.seed, self.start, self.steps = images, seed, start, steps
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        self.per_iteration = per_iteration
        self.width = per_iteration // count
        self.offset = index * self.width
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int):
        first = (self.start + i) * self.per_iteration + self.offset
        chosen = self.indices(first, self.width)
        if self.labels is None:
            return to_images(self.images[chosen])
        return to_images(self.images[chosen]), self.labels[chosen]

    def indices(self, first: int, count: int) -> np.ndarray:
        """Data indices of stream positions [first, first + count)."""
        n = len(self.images)
        positions = np.arange(first, first + count)
        epochs = positions // n
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            out[chosen] = self._order(int(epoch))[positions[chosen] % n]
        return out

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 2:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = epoch_order(self.seed, epoch, len(self.images))
        return self._orders[epoch]

"""The learning-rate schedule of ``dcgan train --lr-decay-start``."""

from __future__ import annotations

import keras
from keras import ops


class HoldThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` for the first ``start`` iterations, then falling linearly to 0 at iteration ``end``.

    A constant rate keeps a GAN's iterates circling the equilibrium at a radius set by the step
    size; shrinking it for the last stretch lets them settle (the reason for pix2pix's and
    CycleGAN's linear decay). The step Keras passes is the optimizer's count of updates already
    applied (checkpointed, so a resumed run follows the same curve); it is turned into completed
    iterations t, so every update of one iteration (D makes ``d_steps``) runs at the same rate:
    ``rate * min(1, (end - t) / (end - start))``. The last iteration (t = end - 1) runs at
    ``rate / (end - start)``. Under loss scaling a skipped (overflowed) update does not count."""

    def __init__(self, rate: float, start: int, end: int, updates_per_iteration: int = 1):
        if not 0 <= start < end or updates_per_iteration < 1:
            raise ValueError(f"need 0 <= start < end and updates_per_iteration >= 1, got {start}, {end}, "
                             f"{updates_per_iteration}")
        self.rate, self.start, self.end = float(rate), int(start), int(end)
        self.updates_per_iteration = int(updates_per_iteration)

    def __call__(self, step):
        t = ops.cast(ops.floor_divide(step, self.updates_per_iteration), "float32")
        return self.rate * ops.clip((self.end - t) / (self.end - self.start), 0.0, 1.0)

    def get_config(self) -> dict:
        return {"rate": self.rate, "start": self.start, "end": self.end,
                "updates_per_iteration": self.updates_per_iteration}

"""The learning-rate schedule of ``dcgan train --lr-decay-start``."""

from __future__ import annotations

import keras
from keras import ops


class HoldThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` for the first ``start`` updates, then linearly down to 0 at update ``end``.

    A constant rate keeps a GAN's iterates circling the equilibrium at a radius set by the step
    size; shrinking it for the last stretch lets them settle (the reason for pix2pix's and
    CycleGAN's linear decay). The step is the optimizer's update count, which is checkpointed,
    so a resumed run follows the same curve."""

    def __init__(self, rate: float, start: int, end: int):
        if not 0 <= start < end:
            raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
        self.rate, self.start, self.end = float(rate), int(start), int(end)

    def __call__(self, step):
        done = ops.clip((ops.cast(step, "float32") - self.start) / (self.end - self.start), 0.0, 1.0)
        return self.rate * (1.0 - done)

    def get_config(self) -> dict:
        return {"rate": self.rate, "start": self.start, "end": self.end}

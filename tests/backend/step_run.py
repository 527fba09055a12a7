"""A few DCGAN iterations through fit() on whichever backend $KERAS_BACKEND names, with everything
that would differ between backends pinned: initial weights from numpy, noise and augmentation
offsets from a fixed table (each backend's random generator is its own), every seed state set
alike (Dropout's masks are the same bits on both: trainer/dropout.py). Writes the logged losses
and every variable after training, for tests/test_backends.py to compare.

    KERAS_BACKEND=jax python tests/backend/step_run.py OUT.npz CASE
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from keras import ops

from dcgan_export import datasets
from trainer.data import IterationBatches
from trainer.gan import DCGAN
from trainer.models import build_discriminator, build_generator
from trainer.schedule import HoldThenLinearDecay

ITERATIONS = 4
BATCH = 8
CASES = {
    "plain": {},
    "every_option": {"d_steps": 2, "label_smoothing": 0.1, "r1": 1.0, "ema": 0.9, "augment": ("translation", "cutout"),
                     "class_guidance": 0.5, "lr_decay_start": 1},
    "mixed_precision": {"mixed_precision": True, "r1": 1.0},
}


class TableRandomDCGAN(DCGAN):
    """Draws noise and integers from fixed tables, walked by a counter that is part of its state."""

    TABLE = 1 << 16

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rng = np.random.default_rng(123)
        self.normals = rng.standard_normal(self.TABLE).astype(np.float32)
        self.uniforms = rng.uniform(0, 1, self.TABLE).astype(np.float32)
        self.counter = keras.Variable(0, dtype="int32", trainable=False, name="table_counter")

    def _take(self, table, size):
        start = self.counter.value % (self.TABLE - size)
        self.counter.assign(start + size)
        return ops.slice(ops.convert_to_tensor(table), [start], [size])

    def normal(self, n):
        return ops.reshape(self._take(self.normals, n * self.latent_dim), (n, self.latent_dim))

    def randint(self, shape, low, high):
        size = 1
        for side in shape:  # the batch may be a tensor on TensorFlow
            size = size * side
        u = ops.reshape(self._take(self.uniforms, size), shape)
        return ops.cast(ops.floor(u * (high - low)), "int32") + low


def pin_weights(model, rng):
    for v in model.trainable_variables:
        value = rng.normal(0, 0.05, v.shape) + (1.0 if "gamma" in v.path else 0.0)
        v.assign(value.astype(v.dtype))


def main(out: str, case: str) -> None:
    options = CASES[case]
    if options.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    rng = np.random.default_rng(0)
    g, d = build_generator(), build_discriminator()
    pin_weights(g, rng)
    pin_weights(d, rng)
    guide = None
    if options.get("class_guidance"):
        guide = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, dtype="float32")])
        pin_weights(guide, rng)
        guide.trainable = False
    d_steps = options.get("d_steps", 1)
    gan = TableRandomDCGAN(g, d, 100, d_steps, seed=0, ema_decay=options.get("ema", 0.0),
                           augment=options.get("augment", ()))

    def adam(updates_per_iteration):
        rate = 2e-4
        if "lr_decay_start" in options:
            rate = HoldThenLinearDecay(rate, options["lr_decay_start"], ITERATIONS, updates_per_iteration)
        opt = keras.optimizers.Adam(rate, beta_1=0.5)
        return keras.optimizers.LossScaleOptimizer(opt) if options.get("mixed_precision") else opt

    gan.compile(adam(d_steps), adam(1), label_smoothing=options.get("label_smoothing", 0.0),
                r1_gamma=options.get("r1", 0.0), guide=guide, class_guidance=options.get("class_guidance", 0.0))
    keras.mixed_precision.set_global_policy("float32")
    images = datasets.load("mnist-8k").images[:512]
    kept = gan.state_variables()
    seeds = [v for v in kept if "seed_generator" in v.path]
    assert len(seeds) >= 2  # D's two Dropout layers' (and the unused noise seed)
    for i, v in enumerate(seeds):
        v.assign(np.array([i + 1, 0]).astype(v.dtype))
    before = [np.asarray(ops.convert_to_numpy(v.value)).astype(np.float64) for v in kept]
    losses = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append([float(logs[k]) for k in ("d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake")])

    gan.fit(IterationBatches(images, BATCH, d_steps, 0, 0, ITERATIONS), epochs=1, verbose=0, shuffle=False,
            callbacks=[Record()])
    after = [np.asarray(ops.convert_to_numpy(v.value)).astype(np.float64) for v in kept]
    np.savez(out, losses=np.array(losses), paths=np.array([v.path for v in kept]),
             **{f"before{i:04d}": x for i, x in enumerate(before)}, **{f"after{i:04d}": x for i, x in enumerate(after)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

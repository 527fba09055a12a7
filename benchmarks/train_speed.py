"""Iterations/s of dcgan's fused train_step against the classic recipe's loop, in one process.

The recipe's iteration: discriminator.train_on_batch on real images, generator.predict,
discriminator.train_on_batch on the fakes, then gan.train_on_batch on noise (D frozen inside
the combined model). Ours: one ``DCGAN.train_step`` per iteration, driven by ``fit()``.
Both use the same networks, Adam(2e-4, 0.5) and the embedded data.

    python benchmarks/train_speed.py [--iterations 150] [--batch-sizes 32,128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dcgan_export import datasets  # noqa: E402
from machine import cpu_description  # noqa: E402
from dcgan_export.contract import to_images  # noqa: E402
from trainer.data import make_dataset  # noqa: E402
from trainer.gan import DCGAN  # noqa: E402
from trainer.models import build_discriminator, build_generator  # noqa: E402


def ours(images, batch, iterations):
    gan = DCGAN(build_generator(), build_discriminator(), seed=0)
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    ds = make_dataset(images, batch, 1, seed=0)
    gan.fit(ds, epochs=1, steps_per_epoch=10, verbose=0)  # trace and warm up

    def run():
        t = time.perf_counter()
        gan.fit(ds, epochs=1, steps_per_epoch=iterations, verbose=0)
        return iterations / (time.perf_counter() - t)

    return run


def recipe(images, batch, iterations):
    x = to_images(images)
    rng = np.random.default_rng(0)
    g, d = build_generator(), build_discriminator()
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    d.compile(loss=loss, optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    # Keras 2 fixed D's trainable variables at compile(); Keras 3 reads the flag when the train
    # function is first traced. Trace it before freezing D for the combined model, or the
    # recipe's D updates silently train nothing (and this benchmark would flatter the recipe).
    d.train_on_batch(x[:batch], np.ones((batch, 1), np.float32))
    d.trainable = False
    gan = keras.Sequential([g, d])
    gan.compile(loss=loss, optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    ones, zeros = np.ones((batch, 1), np.float32), np.zeros((batch, 1), np.float32)

    def step():
        real = x[rng.integers(0, len(x), batch)]
        noise = rng.standard_normal((batch, 100)).astype(np.float32)
        fake = g.predict(noise, verbose=0)
        d.train_on_batch(real, ones)
        d.train_on_batch(fake, zeros)
        gan.train_on_batch(rng.standard_normal((batch, 100)).astype(np.float32), ones)

    before = [w.copy() for w in d.get_weights()]
    for _ in range(5):
        step()
    if all(np.array_equal(a, b) for a, b in zip(before, d.get_weights())):
        raise SystemExit("the recipe's discriminator did not train; the comparison would be void")

    def run():
        t = time.perf_counter()
        for _ in range(iterations):
            step()
        return iterations / (time.perf_counter() - t)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    images = datasets.load("mnist-8k").images
    print(f"CPU: {cpu_description()}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{args.iterations} iterations per measurement, best of {args.rounds} alternating rounds")
    print(f"{'batch':>6} {'recipe it/s':>12} {'dcgan it/s':>11} {'speed-up':>9}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        runners = {"recipe": recipe(images, batch, args.iterations), "ours": ours(images, batch, args.iterations)}
        best = {name: 0.0 for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                best[name] = max(best[name], run())
        print(f"{batch:>6} {best['recipe']:>12.1f} {best['ours']:>11.1f} {best['ours'] / best['recipe']:>8.2f}x")


if __name__ == "__main__":
    main()

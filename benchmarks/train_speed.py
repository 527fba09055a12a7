"""Training speed on this CPU: dcgan's step on TensorFlow and on JAX, against the classic recipe's
loop on each, as iterations/s and as a fraction of the CPU's fp32 matrix-multiply rate.

Keras picks its backend once per process, so each measurement round starts one child process
per backend, alternating (tensorflow, jax, tensorflow, jax, ...); the best of the rounds is kept.
In a child, each measurement trains for ``--seconds`` after a warm-up (compiling the step is not
timed). The peak is numpy's float32 matrix product (a 2048x2048 sgemm), measured in this run
between the rounds: what this CPU's vector units deliver on the densest work there is.

FLOPs per iteration are counted from the networks as trained (``step_flops``): the generator's
upsample + conv pairs at their sub-pixel cost, as ``trainer/subpixel_forward.py`` computes them;
2 FLOPs per multiply-add; a backward pass twice its forward. One iteration (d_steps 1) is G forward
on B noise vectors, D forward and backward on 2B images (the D update), then D forward and
input-backward on the same B fakes and G's backward (the G update): B x (3 G + 8 D). The recipe's
iteration does B x (4 G + 8 D) with the plain generator; only ours is counted here.

The recipe's iteration: discriminator.train_on_batch on real images, generator.predict,
discriminator.train_on_batch on the fakes, then gan.train_on_batch on noise (D frozen inside
the combined model). Same networks, Adam(2e-4, 0.5), the embedded data.

    python benchmarks/train_speed.py [--batch-sizes 32,64,256] [--rounds 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from machine import cpu_description  # noqa: E402

BACKENDS = ("tensorflow", "jax")


def sgemm_gflops(size: int = 2048, repeats: int = 10) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def step_flops(generator, discriminator, batch: int) -> float:
    """FLOPs of one training iteration at ``batch`` (see the module docstring)."""
    return batch * (3 * forward_flops(generator) + 8 * forward_flops(discriminator))


def forward_flops(model) -> float:
    import keras

    from trainer.subpixel_forward import _phase_map, fusable

    flops, layers = 0.0, model.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            if i > 0 and fusable(layers[i - 1], layer):  # phase kernels on the coarse grid, 4x the outputs
                size = _phase_map(kh).shape[0]
                flops += 2 * (h // 2) * (w // 2) * size * size * cin * 4 * cout
            else:
                flops += 2 * h * w * kh * kw * cin * cout
    return flops


# -- in a child process, on one backend ------------------------------------------------------------


class StopAfter:
    """A callback that ends fit() ``seconds`` after its first iteration, counting iterations."""

    def __new__(cls, seconds: float):
        import keras

        class _Stop(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.count, self.t0 = 0, None

            def on_train_batch_end(self, batch, logs=None):
                float(logs["g_loss"])  # wait for the step to finish (dispatch may be asynchronous)
                if self.t0 is None:
                    self.t0 = time.perf_counter()
                    return
                self.count += 1
                if time.perf_counter() - self.t0 >= seconds:
                    self.model.stop_training = True

            def rate(self):
                return self.count / (time.perf_counter() - self.t0)

        return _Stop()


def ours(images, batch: int, seconds: float) -> tuple[float, float]:
    import keras

    from trainer.data import IterationBatches
    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    g, d = build_generator(), build_discriminator()
    gan = DCGAN(g, d, seed=0)
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    gan.fit(IterationBatches(images, batch, 1, 0, 0, 5), epochs=1, verbose=0, shuffle=False)  # compile, warm up
    stop = StopAfter(seconds)
    gan.fit(IterationBatches(images, batch, 1, 0, 5, 10**6), epochs=1, verbose=0, shuffle=False, callbacks=[stop])
    return stop.rate(), step_flops(g, d, batch)


def recipe(images, batch: int, seconds: float) -> float:
    import keras

    from dcgan_export.contract import to_images
    from trainer.models import build_discriminator, build_generator

    x = to_images(images)
    rng = np.random.default_rng(0)
    g, d = build_generator(), build_discriminator()
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    d.compile(loss=loss, optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    # Keras 2 fixed D's trainable variables at compile(); Keras 3 reads the flag when the train
    # function is first traced. Trace it before freezing D for the combined model, or the
    # recipe's D updates silently train nothing (and this benchmark would flatter the recipe).
    # On JAX the step is stateless and takes the trainable list at every call, so the flag is set
    # for each update instead: on for D's, off for the combined model's.
    d.train_on_batch(x[:batch], np.ones((batch, 1), np.float32))
    d.trainable = False
    gan = keras.Sequential([g, d])
    gan.compile(loss=loss, optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    ones, zeros = np.ones((batch, 1), np.float32), np.zeros((batch, 1), np.float32)
    toggle = keras.backend.backend() == "jax"

    def step():
        real = x[rng.integers(0, len(x), batch)]
        fake = g.predict(rng.standard_normal((batch, 100)).astype(np.float32), verbose=0)
        d.trainable = d.trainable or toggle
        d.train_on_batch(real, ones)
        d.train_on_batch(fake, zeros)
        d.trainable = d.trainable and not toggle
        gan.train_on_batch(rng.standard_normal((batch, 100)).astype(np.float32), ones)

    before = [w.copy() for w in d.get_weights()]
    for _ in range(3):
        step()
    if all(np.array_equal(a, b) for a, b in zip(before, d.get_weights())):
        raise SystemExit("the recipe's discriminator did not train; the comparison would be void")
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - t0)


def child(batch_sizes: list[int], recipe_batches: list[int], seconds: float) -> None:
    import keras

    from dcgan_export import datasets

    images = datasets.load("mnist-8k").images
    result = {"keras": keras.__version__, "ours": {}, "recipe": {}}
    for batch in batch_sizes:
        result["ours"][batch] = ours(images, batch, seconds)
    for batch in recipe_batches:
        result["recipe"][batch] = recipe(images, batch, seconds)
    print("RESULT " + json.dumps(result))


# -- the parent: alternate the backends, measure the peak, print the table ------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32,64,256")
    parser.add_argument("--recipe-batch-sizes", default="32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed training per measurement")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    recipe_batches = [int(b) for b in args.recipe_batch_sizes.split(",") if b]
    if args.child:
        child(batches, recipe_batches, args.seconds)
        return
    print(f"CPU: {cpu_description()}")
    best: dict = {}
    peaks = []
    for round_ in range(args.rounds):
        for backend in args.backends.split(","):
            peaks.append(sgemm_gflops())
            command = [sys.executable, __file__, "--child", backend, "--batch-sizes", args.batch_sizes,
                       "--recipe-batch-sizes", args.recipe_batch_sizes, "--seconds", str(args.seconds)]
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if done.returncode or line is None:
                raise SystemExit(f"{backend} child failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[len("RESULT "):])
            slot = best.setdefault(backend, {"ours": {}, "recipe": {}})
            for batch, (rate, flops) in result["ours"].items():
                slot["ours"][int(batch)] = (max(rate, slot["ours"].get(int(batch), (0, 0))[0]), flops)
            for batch, rate in result["recipe"].items():
                slot["recipe"][int(batch)] = max(rate, slot["recipe"].get(int(batch), 0))
            print(f"round {round_ + 1}, {backend}: done", flush=True)
    peak = max(peaks)
    print(f"fp32 peak (numpy sgemm 2048, best of the run): {peak:.0f} GFLOP/s; best of {args.rounds} "
          f"alternating rounds, {args.seconds:.0f} s of training per measurement")
    print(f"{'backend':<11} {'batch':>6} {'it/s':>8} {'GFLOP/it':>9} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'recipe it/s':>12} {'speed-up':>9}")
    for backend, slot in best.items():
        for batch, (rate, flops) in sorted(slot["ours"].items()):
            recipe_rate = slot["recipe"].get(batch)
            extra = f"{recipe_rate:>12.2f} {rate / recipe_rate:>8.2f}x" if recipe_rate else f"{'':>12} {'':>9}"
            print(f"{backend:<11} {batch:>6} {rate:>8.2f} {flops / 1e9:>9.2f} {rate * flops / 1e9:>8.1f} "
                  f"{rate * flops / 1e9 / peak:>7.0%} {extra}")


if __name__ == "__main__":
    main()

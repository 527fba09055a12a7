"""What a training run records while ``fit()`` runs: losses, fixed-noise grids, checkpoints,
TensorBoard, a progress bar. The iteration number is ``start + batch + 1`` (fit counts from 0
in every call, a resumed run does not)."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from dcgan_export.atomic import atomic_open
from dcgan_export.contract import to_pixels
from dcgan_export.images import make_grid, write_gif, write_png
from dcgan_export.run_dir import RunDir, trim_log

from . import checkpoint
from .hardware import host_value

LOSS_COLUMNS = ["iteration", "d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake", "elapsed_s"]
LOG_KEYS = LOSS_COLUMNS[1:6]


class _IterationCallback(keras.callbacks.Callback):
    def __init__(self, start: int):
        super().__init__()
        self.start = start

    def on_train_batch_end(self, batch, logs=None):
        logs = {k: float(host_value(v)) for k, v in (logs or {}).items()}
        self.on_iteration_end(self.start + batch + 1, logs)

    def on_iteration_end(self, iteration: int, logs: dict) -> None:
        raise NotImplementedError


class LossLog(_IterationCallback):
    """Appends one row per iteration to losses.csv and flushes it, so it can be watched live.
    Rows past the last checkpoint are dropped on resume (``trim_losses``)."""

    def __init__(self, path: Path, start: int, elapsed_before: float):
        super().__init__(start)
        self.path = path
        self.elapsed_before = elapsed_before
        self.last: dict = {}

    def on_train_begin(self, logs=None):
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(LOSS_COLUMNS)
        self._t0 = time.perf_counter()

    def on_iteration_end(self, iteration, logs):
        self.last = logs
        elapsed = self.elapsed_before + time.perf_counter() - self._t0
        self._writer.writerow([iteration, *(f"{logs[k]:.6f}" for k in LOG_KEYS), f"{elapsed:.3f}"])
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


def trim_losses(path: Path, last_iteration: int) -> float:
    """Keep the rows up to ``last_iteration``; return the elapsed seconds at the last of them."""
    elapsed = [float(row[-1]) for row in trim_log(path, LOSS_COLUMNS, last_iteration)]
    finite = [seconds for seconds in elapsed if math.isfinite(seconds)]
    return finite[-1] if finite else 0.0


def read_losses(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in LOSS_COLUMNS}


class SampleGrids(_IterationCallback):
    """A 5x5 grid from the same fixed noise every ``every`` iterations: samples/iter_NNNNNN.png,
    optionally mirrored to TensorBoard; progress.gif is made from them at the end."""

    def __init__(self, run: RunDir, fixed_noise: np.ndarray, every: int, start: int, tb_writer=None):
        super().__init__(start)
        run.samples.mkdir(exist_ok=True)
        self.run = run
        self.fixed_noise = fixed_noise
        self.every = every
        self.tb_writer = tb_writer

    def on_iteration_end(self, iteration, logs):
        if iteration % self.every == 0:
            self.write(iteration)

    def write(self, iteration: int) -> None:
        grid = make_grid(to_pixels(generate(self.model, self.fixed_noise)), nrow=5)
        write_png(self.run.sample_grid(iteration), grid)
        if self.tb_writer is not None:
            self.tb_writer.image("samples", grid, iteration)

    def on_train_end(self, logs=None):
        write_progress_gif(self.run)


def generate(model, noise: np.ndarray) -> np.ndarray:
    """The images the run's sampling generator makes of ``noise``, as float32 numpy (image i of a
    conditional model as class i mod K, so a grid shows every class). In a multi-process run its
    weights span every process's devices, and a computation on them would wait for the others:
    process 0 computes from its own copy of the values instead."""
    generator = model.sampling_generator
    if model.num_classes:
        noise = [noise, np.arange(len(noise), dtype=np.int32) % model.num_classes]
    if getattr(generator.weights[0].value, "is_fully_addressable", True):
        return np.asarray(generator(noise, training=False), dtype=np.float32)

    def values(variables):
        return [host_value(v.value) for v in variables]

    images, _ = generator.stateless_call(values(generator.trainable_variables),
                                         values(generator.non_trainable_variables), noise, training=False)
    return host_value(images).astype(np.float32)


def write_progress_gif(run: RunDir) -> None:
    from PIL import Image

    frames = [np.asarray(Image.open(p)) for p in run.sample_grids()]
    if frames:
        write_gif(run.file(RunDir.PROGRESS_GIF), frames)


class Checkpoints(_IterationCallback):
    """Saves the whole run state every ``every`` iterations and at the end. Must run after
    LossLog in the callback list, so losses.csv always reaches the checkpoint's iteration."""

    def __init__(self, run: RunDir, every: int, start: int):
        super().__init__(start)
        self.run = run
        self.every = every
        self.iteration = self.saved = start

    def on_iteration_end(self, iteration, logs):
        self.iteration = iteration
        if iteration % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.saved != self.iteration:  # not twice: checkpoint.prev.npz stays one step behind
            self._save()

    def _save(self):
        checkpoint.save(self.run, self.model.state_variables(), self.iteration)
        self.saved = self.iteration


class TensorBoardScalars(_IterationCallback):
    def __init__(self, writer, start: int):
        super().__init__(start)
        self.writer = writer

    def on_iteration_end(self, iteration, logs):
        for key in LOG_KEYS:
            self.writer.scalar(key, logs[key], iteration)


class TensorBoardWriter:
    """A thin wrapper over tf.summary so callbacks can share one event file."""

    def __init__(self, logdir: Path):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))

    def scalar(self, name: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.scalar(name, value, step=step)

    def image(self, name: str, grid: np.ndarray, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.image(name, grid[None, :, :, None], step=step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class ProgressBar(_IterationCallback):
    """Iteration, it/s, ETA and the latest losses, to stderr.

    On a terminal one line is redrawn in place. Anywhere else (a log file, CI) carriage returns
    would pile up into one enormous line, so a full line is written at every tenth of the run."""

    def __init__(self, start: int, total: int, stream=None, min_interval: float = 0.1):
        super().__init__(start)
        self.total = total
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty())

    def on_train_begin(self, logs=None):
        self._t0 = self._last = time.perf_counter()
        self._tenth = self._tenth_of(self.start)

    def _tenth_of(self, iteration: int) -> int:
        return 10 * iteration // self.total

    def on_iteration_end(self, iteration, logs):
        now = time.perf_counter()
        final = iteration == self.total
        if self.interactive:
            if now - self._last < self.min_interval and not final:
                return
        else:
            tenth = self._tenth_of(iteration)
            if tenth == self._tenth and not final:
                return
            self._tenth = tenth
        self._last = now
        done = iteration - self.start
        rate = done / max(now - self._t0, 1e-9)
        eta = (self.total - iteration) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * iteration / self.total)
        bar = "#" * filled + "-" * (width - filled)
        line = (f"[{bar}] {iteration}/{self.total} {rate:.1f} it/s ETA {_duration(eta)} "
                f"d_real {logs['d_loss_real']:.3f} d_fake {logs['d_loss_fake']:.3f} g {logs['g_loss']:.3f}")
        self.stream.write(f"\r{line}   " if self.interactive else line + "\n")
        self.stream.flush()

    def on_train_end(self, logs=None):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """losses.png: the loss curves and mean D outputs against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_losses(csv_path)
    if len(data["iteration"]) == 0:
        return
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for key in ("d_loss_real", "d_loss_fake", "g_loss"):
        ax1.plot(data["iteration"], data[key], label=key, linewidth=0.8)
    ax1.set_ylabel("loss")
    ax1.legend()
    for key, label in (("d_real", "mean D(x)"), ("d_fake", "mean D(G(z))")):
        ax2.plot(data["iteration"], data[key], label=label, linewidth=0.8)
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("D output")
    ax2.legend()
    fig.tight_layout()
    with atomic_open(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)

"""``dcgan train``: validate everything cheaply, then build, restore and ``fit()``.

All checks that can fail on user input (options, data, the run directory) run before
TensorFlow is imported, so a mistake costs a fraction of a second and touches nothing on disk.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_export import datasets
from dcgan_export.atomic import atomic_path, atomic_write_text
from dcgan_export.errors import DcganError

from . import augment, checkpoint, guidance

CONFIG = "config.json"
LOSSES = "losses.csv"
# What --force clears from an existing run directory; nothing else in it is touched.
RUN_ARTIFACTS = (CONFIG, checkpoint.STATE, checkpoint.CHECKPOINT, LOSSES, "losses.png", "progress.gif",
                 "generator.keras", "discriminator.keras", "eval.csv", "samples", "tb", guidance.GUIDE)


@dataclasses.dataclass
class TrainConfig:
    out: str | None = None
    data: str = "mnist-8k"
    iterations: int = 5000
    batch_size: int = 64
    lr: float = 2e-4
    d_lr: float | None = None  # None: the same as lr
    beta1: float = 0.5
    d_steps: int = 1
    label_smoothing: float = 0.0
    r1: float = 0.0
    lr_decay_start: int | None = None  # None: constant learning rates
    augment: str = "none"
    ema: float = 0.0
    class_guidance: float = 0.0
    latent_dim: int = 100
    seed: int = 0
    sample_every: int = 200
    checkpoint_every: int = 500
    eval_every: int = 0
    eval_samples: int = 2000
    tensorboard: bool = False
    mixed_precision: bool = False
    strategy: str = "default"
    quiet: bool = False

    def validate(self) -> None:
        positive = ("iterations", "batch_size", "d_steps", "latent_dim", "sample_every", "checkpoint_every",
                    "eval_samples")
        for name in positive:
            if getattr(self, name) <= 0:
                raise DcganError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for flag, rate in (("--lr", self.lr), ("--d-lr", self.d_lr)):
            if rate is not None and not 0 < rate < math.inf:
                raise DcganError(f"{flag} must be a finite number > 0, got {rate}")
        if not 0 <= self.beta1 < 1:
            raise DcganError(f"--beta1 must be in [0, 1), got {self.beta1}")
        if not 0 <= self.ema < 1:
            raise DcganError(f"--ema must be in [0, 1), got {self.ema}")
        if not 0 <= self.label_smoothing < 1:
            raise DcganError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        for flag, weight in (("--r1", self.r1), ("--class-guidance", self.class_guidance)):
            if not 0 <= weight < math.inf:
                raise DcganError(f"{flag} must be a finite number >= 0, got {weight}")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start < self.iterations:
            raise DcganError(f"--lr-decay-start must be in [0, --iterations), got {self.lr_decay_start} "
                             f"with --iterations {self.iterations}")
        try:
            augment.parse_policy(self.augment)
        except ValueError as exc:
            raise DcganError(f"--augment: {exc}") from None
        if self.eval_every < 0:
            raise DcganError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.seed < 0:
            raise DcganError(f"--seed must be >= 0, got {self.seed}")
        if self.strategy not in ("default", "mirrored"):
            raise DcganError(f"--strategy must be default or mirrored, got {self.strategy!r}")


def prepare(config: TrainConfig, resume: str | None = None, force: bool = False,
            overrides: dict | None = None) -> tuple[TrainConfig, Path, datasets.Dataset, int]:
    """Everything that can fail on bad input, without TensorFlow.

    Returns the effective config, the run directory (created, config.json written), the data
    and the iteration to start from.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise DcganError(f"cannot resume {run_dir}: no such directory")
        start = checkpoint.saved_iteration(run_dir)
        config, record = _load_config(run_dir)
        _check_decay(run_dir, config, start, overrides or {})
        started_ema = config.ema
        changed = {k: [getattr(config, k), v] for k, v in (overrides or {}).items()
                   if k not in _REPORTING and getattr(config, k) != v}
        history = _resume_history(record) + ([{"iteration": start, "changed": changed}] if changed else [])
        for key, value in (overrides or {}).items():
            setattr(config, key, value)
        config.out = str(run_dir)
    else:
        start, history = 0, []
    config.validate()
    if resume is not None:
        _check_ema(started_ema, config.ema)
    data = datasets.load(config.data)
    if config.class_guidance:
        guidance.check_labels(data.labels, len(data), data.name)
    if config.eval_every and not data.name.startswith("mnist"):
        raise DcganError("--eval-every scores samples with a digit classifier: it is for --data mnist-8k "
                         f"or mnist, not {config.data!r}")
    per_iteration = config.batch_size * config.d_steps
    if per_iteration > len(data):
        raise DcganError(f"--batch-size {config.batch_size} x --d-steps {config.d_steps} = {per_iteration} "
                         f"is larger than the data set ({len(data)} images)")
    if resume is not None:
        if start >= config.iterations:
            raise DcganError(f"{run_dir} is already at iteration {start}; pass --iterations N with N > {start}")
        recorded = record.get("data", {}).get("sha256")
        if recorded and recorded != data.sha256:
            raise DcganError(f"cannot resume {run_dir}: data set {config.data!r} changed since the run started")
    else:
        run_dir = Path(config.out or time.strftime("runs/%Y%m%d-%H%M%S"))
        config.out = str(run_dir)
        _claim_run_dir(run_dir, force)
    _write_config(run_dir, config, data, history)
    return config, run_dir, data, start


def _check_decay(run_dir: Path, config: TrainConfig, start: int, overrides: dict) -> None:
    """A run whose checkpoint trained only at the full rates may set or move its decay, as long
    as it starts at or after the checkpoint: it continues exactly as a run started with those
    flags would have gone. Once it is decaying, its rates reach 0 at its --iterations: moving the
    start or that target would bend the curve it is part-way down (a longer one would jump back up)."""
    decay_start = overrides.get("lr_decay_start", config.lr_decay_start)
    if config.lr_decay_start is not None and start > config.lr_decay_start:
        if decay_start != config.lr_decay_start:
            raise DcganError(f"{run_dir} has been decaying its learning rates since iteration {config.lr_decay_start}; "
                             "it cannot be resumed with a different --lr-decay-start")
        if overrides.get("iterations", config.iterations) != config.iterations:
            raise DcganError(f"{run_dir} decays its learning rates to 0 at iteration {config.iterations} "
                             f"(--lr-decay-start {config.lr_decay_start}); it cannot be resumed with a "
                             f"different --iterations")
    elif decay_start is not None and decay_start < start:
        raise DcganError(f"--lr-decay-start {decay_start} is before {run_dir}'s checkpoint (iteration {start}), "
                         f"which trained at the full rates; pass --lr-decay-start {start} or later")


# Options that change only what a run reports, never what it trains: config.json's history skips them.
_REPORTING = {"quiet", "tensorboard", "eval_every", "eval_samples"}


def _check_ema(started: float, ema: float) -> None:
    """A resumed run may change its averaging decay: the average carries on from the checkpoint's
    with the new one, and training itself (which never reads the average) is unchanged. Switching
    the average on or off would add or drop state the checkpoint holds or lacks."""
    if (ema > 0) != (started > 0):
        raise DcganError(f"--ema cannot be switched {'on' if ema > 0 else 'off'} on resume: the run was "
                         f"started with --ema {started}; pass another decay > 0 to change it")


def _resume_history(record: dict) -> list:
    """What earlier resumes changed, as config.json records it: options alone say only how a run ends."""
    history = record.get("resumed", [])
    return history if isinstance(history, list) else []


def _claim_run_dir(run_dir: Path, force: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise DcganError(f"--out {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise DcganError(f"--out {run_dir} already exists and is not empty: "
                             f"use --resume {run_dir} to continue it, or --force to start over")
        if not _is_run_dir(run_dir):
            raise DcganError(f"--out {run_dir} is not empty and is not a dcgan run directory "
                             "(no config.json of ours): refusing to clear it, even with --force")
        for name in RUN_ARTIFACTS:
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DcganError(f"cannot write to --out {run_dir}: {exc.strerror or exc}") from None


def _is_run_dir(run_dir: Path) -> bool:
    try:
        return "options" in json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError, TypeError):
        return False


def _load_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """The run's options as a config, and the whole config.json record (data, resume history)."""
    try:
        record = json.loads((run_dir / CONFIG).read_text())
        options = record["options"]
        return TrainConfig(**{f.name: options[f.name] for f in dataclasses.fields(TrainConfig) if f.name in options}), record
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DcganError(f"cannot resume {run_dir}: unreadable {CONFIG} ({type(exc).__name__})") from None


def _write_config(run_dir: Path, config: TrainConfig, data: datasets.Dataset, history: list) -> None:
    """``options`` are the ones in force now; ``resumed`` lists, per resume that changed what the
    run trains, the iteration it resumed at and each changed option as [before, after]."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    record = {
        "options": dataclasses.asdict(config),
        "data": {"name": data.name, "spec": config.data, "sha256": data.sha256, "images": len(data)},
        "versions": {
            "dcgan": version("dcgan"),
            "tensorflow": version("tensorflow") or version("tensorflow-cpu"),
            "keras": version("keras"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if history:
        record["resumed"] = history
    atomic_write_text(run_dir / CONFIG, json.dumps(record, indent=2) + "\n")


def train(config: TrainConfig, resume: str | None = None, force: bool = False, overrides: dict | None = None,
          echo: Callable[[str], None] = print) -> Path:
    """Run (or continue) a training run; return its directory."""
    config, run_dir, data, start = prepare(config, resume, force, overrides)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    import keras
    import tensorflow as tf

    from . import callbacks as cb
    from .data import make_dataset
    from .gan import DCGAN
    from .models import build_discriminator, build_generator

    strategy = _strategy(config, tf)
    echo(_device_line(config, tf, strategy))
    guide = None
    if config.class_guidance:
        # Trained (first time only) before the run's seed is set, so G and D start as without it.
        path = guidance.ensure_guide(run_dir, data.images, data.labels, config.seed, echo)
        with strategy.scope():
            guide = guidance.load_guide(path)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            generator = build_generator(config.latent_dim)
            discriminator = build_discriminator()
            gan = DCGAN(generator, discriminator, config.latent_dim, config.d_steps, seed=config.seed,
                        ema_decay=config.ema, augment=augment.parse_policy(config.augment))
            d_opt, g_opt = make_optimizers(config)
            gan.compile(d_opt, g_opt, label_smoothing=config.label_smoothing, r1_gamma=config.r1, guide=guide,
                        class_guidance=config.class_guidance)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    if start > 0:
        checkpoint.restore(run_dir, gan.state_variables())
        elapsed = cb.trim_losses(run_dir / LOSSES, start)
        echo(f"Resuming {run_dir} at iteration {start + 1} of {config.iterations}")
    else:
        (run_dir / LOSSES).unlink(missing_ok=True)
        checkpoint.save(run_dir, gan.state_variables(), 0)  # a kill before the first checkpoint can resume
        elapsed = 0.0
        echo(f"Training {config.iterations} iterations on {data.name} ({len(data)} images) -> {run_dir}")

    fixed_noise = np.random.default_rng([config.seed, 2**31]).standard_normal((25, config.latent_dim)).astype(np.float32)
    tb = cb.TensorBoardWriter(run_dir / "tb") if config.tensorboard else None
    callbacks = [cb.LossLog(run_dir / LOSSES, start, elapsed),
                 cb.SampleGrids(run_dir, fixed_noise, config.sample_every, start, tb)]
    if config.eval_every:
        from .monitor import QualityMonitor

        callbacks.append(QualityMonitor(run_dir, config.eval_every, config.eval_samples, config.seed, start, tb, echo))
    if tb is not None:
        callbacks.append(cb.TensorBoardScalars(tb, start))
    callbacks.append(cb.Checkpoints(run_dir, config.checkpoint_every, start))
    if not config.quiet:
        callbacks.append(cb.ProgressBar(start, config.iterations))

    dataset = make_dataset(data.images, config.batch_size, config.d_steps, config.seed, start)
    gan.fit(dataset, epochs=1, steps_per_epoch=config.iterations - start, callbacks=callbacks, verbose=0, shuffle=False)
    if tb is not None:
        tb.close()

    checkpoint.record_generator(run_dir, config.iterations, None)
    _save_model(gan.sampling_generator, run_dir / "generator.keras", config.mixed_precision, lambda: build_generator(config.latent_dim))
    checkpoint.record_generator(run_dir, config.iterations, config.iterations)
    _save_model(discriminator, run_dir / "discriminator.keras", config.mixed_precision, build_discriminator)
    cb.plot_losses(run_dir / LOSSES, run_dir / "losses.png")
    checkpoint.mark_finished(run_dir, config.iterations)
    echo(f"Done: {run_dir}/generator.keras (export it with: dcgan export {run_dir} --out generator.onnx)")
    return run_dir


def make_optimizers(config: TrainConfig) -> tuple:
    """Adam for D and for G, with their rates held or decayed per ``--lr-decay-start`` (in
    iterations; D's optimizer makes ``d_steps`` updates in each) and wrapped for loss scaling
    under mixed precision."""
    import keras

    from .schedule import HoldThenLinearDecay

    def optimizer(rate: float, updates_per_iteration: int):
        if config.lr_decay_start is not None:
            rate = HoldThenLinearDecay(rate, config.lr_decay_start, config.iterations, updates_per_iteration)
        opt = keras.optimizers.Adam(rate, beta_1=config.beta1)
        return keras.optimizers.LossScaleOptimizer(opt) if config.mixed_precision else opt

    d_lr = config.lr if config.d_lr is None else config.d_lr
    return optimizer(d_lr, config.d_steps), optimizer(config.lr, 1)


def _save_model(model, path: Path, mixed_precision: bool, rebuild: Callable) -> None:
    """Saved in float32 whatever the training precision, so export and inference stay exact."""
    if mixed_precision:
        clone = rebuild()  # built under the float32 policy, which train() has restored
        clone.set_weights(model.get_weights())
        model = clone
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _strategy(config: TrainConfig, tf):
    if config.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        if config.batch_size % strategy.num_replicas_in_sync:
            raise DcganError(f"--batch-size {config.batch_size} must be divisible by the "
                             f"{strategy.num_replicas_in_sync} replicas of --strategy mirrored")
        return strategy
    return tf.distribute.get_strategy()


def _device_line(config: TrainConfig, tf, strategy) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    where = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU (TensorFlow sees no GPU)"
    extra = []
    if config.strategy == "mirrored":
        extra.append(f"MirroredStrategy over {strategy.num_replicas_in_sync} devices")
    if config.mixed_precision:
        extra.append("mixed_float16")
    return f"Training on {where}" + (f", {', '.join(extra)}" if extra else "")

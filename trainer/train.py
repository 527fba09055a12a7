"""``dcgan train``: start a run or resume one, then build, restore and ``fit()``.

``start_run`` and ``resume_run`` are the two ways in. Each first makes a ``RunPlan``: every check
that can fail on user input (options, data, the run directory; for a resume, ``trainer/resume.py``)
runs before TensorFlow is imported, so a mistake costs a fraction of a second and touches nothing
on disk. A run from a recipe carries on through its stages; at the end the generator is exported
to RUN/generator.onnx through the parity gate, in a separate process (training never loads
onnxruntime).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_export.atomic import atomic_path
from dcgan_export.errors import DcganError, first_line
from dcgan_export.run_dir import RunDir

from . import augment, checkpoint, guidance, hardware
from .config import RunPlan, TrainConfig, conditional_classes, load_data, write_record
from .resume import changes_training, check_stage_changes, pending_stages, plan_resume

Echo = Callable[[str], None]


def plan_start(config: TrainConfig, force: bool = False, stages: list[dict] | None = None,
               dry_run: bool = False) -> RunPlan:
    """Check a new run; unless ``dry_run``, claim its directory and write config.json."""
    stages = list(stages or [])
    config.validate()
    check_stage_changes(stages, config.iterations, "--config", config.ema)
    data = load_data(config, dry_run)
    run = RunDir(config.out or time.strftime("runs/%Y%m%d-%H%M%S"))
    config.out = str(run.path)
    if config.process_id > 0:  # process 0 claims the directory and writes it; the others only train
        return RunPlan(config, run, data, 0, stages)
    run.claim(force, dry_run=dry_run)
    if not dry_run:
        try:
            write_record(run, config, data, [], stages)
        except BaseException:
            run.unlock()
            raise
    return RunPlan(config, run, data, 0, stages)


def start_run(config: TrainConfig, force: bool = False, stages: list[dict] | None = None,
              echo: Echo = print) -> RunDir:
    """Train a new run (and the recipe's resumes that follow, if any); return its directory."""
    plan = plan_start(config, force, stages)
    try:
        fit(plan, echo)
        return _finish(_carry_on(plan, echo), echo)
    finally:
        plan.run.unlock()


def resume_run(path: str | os.PathLike, changes: dict | None = None, echo: Echo = print) -> RunDir:
    """Continue the run in ``path`` from its checkpoint. With ``changes`` to what it trains (only
    ``RESUMABLE`` options), train to its new end; without, carry a recipe run on through its stages."""
    plan = plan_resume(path, changes)
    try:
        fit(plan, echo)
        return _finish(plan if changes_training(changes or {}) else _carry_on(plan, echo), echo)
    finally:
        plan.run.unlock()


def _carry_on(plan: RunPlan, echo: Echo) -> RunPlan:
    """The recipe's resumes still ahead, one after the other (a multi-process run stops after each:
    every process must be started again for the next)."""
    if plan.config.num_processes > 1:
        if plan.config.process_id == 0 and pending_stages(plan.run.read_config()):
            echo(f"The recipe goes on: run `dcgan train --resume {plan.run.path}` on every process again")
        return plan
    while pending_stages(plan.run.read_config()):
        plan = plan_resume(plan.run.path)
        fit(plan, echo)
    return plan


def _finish(plan: RunPlan, echo: Echo) -> RunDir:
    if plan.config.export and plan.config.process_id == 0:
        export_in_subprocess(plan.run, echo)
    return plan.run


def export_in_subprocess(run: RunDir, echo: Echo) -> None:
    """``dcgan export RUN --out RUN/generator.onnx``: the parity gate in its own process. Export
    converts through TensorFlow; where it is not installed (a JAX-only machine) the run is
    complete without the ONNX file, and the user hears how to make it elsewhere."""
    missing = [name for name in ("tensorflow", "tf2onnx", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        echo(f"Not exported: dcgan export needs {', '.join(missing)} (pip install 'dcgan[train]'); "
             f"run `dcgan export {run.path}` where they are installed")
        return
    command = [sys.executable, "-m", "dcgan_export.cli", "export", str(run.path), "--out", str(run.generator_onnx)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    for line in result.stdout.splitlines():
        echo(line)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no message"])[-1].removeprefix("Error: ")
        raise DcganError(f"training finished ({run.generator}), but its export failed: {why}",
                         exit_code=result.returncode or 1)


def fit(plan: RunPlan, echo: Echo = print) -> RunDir:
    """Build the networks, restore the checkpoint (if resuming), ``fit()`` to the plan's end and
    write the run's final files."""
    config, run, data, start = plan.config, plan.run, plan.data, plan.start
    hardware.activate(config.backend)
    hardware.join(config)
    import keras

    from . import callbacks as cb
    from .gan import DCGAN
    from .models import build_discriminator, build_generator

    keras.backend.clear_session()  # a recipe's next stage starts from a clean slate, as a new process would
    devices = hardware.setup(config)
    echo(devices.description)
    guide = None
    if config.class_guidance:
        # Trained (first time only) before the run's seed is set, so G and D start as without it.
        path = guidance.ensure_guide(run, data.images, data.labels, config.seed, echo)
        with devices.scope():
            guide = guidance.load_guide(path)
    keras.utils.set_random_seed(config.seed)
    classes = len(conditional_classes(data)) if config.conditional else None
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with devices.scope():
            generator = build_generator(config.latent_dim, data.image_shape, config.width_multiplier, classes)
            discriminator = build_discriminator(data.image_shape, config.width_multiplier, classes)
            gan = DCGAN(generator, discriminator, config.latent_dim, config.d_steps, seed=config.seed,
                        ema_decay=config.ema, augment=augment.parse_policy(config.augment), num_classes=classes)
            d_opt, g_opt = make_optimizers(config)
            gan.compile(d_opt, g_opt, label_smoothing=config.label_smoothing, r1_gamma=config.r1, guide=guide,
                        class_guidance=config.class_guidance)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    for note in plan.notes:
        echo(note)
    writer = config.process_id == 0  # in a multi-process run, the others train and write nothing
    if start > 0:
        checkpoint.restore(run, gan.state_variables())
        elapsed = cb.trim_losses(run.losses, start) if writer else 0.0
        if start == config.iterations:
            echo(f"{run} reached iteration {start} but stopped before writing its final files: writing them")
        else:
            echo(f"Resuming {run} at iteration {start + 1} of {config.iterations}")
    else:
        if writer:
            run.losses.unlink(missing_ok=True)
            checkpoint.save(run, gan.state_variables(), 0)  # a kill before the first checkpoint can resume
        elapsed = 0.0
        echo(f"Training {config.iterations} iterations on {data.name} ({len(data)} images) -> {run}")

    if start < config.iterations:
        _fit_to_the_end(gan, plan, elapsed, echo)
    elif writer:
        cb.write_progress_gif(run)
    if config.num_processes > 1:  # every process holds the weights: the same, as this shows
        echo(f"Process {config.process_id}: weights fingerprint {weights_fingerprint(gan.state_variables())}")
    if not writer:
        echo(f"Process {config.process_id} trained to iteration {config.iterations}; process 0 wrote {run}")
        return run
    local_copy = config.mixed_precision or config.num_processes > 1
    run.record_generator(config.iterations, None)
    _save_model(gan.sampling_generator, run.generator, local_copy,
                lambda: build_generator(config.latent_dim, data.image_shape, config.width_multiplier, classes))
    run.record_generator(config.iterations, config.iterations)
    _save_model(discriminator, run.discriminator, local_copy,
                lambda: build_discriminator(data.image_shape, config.width_multiplier, classes))
    cb.plot_losses(run.losses, run.file(RunDir.LOSSES_PLOT))
    run.mark_finished(config.iterations)
    echo(f"Trained {run} to iteration {config.iterations}: {run.generator}")
    return run


def weights_fingerprint(variables: list) -> str:
    """The first 16 hex digits of a sha256 over every variable's value on this host."""
    import hashlib

    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(hardware.host_value(variable.value)).tobytes())
    return digest.hexdigest()[:16]


def _fit_to_the_end(gan, plan: RunPlan, elapsed: float, echo: Echo) -> None:
    """``fit()`` from the plan's start to its end, with the callbacks that log, sample and checkpoint."""
    from . import callbacks as cb
    from .data import IterationBatches

    config, run, data, start = plan.config, plan.run, plan.data, plan.start
    batches = IterationBatches(data.images, config.batch_size, config.d_steps, config.seed, start,
                               config.iterations - start, shard=(config.process_id, config.num_processes),
                               labels=data.labels if config.conditional else None)
    if config.process_id > 0:
        _fit_together(gan, batches, config)
        return
    fixed_noise = np.random.default_rng([config.seed, 2**31]).standard_normal((25, config.latent_dim)).astype(np.float32)
    tb = cb.TensorBoardWriter(run.file(RunDir.TENSORBOARD)) if config.tensorboard else None
    callbacks = [cb.LossLog(run.losses, start, elapsed),
                 cb.SampleGrids(run, fixed_noise, config.sample_every, start, tb)]
    if config.eval_every:
        from .monitor import QualityMonitor

        callbacks.append(QualityMonitor(run, config.eval_every, config.eval_samples, config.seed, start, tb, echo))
    if tb is not None:
        callbacks.append(cb.TensorBoardScalars(tb, start))
    callbacks.append(cb.Checkpoints(run, config.checkpoint_every, start))
    if not config.quiet:
        callbacks.append(cb.ProgressBar(start, config.iterations))

    _fit_together(gan, batches, config, callbacks=callbacks)
    if tb is not None:
        tb.close()


def _fit_together(gan, batches, config: TrainConfig, callbacks=None) -> None:
    """``fit()``; in a multi-process run, a failed cross-process sum means another process is gone."""
    try:
        gan.fit(batches, epochs=1, callbacks=callbacks, verbose=0, shuffle=False)
    except Exception as exc:
        if config.num_processes == 1 or ("Gloo" not in str(exc) and "NCCL" not in str(exc)):
            raise
        from .supervise import run_stopped

        raise run_stopped(config.process_id, config.out,
                          f"another process died or stopped answering ({first_line(exc)[:120]})") from None


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


def _save_model(model, path: Path, local_copy: bool, rebuild: Callable) -> None:
    """Saved in float32 whatever the training precision, so export and inference stay exact; with
    ``local_copy``, from a copy built under the float32 policy (which fit() has restored) outside
    any distribution, holding this host's values of the weights."""
    if local_copy:
        import keras

        if keras.backend.backend() == "jax":
            keras.distribution.set_distribution(None)  # the copy's weights live on this host alone
        clone = rebuild()
        clone.set_weights([hardware.host_value(w.value) for w in model.weights])
        model = clone
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)

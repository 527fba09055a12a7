"""Resuming a run: which options a resume may change, and every check, before TensorFlow loads.

A run resumes from its checkpoint with the options config.json records; a resume may change
only ``RESUMABLE`` ones, each under the rule its check below states. A run started from a recipe
(``--config`` with ``resume`` stages) records the stages, and a plain ``--resume`` carries it on
through those still ahead. What each resume changed is kept in config.json under ``resumed``.
See docs/resume.md.
"""

from __future__ import annotations

import dataclasses

from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir

from . import checkpoint
from .config import (FIELDS, HARDWARE, LAUNCH, REPORTING, RunPlan, TrainConfig, config_from_record, flag, load_data,
                     write_record)

# What a resume may change: how far the run goes and how it anneals (lr decay, averaging decay,
# guidance weight), where it runs (a checkpoint is backend-neutral), and anything that only
# changes what it reports.
RESUMABLE = frozenset({"iterations", "lr_decay_start", "ema", "class_guidance"}) | HARDWARE | REPORTING


def check_changes(changes: dict, where: str = "--resume") -> None:
    fixed = sorted(set(changes) - RESUMABLE)
    if fixed:
        raise DcganError(f"{where} continues a run with its own settings; it cannot change "
                         f"{', '.join(flag(k) for k in fixed)}")


def check_stage_changes(stages: list[dict], start_iterations: int, where: str, start_ema: float = 0.0) -> None:
    """A recipe's resumes: each changes only what a resume may, goes further than the last, and
    keeps the average on or off as the run started (checked here, before any stage trains)."""
    previous = start_iterations
    for i, stage in enumerate(stages, 1):
        check_changes(stage, f"{where}: resume {i}")
        if "ema" in stage and (stage["ema"] > 0) != (start_ema > 0):
            raise DcganError(f"{where}: resume {i} cannot switch --ema {'on' if stage['ema'] > 0 else 'off'}")
        target = stage.get("iterations")
        if not isinstance(target, int) or target <= previous:
            raise DcganError(f"{where}: resume {i} must set iterations above {previous}")
        previous = target


def changes_training(changes: dict) -> bool:
    """Whether a resume changes what the run trains (not only what it reports): such a resume
    trains to its own end, and leaves a recipe's stages ahead for a later plain resume."""
    return bool(set(changes) - REPORTING - HARDWARE)


def pending_stages(record: dict) -> list[dict]:
    """The recipe's resumes a run has not reached yet."""
    stages = record.get("stages")
    if not isinstance(stages, list):
        return []
    target = record["options"].get("iterations", 0)
    return [s for s in stages if isinstance(s, dict) and isinstance(s.get("iterations"), int)
            and s["iterations"] > target]


def plan_resume(path, changes: dict | None = None, dry_run: bool = False) -> RunPlan:
    """Check a resume of the run in ``path`` with ``changes``; unless ``dry_run``, lock the run, set
    a damaged checkpoint aside for the previous one, remove temporary files that crashed writes
    left, and record the resume in config.json. With no change to what it trains, a run at the end
    of a recipe stage moves to the next."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise DcganError(f"cannot resume {run}: no such directory")
    changes = dict(changes or {})
    check_changes(changes)
    if changes.get("process_id", 0) > 0 and not dry_run:
        return _plan_follower(run, changes)
    took_lock = False
    if not dry_run:
        run.read_config()  # a directory that is not a run gets no lock file
        took_lock = run.lock()  # before reading the checkpoint: another process may be writing it
    try:
        return _plan_resume(run, changes, dry_run)
    except BaseException:
        if took_lock:  # a recipe's next stage, planned by the process training it, keeps its lock
            run.unlock()
        raise


def _plan_follower(run: RunDir, changes: dict) -> RunPlan:
    """A resume in a process other than 0 of a multi-process run: it joins the others first, so
    process 0 has finished planning (it may set a damaged checkpoint aside), then reads the run
    and writes nothing."""
    import types

    from . import hardware

    launch = {name: changes.get(name, FIELDS[name].default) for name in LAUNCH}
    hardware.join(types.SimpleNamespace(**launch))
    return _plan_resume(run, changes, dry_run=False, writes=False)


def _plan_resume(run: RunDir, changes: dict, dry_run: bool, writes: bool = True) -> RunPlan:
    record = run.read_config()
    config = config_from_record(record, str(run.config))
    try:
        config.validate()  # config.json may have been edited: its values, checked like the command line's
    except DcganError as exc:
        raise DcganError(f"cannot resume: {run.config}: {exc}") from None
    point = checkpoint.resume_point(run, config.iterations)
    start = point.iteration
    stages = record.get("stages") if isinstance(record.get("stages"), list) else []
    ahead = pending_stages(record)
    if not changes_training(changes) and ahead and start >= config.iterations:
        changes = {**ahead[0], **changes}
    _check_decay(run, config, start, changes)
    started_ema = config.ema
    changed = {k: [getattr(config, k), v] for k, v in changes.items()
               if k not in REPORTING and getattr(config, k) != v}
    history = _history(record) + ([{"iteration": start, "changed": changed}] if changed else [])
    config = dataclasses.replace(config, **changes, out=str(run.path))
    config.validate()
    _check_ema(started_ema, config.ema)
    if start > config.iterations or (start == config.iterations and _finished(run, start)):
        raise DcganError(f"{run} is already at iteration {start}; pass --iterations N with N > {start}")
    try:
        data = load_data(config, dry_run)
    except DcganError as exc:
        raise DcganError(f"cannot resume {run} (data {config.data!r}, from {RunDir.CONFIG}): {exc}") from None
    recorded = record.get("data", {}).get("sha256") if isinstance(record.get("data"), dict) else None
    if recorded and recorded != data.sha256:
        raise DcganError(f"cannot resume {run}: data set {config.data!r} changed since the run started")
    notes = [point.note] if point.note and writes else []
    if point.fall_back and not writes:
        raise DcganError(f"cannot resume {run}: process 0 has not set its damaged checkpoint aside")
    if writes and not dry_run:
        if point.fall_back:
            checkpoint.use_previous(run)
        removed = run.remove_stale_temp_files()
        if removed:
            notes.append(f"removed {removed} temporary file{'s' * (removed > 1)} left by an interrupted write")
        write_record(run, config, data, history, stages)
    return RunPlan(config, run, data, start, stages, notes)


def _finished(run: RunDir, iteration: int) -> bool:
    """Whether the run wrote its final files at ``iteration``. A run killed between its last
    checkpoint and those files is not: its resume writes them, without training."""
    return (run.read_state().get("finished") is True and run.generator_iteration() == iteration
            and run.generator.is_file())


def _check_decay(run: RunDir, config: TrainConfig, start: int, changes: dict) -> None:
    """A run whose checkpoint trained only at the full rates may set or move its decay, as long
    as it starts at or after the checkpoint: it continues exactly as a run started with those
    flags would have gone. Once it is decaying, its rates reach 0 at its --iterations: moving the
    start or that target would bend the curve it is part-way down (a longer one would jump back up)."""
    decay_start = changes.get("lr_decay_start", config.lr_decay_start)
    if config.lr_decay_start is not None and start > config.lr_decay_start:
        if decay_start != config.lr_decay_start:
            raise DcganError(f"{run} has been decaying its learning rates since iteration {config.lr_decay_start}; "
                             "it cannot be resumed with a different --lr-decay-start")
        if changes.get("iterations", config.iterations) != config.iterations:
            raise DcganError(f"{run} decays its learning rates to 0 at iteration {config.iterations} "
                             f"(--lr-decay-start {config.lr_decay_start}); it cannot be resumed with a "
                             f"different --iterations")
    elif decay_start is not None and decay_start < start:
        raise DcganError(f"--lr-decay-start {decay_start} is before {run}'s checkpoint (iteration {start}), "
                         f"which trained at the full rates; pass --lr-decay-start {start} or later")


def _check_ema(started: float, ema: float) -> None:
    """A resumed run may change its averaging decay: the average carries on from the checkpoint's
    with the new one, and training itself (which never reads the average) is unchanged. Switching
    the average on or off would add or drop state the checkpoint holds or lacks."""
    if (ema > 0) != (started > 0):
        raise DcganError(f"--ema cannot be switched {'on' if ema > 0 else 'off'} on resume: the run was "
                         f"started with --ema {started}; pass another decay > 0 to change it")


def _history(record: dict) -> list:
    """What earlier resumes changed, as config.json records it: options alone say only how a run ends."""
    history = record.get("resumed", [])
    return history if isinstance(history, list) else []

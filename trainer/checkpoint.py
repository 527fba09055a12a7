"""Whole-run checkpoints: one .npz holding every state variable, replaced atomically.

A run killed at any moment (SIGKILL included) finds either the previous checkpoint or the new
one, never half of one; the one before the newest stays as checkpoint.prev.npz, where a resume
falls back when the newest is damaged (``resume_point``). Variables are stored in
``DCGAN.state_variables()`` order with their paths; ``check`` reads every member back without
TensorFlow, and restore matches them by position and checks shapes and dtypes. After each save,
state.json (``RunDir.record_checkpoint``) says how far the run got. The file is the same on
every Keras backend, so a run can resume on another.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np

from dcgan_export.atomic import atomic_path
from dcgan_export.errors import DcganError, first_line
from dcgan_export.run_dir import RunDir

from .hardware import host_value


def save(run: RunDir, variables: list, iteration: int) -> None:
    """Write checkpoint.npz; the one it replaces becomes checkpoint.prev.npz, the fall-back of a
    resume that finds the newest damaged."""
    arrays = {f"v{i:04d}": host_value(v.value if hasattr(v, "value") else v) for i, v in enumerate(variables)}
    arrays["iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["paths"] = np.asarray([_path(v) for v in variables])
    with atomic_path(run.checkpoint) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        if run.checkpoint.exists():  # a kill right after this leaves prev: the resume falls back to it
            os.replace(run.checkpoint, run.previous_checkpoint)
    run.record_checkpoint(iteration)


class DamagedCheckpoint(DcganError):
    """A checkpoint file that cannot be trusted: which file, and what is wrong with it."""


def check(path: Path) -> int:
    """Read every member of a checkpoint back (zip CRCs included) and check its layout; return
    its iteration, or raise DamagedCheckpoint saying what is wrong. No TensorFlow needed."""
    if not zipfile.is_zipfile(path):
        raise DamagedCheckpoint(f"{path} is damaged: not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as ckpt:
            members = set(ckpt.files)
            for required in ("iteration", "paths"):
                if required not in members:
                    raise DamagedCheckpoint(f"{path} is damaged: its {required!r} member is missing")
            paths, iteration = ckpt["paths"], ckpt["iteration"]
            if paths.ndim != 1 or paths.dtype.kind != "U":
                raise DamagedCheckpoint(f"{path} is damaged: 'paths' is {paths.dtype} {paths.shape}")
            if iteration.shape != () or iteration.dtype.kind not in "iu":
                raise DamagedCheckpoint(f"{path} is damaged: 'iteration' is {iteration.dtype} {iteration.shape}")
            for i in range(len(paths)):
                name = f"v{i:04d}"
                if name not in members:
                    raise DamagedCheckpoint(f"{path} is damaged: member {name} ({paths[i]}) is missing")
                if ckpt[name].dtype.kind not in "biuf":
                    raise DamagedCheckpoint(f"{path} is damaged: member {name} ({paths[i]}) has dtype {ckpt[name].dtype}")
            return int(iteration)
    except DamagedCheckpoint:
        raise
    except Exception as exc:  # zipfile.BadZipFile (bad CRC, truncated), ValueError (npy header), OSError
        raise DamagedCheckpoint(f"{path} is damaged ({type(exc).__name__}: {first_line(exc)})") from None


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    iteration: int
    note: str | None = None  # what the user should hear: a fall-back, a start from scratch
    fall_back: bool = False  # checkpoint.prev.npz is the one to restore (``use_previous`` first)


def resume_point(run: RunDir, last_iteration: int) -> ResumePoint:
    """Where a resume of ``run`` starts, or a one-line DcganError. ``last_iteration``: the run's
    recorded target; a checkpoint claiming to be outside 0..last_iteration is damaged (no real run
    writes one). A damaged checkpoint.npz falls back to checkpoint.prev.npz where that one is good;
    a run killed before its first checkpoint starts from iteration 0."""
    damage = None
    if run.checkpoint.is_file():
        try:
            return ResumePoint(_checked_iteration(run.checkpoint, last_iteration))
        except DamagedCheckpoint as exc:
            damage = str(exc)
    if run.previous_checkpoint.is_file():
        try:
            iteration = _checked_iteration(run.previous_checkpoint, last_iteration)
        except DamagedCheckpoint as exc:
            raise DcganError(f"cannot resume {run}: {damage or f'{run.checkpoint} is missing'}, "
                             f"and so is the previous one: {exc}") from None
        why = f"{damage} (kept as {RunDir.DAMAGED_CHECKPOINT})" if damage else f"{run.checkpoint} is missing"
        return ResumePoint(iteration, f"{why}: resuming from the previous checkpoint, iteration {iteration}",
                           fall_back=True)
    if damage:
        raise DcganError(f"cannot resume {run}: {damage}, and there is no previous checkpoint to fall back to")
    reached = run.read_state().get("iteration")
    if isinstance(reached, int) and reached > 0:
        raise DcganError(f"cannot resume {run}: {run.checkpoint} is missing (state.json says the run reached "
                         f"iteration {reached})")
    return ResumePoint(0, f"{run} was stopped before its first checkpoint: starting it from iteration 0 "
                          "with its recorded options")


def _checked_iteration(path: Path, last_iteration: int) -> int:
    iteration = check(path)
    if not 0 <= iteration <= last_iteration:
        raise DamagedCheckpoint(f"{path} is damaged: it says iteration {iteration}, outside the run's "
                                f"0..{last_iteration}")
    return iteration


def use_previous(run: RunDir) -> None:
    """Set a damaged checkpoint.npz aside and make checkpoint.prev.npz the checkpoint. Each step is
    a rename, and a kill between them leaves a state that the next resume handles the same way."""
    if run.checkpoint.exists():
        os.replace(run.checkpoint, run.file(RunDir.DAMAGED_CHECKPOINT))
    os.replace(run.previous_checkpoint, run.checkpoint)


def restore(run: RunDir, variables: list) -> int:
    """Assign the saved values to ``variables``; return the iteration they were saved at."""
    with np.load(run.checkpoint, allow_pickle=False) as ckpt:
        paths = [str(p) for p in ckpt["paths"]]
        matched = _match(paths, variables)
        if matched is None:
            raise DcganError(f"{run.checkpoint}: holds {len(paths)} variables that do not match "
                             f"this run's {len(variables)}")
        for i, var in zip(matched, variables):
            value = ckpt[f"v{i:04d}"]
            if tuple(value.shape) != tuple(var.shape):
                raise DcganError(f"{run.checkpoint}: {paths[i]} has shape {value.shape}, expected {tuple(var.shape)}")
            if value.dtype != np.dtype(var.dtype):
                value = _cast_seed_state(value, np.dtype(var.dtype), f"{run.checkpoint}: {paths[i]}")
            var.assign(value)
        return int(ckpt["iteration"])


def _cast_seed_state(value: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """Random-seed states are int64 on TensorFlow and uint32 on JAX; a checkpoint from the other
    backend holds the same integers in the other type. Anything else must match exactly."""
    if value.dtype.kind in "iu" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if value.size == 0 or (value.min() >= info.min and value.max() <= info.max):
            return value.astype(dtype)
    raise DcganError(f"{where} has dtype {value.dtype}, expected {dtype}")


def _match(paths: list[str], variables: list) -> list[int] | None:
    """The saved index for each variable, in order, or None. A constant learning rate is an
    optimizer variable and a decaying one a schedule, so a run that starts decaying on resume has
    no variable for a rate it saved: such a saved rate is skipped wherever the variable in its
    place is not a learning rate (a loss-scale optimizer keeps its own rate variable either way)."""
    matched, i = [], 0
    for var in variables:
        while i < len(paths) and _is_learning_rate(paths[i]) and not _is_learning_rate(_path(var)):
            i += 1
        if i == len(paths):
            return None
        matched.append(i)
        i += 1
    return matched if i == len(paths) else None


def _is_learning_rate(path: str) -> bool:
    return path.endswith("/learning_rate")


def _path(variable) -> str:
    return str(getattr(variable, "path", getattr(variable, "name", "?")))

"""Whole-run checkpoints: one .npz holding every state variable, replaced atomically.

A run killed at any moment (SIGKILL included) finds either the previous checkpoint or the new
one, never half of one. Variables are stored in ``DCGAN.state_variables()`` order with their
paths and shapes; restore matches them by position and checks shapes. After each save,
state.json (``RunDir.record_checkpoint``) says how far the run got.
"""

from __future__ import annotations

import numpy as np

from dcgan_export.atomic import atomic_open
from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir


def save(run: RunDir, variables: list, iteration: int) -> None:
    arrays = {f"v{i:04d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(variables)}
    arrays["iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["paths"] = np.asarray([_path(v) for v in variables])
    with atomic_open(run.checkpoint, "wb") as f:
        np.savez(f, **arrays)
    run.record_checkpoint(iteration)


def saved_iteration(run: RunDir) -> int:
    path = run.checkpoint
    if not path.is_file():
        raise DcganError(f"cannot resume {run}: it has no {RunDir.CHECKPOINT}")
    try:
        with np.load(path, allow_pickle=False) as ckpt:
            return int(ckpt["iteration"])
    except Exception as exc:
        raise DcganError(f"cannot resume {run}: unreadable {RunDir.CHECKPOINT} ({type(exc).__name__})") from None


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
            var.assign(value)
        return int(ckpt["iteration"])


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

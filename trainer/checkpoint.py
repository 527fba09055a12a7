"""Whole-run checkpoints: one .npz holding every state variable, replaced atomically.

A run killed at any moment (SIGKILL included) finds either the previous checkpoint or the new
one, never half of one. Variables are stored in ``DCGAN.state_variables()`` order with their
paths and shapes; restore matches them by position and checks shapes. state.json says how far
the run got, whether it finished, and which iteration generator.keras holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dcgan_export.atomic import atomic_open, atomic_write_text
from dcgan_export.errors import DcganError
from dcgan_export.run_state import generator_iteration

CHECKPOINT = "checkpoint.npz"
STATE = "state.json"


def save(run_dir: Path, variables: list, iteration: int) -> None:
    arrays = {f"v{i:04d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(variables)}
    arrays["iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["paths"] = np.asarray([_path(v) for v in variables])
    with atomic_open(run_dir / CHECKPOINT, "wb") as f:
        np.savez(f, **arrays)
    _write_state(run_dir, iteration, finished=False, generator_iteration=generator_iteration(read_state(run_dir)))


def record_generator(run_dir: Path, iteration: int, saved_at: int | None) -> None:
    """Say which iteration generator.keras holds: None just before it is replaced, the new one
    right after, so a kill in between leaves "unknown" rather than a wrong iteration."""
    _write_state(run_dir, iteration, finished=False, generator_iteration=saved_at)


def mark_finished(run_dir: Path, iteration: int) -> None:
    """Called once every file of the run is written, never before: a tool that polls state.json
    must not see "finished" while generator.keras is still the previous one."""
    _write_state(run_dir, iteration, finished=True, generator_iteration=iteration)


def read_state(run_dir: Path) -> dict:
    """state.json, or {} where it is missing or unreadable (nothing in it is needed to resume)."""
    try:
        state = json.loads((run_dir / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(run_dir: Path, iteration: int, finished: bool, generator_iteration: int | None) -> None:
    state = {"iteration": iteration, "finished": finished}
    if generator_iteration is not None:
        state["generator_iteration"] = generator_iteration
    atomic_write_text(run_dir / STATE, json.dumps(state) + "\n")


def saved_iteration(run_dir: Path) -> int:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise DcganError(f"cannot resume {run_dir}: it has no {CHECKPOINT}")
    try:
        with np.load(path, allow_pickle=False) as ckpt:
            return int(ckpt["iteration"])
    except Exception as exc:
        raise DcganError(f"cannot resume {run_dir}: unreadable {CHECKPOINT} ({type(exc).__name__})") from None


def restore(run_dir: Path, variables: list) -> int:
    """Assign the saved values to ``variables``; return the iteration they were saved at."""
    with np.load(run_dir / CHECKPOINT, allow_pickle=False) as ckpt:
        paths = [str(p) for p in ckpt["paths"]]
        matched = _match(paths, variables)
        if matched is None:
            raise DcganError(f"{run_dir / CHECKPOINT}: holds {len(paths)} variables that do not match "
                             f"this run's {len(variables)}")
        for i, var in zip(matched, variables):
            value = ckpt[f"v{i:04d}"]
            if tuple(value.shape) != tuple(var.shape):
                raise DcganError(f"{run_dir / CHECKPOINT}: {paths[i]} has shape {value.shape}, expected {tuple(var.shape)}")
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

"""Whole-run checkpoints: one .npz holding every state variable, replaced atomically.

A run killed at any moment (SIGKILL included) finds either the previous checkpoint or the new
one, never half of one. Variables are stored in ``DCGAN.state_variables()`` order with their
paths and shapes, and checked on restore.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dcgan_export.atomic import atomic_open, atomic_write_text
from dcgan_export.errors import DcganError

CHECKPOINT = "checkpoint.npz"
STATE = "state.json"


def save(run_dir: Path, variables: list, iteration: int) -> None:
    arrays = {f"v{i:04d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(variables)}
    arrays["iteration"] = np.asarray(iteration, dtype=np.int64)
    arrays["paths"] = np.asarray([_path(v) for v in variables])
    with atomic_open(run_dir / CHECKPOINT, "wb") as f:
        np.savez(f, **arrays)
    _write_state(run_dir, iteration, finished=False, generator_iteration=read_state(run_dir).get("generator_iteration"))


def mark_finished(run_dir: Path, iteration: int) -> None:
    """Called once generator.keras holds this iteration's generator, never before: a tool that
    polls state.json must not see "finished" while generator.keras is still the previous one."""
    _write_state(run_dir, iteration, finished=True, generator_iteration=iteration)


def read_state(run_dir: Path) -> dict:
    """state.json, or {} where it is missing or unreadable (nothing in it is needed to resume)."""
    try:
        state = json.loads((run_dir / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(run_dir: Path, iteration: int, finished: bool, generator_iteration: int | None) -> None:
    # generator_iteration: the iteration generator.keras was saved at; a resumed run keeps the
    # previous one there until it finishes
    state = {"iteration": iteration, "finished": finished}
    if isinstance(generator_iteration, int):
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
        paths = list(ckpt["paths"])
        saved = range(len(paths))
        if not any(_is_learning_rate(_path(v)) for v in variables):
            # a constant learning rate is an optimizer variable, a decaying one a schedule: a run
            # that starts decaying on resume has no variable for the rate it saved (and needs none)
            saved = [i for i in saved if not _is_learning_rate(str(paths[i]))]
        if len(saved) != len(variables):
            raise DcganError(f"{run_dir / CHECKPOINT}: holds {len(saved)} variables, this run has {len(variables)}")
        for i, var in zip(saved, variables):
            path, value = paths[i], ckpt[f"v{i:04d}"]
            if tuple(value.shape) != tuple(var.shape):
                raise DcganError(f"{run_dir / CHECKPOINT}: {path} has shape {value.shape}, expected {tuple(var.shape)}")
            var.assign(value)
        return int(ckpt["iteration"])


def _is_learning_rate(path: str) -> bool:
    return path.endswith("/learning_rate")


def _path(variable) -> str:
    return str(getattr(variable, "path", getattr(variable, "name", "?")))

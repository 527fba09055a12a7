"""A training run's directory: the one place that knows its file names and reads its records.

The trainer writes through it; export, eval, sample and serve read through it. No TensorFlow,
no onnxruntime. Every file is written atomically (temporary file, then rename)::

    RUN/config.json          every option, the data's sha256, versions, the resume history
    RUN/state.json           checkpoint iteration, finished or not, what generator.keras holds
    RUN/checkpoint.npz       the whole training state (trainer/checkpoint.py)
    RUN/checkpoint.prev.npz  the one before it: where a resume falls back if the last is damaged
    RUN/.lock                held (flock) by the process training the run
    RUN/losses.csv           one row per iteration
    RUN/eval.csv             --eval-every figures
    RUN/samples/iter_NNNNNN.png, RUN/progress.gif, RUN/losses.png, RUN/tb/
    RUN/guide_classifier.keras   --class-guidance's classifier
    RUN/generator.keras, RUN/discriminator.keras   written when the run finishes
    RUN/generator.onnx       exported at the end of `dcgan train` (parity-checked)
"""

from __future__ import annotations

import csv
import fcntl
import json
import re
import os
import shutil
from pathlib import Path

from .atomic import atomic_open, atomic_write_text
from .errors import DcganError


_TEMP_NAME = re.compile(r"\.(.+)\.[A-Za-z0-9_]{8}\.(?:tmp|keras)")  # dcgan_export/atomic.py's temporary files


class RunDir:
    CONFIG = "config.json"
    STATE = "state.json"
    CHECKPOINT = "checkpoint.npz"
    PREVIOUS_CHECKPOINT = "checkpoint.prev.npz"
    DAMAGED_CHECKPOINT = "checkpoint.damaged.npz"  # set aside by a resume that fell back
    LOCK = ".lock"
    LOSSES = "losses.csv"
    LOSSES_PLOT = "losses.png"
    EVAL = "eval.csv"
    SAMPLES = "samples"
    PROGRESS_GIF = "progress.gif"
    TENSORBOARD = "tb"
    GUIDE = "guide_classifier.keras"
    GENERATOR = "generator.keras"
    DISCRIMINATOR = "discriminator.keras"
    GENERATOR_ONNX = "generator.onnx"
    # What a run writes: all that --force clears; nothing else in the directory is touched.
    ARTIFACTS = (CONFIG, STATE, CHECKPOINT, PREVIOUS_CHECKPOINT, DAMAGED_CHECKPOINT, LOSSES, LOSSES_PLOT, EVAL, SAMPLES, PROGRESS_GIF, TENSORBOARD,
                 GUIDE, GENERATOR, DISCRIMINATOR, GENERATOR_ONNX)

    _held: dict[Path, int] = {}  # run directories this process has locked: path -> lock file descriptor

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
        return self.path / self.PREVIOUS_CHECKPOINT

    @property
    def losses(self) -> Path:
        return self.path / self.LOSSES

    @property
    def eval_log(self) -> Path:
        return self.path / self.EVAL

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def generator(self) -> Path:
        return self.path / self.GENERATOR

    @property
    def discriminator(self) -> Path:
        return self.path / self.DISCRIMINATOR

    @property
    def generator_onnx(self) -> Path:
        return self.path / self.GENERATOR_ONNX

    @property
    def guide(self) -> Path:
        return self.path / self.GUIDE

    def sample_grid(self, iteration: int) -> Path:
        return self.samples / f"iter_{iteration:06d}.png"

    def sample_grids(self) -> list[Path]:
        return sorted(self.samples.glob("iter_*.png"))

    # -- what it is ------------------------------------------------------------------------------

    @staticmethod
    def holds(path: str | os.PathLike) -> bool:
        """Whether ``path`` is a run directory (it has our config.json): how commands that take a
        model file tell a run directory from a file."""
        return Path(path).is_dir() and RunDir(path).is_run()

    def is_run(self) -> bool:
        try:
            return "options" in json.loads(self.config.read_text())
        except (OSError, ValueError, TypeError):
            return False

    def model(self, name: str, how_to_make: str) -> Path:
        """A model file of the run (``GENERATOR_ONNX``, ``GENERATOR``), or a one-line error saying
        how to make it."""
        path = self.path / name
        if not path.is_file():
            raise DcganError(f"{self.path} has no {name} yet: {how_to_make}")
        return path

    # -- config.json -----------------------------------------------------------------------------

    def read_config(self) -> dict:
        """config.json as a dict with an ``options`` dict, or a one-line DcganError."""
        try:
            record = json.loads(self.config.read_text())
        except FileNotFoundError:
            raise DcganError(f"{self.path} is not a dcgan run directory (no {self.CONFIG})") from None
        except (OSError, ValueError) as exc:
            raise DcganError(f"{self.config}: unreadable ({type(exc).__name__})") from None
        if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
            raise DcganError(f"{self.config}: not a dcgan run record (no options)")
        return record

    def read_config_or_none(self) -> dict | None:
        try:
            return self.read_config()
        except DcganError:
            return None

    def write_config(self, record: dict) -> None:
        atomic_write_text(self.config, json.dumps(record, indent=2) + "\n")

    # -- state.json ------------------------------------------------------------------------------

    def read_state(self) -> dict:
        """state.json, or {} where it is missing or unreadable (nothing in it is needed to resume)."""
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def generator_iteration(self) -> int | None:
        """The iteration generator.keras was saved at, or None if unknown. A resumed run keeps the
        previous finish's generator there until it finishes itself; a state.json written before
        generator_iteration existed says only that a run finished (and so saved it) at its iteration."""
        state = self.read_state()
        saved = state.get("generator_iteration")
        if not isinstance(saved, int) and state.get("finished") is True:
            saved = state.get("iteration")
        return saved if isinstance(saved, int) and not isinstance(saved, bool) else None

    def record_checkpoint(self, iteration: int) -> None:
        """After checkpoint.npz reached ``iteration``: keeps what generator.keras holds."""
        self._write_state(iteration, finished=False, generator_iteration=self.generator_iteration())

    def record_generator(self, iteration: int, saved_at: int | None) -> None:
        """Say which iteration generator.keras holds: None just before it is replaced, the new one
        right after, so a kill in between leaves "unknown" rather than a wrong iteration."""
        self._write_state(iteration, finished=False, generator_iteration=saved_at)

    def mark_finished(self, iteration: int) -> None:
        """Called once every file of the run is written, never before: a tool that polls state.json
        must not see "finished" while generator.keras is still the previous one."""
        self._write_state(iteration, finished=True, generator_iteration=iteration)

    def _write_state(self, iteration: int, finished: bool, generator_iteration: int | None) -> None:
        state = {"iteration": iteration, "finished": finished}
        if generator_iteration is not None:
            state["generator_iteration"] = generator_iteration
        atomic_write_text(self.state, json.dumps(state) + "\n")

    # -- one process at a time ---------------------------------------------------------------------

    def lock(self) -> bool:
        """Hold RUN/.lock (an flock: the kernel lets go when the process dies, SIGKILL included) for
        this process, or a one-line DcganError if another process trains the run. Returns whether
        this call took it (False: the process already held it; only the taker should unlock)."""
        key = self.path.resolve()
        if key in self._held:
            return False
        try:
            fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DcganError(f"cannot write to {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DcganError(f"{self.path} is in use by another dcgan train"
                             f"{f' (pid {other})' if other.isdigit() else ''}: wait for it or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._held[key] = fd
        return True

    def unlock(self) -> None:
        fd = self._held.pop(self.path.resolve(), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def remove_stale_temp_files(self) -> int:
        """Delete the temporary files that writes killed mid-way left (``.NAME.*`` next to a file
        the run writes; see dcgan_export/atomic.py); call it holding the lock. Returns how many."""
        removed = 0
        for directory in (self.path, self.samples):
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if entry.is_file() and self._is_temp_name(entry.name, directory == self.samples):
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _is_temp_name(self, name: str, in_samples: bool) -> bool:
        """``.<target>.<mkstemp's 8 characters><suffix>`` for a target the run writes, and nothing
        else (an editor's ``.config.json.swp`` is the user's)."""
        match = _TEMP_NAME.fullmatch(name)
        if match is None:
            return False
        target = match.group(1)
        if in_samples:
            return target.startswith("iter_") and target.endswith(".png")
        return target in self.ARTIFACTS

    # -- starting over ---------------------------------------------------------------------------

    def claim(self, force: bool, dry_run: bool = False) -> None:
        """Make this the directory of a new run, locked by this process: create it, or (``force``)
        clear a previous run's files from it. Refuses a non-empty directory without ``force``, one
        that is not ours even with it, and one that another process is training in. ``dry_run``
        checks the same and changes nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise DcganError(f"--out {self.path} exists and is not a directory")
        if self.path.is_dir() and any(entry.name != self.LOCK for entry in self.path.iterdir()):
            if not force:
                raise DcganError(f"--out {self.path} already exists and is not empty: "
                                 f"use --resume {self.path} to continue it, or --force to start over")
            if not self.is_run():
                raise DcganError(f"--out {self.path} is not empty and is not a dcgan run directory "
                                 "(no config.json of ours): refusing to clear it, even with --force")
            if dry_run:
                return
            self.lock()
            for name in self.ARTIFACTS:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            self.remove_stale_temp_files()
        if dry_run:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DcganError(f"cannot write to --out {self.path}: {exc.strerror or exc}") from None
        self.lock()


def trim_log(path: Path, columns: list[str], last_iteration: int) -> list[list[str]]:
    """Cut a per-iteration CSV log back to the rows up to ``last_iteration`` (a killed run may
    have logged further, or half a line) and return them. Rows whose first column is not an
    iteration, whose width is wrong, whose other columns are not numbers, or whose iteration is not
    above the row before (an edit, a garbled line) are dropped; the header is rewritten."""
    if not path.exists():
        return []
    kept = []
    with open(path, newline="", errors="replace") as f:
        rows = csv.reader(f)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error:  # a line past the csv module's field limit: skip it
                continue
            if (len(row) == len(columns) and row[0].isascii() and row[0].isdigit() and int(row[0]) <= last_iteration
                    and all(_is_number(cell) for cell in row[1:])
                    and (not kept or int(row[0]) > int(kept[-1][0]))):
                kept.append(row)
    with atomic_open(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(kept)
    return kept


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

"""Where files are: what dcgan ships, whether an output path can be written (checked before any
slow work, so a typo costs nothing and touches nothing), and what a file holds (its sha256).
No TensorFlow, no onnxruntime."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import DcganError

_HERE = Path(__file__).resolve().parent


def shipped_dir() -> Path:
    """The shipped models and recipes: inside the installed package (``dcgan_export/shipped/``),
    else ``models/`` of a source checkout, so one lookup serves wheels and checkouts alike."""
    for candidate in (_HERE / "shipped", _HERE.parent / "models"):
        if candidate.is_dir():
            return candidate
    raise DcganError("no shipped models found (looked in the package's shipped/ and in models/)")


def shipped_file(filename: str) -> Path:
    for candidate in (_HERE / "shipped" / filename, _HERE.parent / "models" / filename):
        if candidate.is_file():
            return candidate
    raise DcganError(f"no shipped {filename} found (looked in the package's shipped/ and in models/)")


def web_dir() -> Path | None:
    """The browser page (examples/web): inside the installed package (``dcgan_export/web/``),
    else in a source checkout; None where neither has it."""
    for candidate in (_HERE / "web", _HERE.parent / "examples" / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def check_output_file(out: str | os.PathLike, option: str, suffixes: tuple[str, ...] | None = None,
                      protect: dict | None = None) -> Path:
    """``out`` as a Path if a file can be written there, else a one-line DcganError: it is not a
    directory, none of the input files in ``protect`` ({what it is: path}), has one of
    ``suffixes`` (when given), and its directory exists and is writable."""
    path = Path(out)
    if path.is_dir():
        raise DcganError(f"{option} {path}: is a directory; give a file name")
    for what, other in (protect or {}).items():
        if other is not None and path.exists() and Path(other).exists() and os.path.samefile(path, other):
            raise DcganError(f"{option} {path}: is the {what}; it would be overwritten")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise DcganError(f"{option} must end in {' or '.join(suffixes)}, got {path}")
    check_writable_dir(path.parent if str(path.parent) else Path("."), option)
    return path


def check_writable_dir(directory: Path, option: str) -> None:
    if not directory.exists():
        raise DcganError(f"{option}: directory {directory} does not exist")
    if not directory.is_dir():
        raise DcganError(f"{option}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DcganError(f"{option}: directory {directory} is not writable")


def existing_ancestor(path: Path) -> Path:
    """The nearest directory above ``path`` that exists (where a new directory would be made)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """A file's sha256, read in 1 MB blocks: provenance records for data and models."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

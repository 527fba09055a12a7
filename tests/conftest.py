"""Shared fixtures; shared functions are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_tiny_generator


@pytest.fixture(scope="session")
def tiny_generator_onnx(tmp_path_factory) -> Path:
    """A hand-built ONNX generator with the exported contract: ``z`` [N, 100] -> ``images``
    float32 [N, 28, 28, 1] in [-1, 1] and ``pixels`` uint8 [N, 28, 28]."""
    return make_tiny_generator(tmp_path_factory.mktemp("tiny") / "tiny_generator.onnx")


@pytest.fixture(scope="session", autouse=True)
def folder_cache(tmp_path_factory):
    """Decoded image folders are cached under a temporary directory, never the user's ~/.cache
    (subprocesses inherit it through the environment)."""
    import os

    path = tmp_path_factory.mktemp("dcgan-cache")
    before = os.environ.get("DCGAN_CACHE_DIR")
    os.environ["DCGAN_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("DCGAN_CACHE_DIR", None)
    else:
        os.environ["DCGAN_CACHE_DIR"] = before

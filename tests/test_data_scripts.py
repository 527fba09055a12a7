"""The scripts that make real data sets from Debian packages (skipped where a package is missing)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dcgan_export import datasets
from helpers import ROOT

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"


def run_script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (datasets.FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_fashion_class_folders_load_back_with_their_labels(tmp_path):
    result = run_script("make_fashion_folders.py", tmp_path / "fashion", "--limit", "3")
    assert result.returncode == 0 and "Wrote 30 images in 10 class folders" in result.stdout, result.stderr
    data = datasets.load(str(tmp_path / "fashion"), options=datasets.ImageOptions(image_size=28))
    assert data.image_shape == (28, 28, 1) and len(data) == 30
    assert data.class_names[:3] == ("ankle-boot", "bag", "coat") and np.bincount(data.labels).tolist() == [3] * 10
    original = datasets.load("fashion-mnist")
    first_bag = original.images[np.flatnonzero(original.labels == 8)[0]]
    np.testing.assert_array_equal(data.images[data.labels.tolist().index(1)], first_bag)  # pixels survive as they were


@pytest.mark.skipif(importlib.util.find_spec("fontTools") is None or not __import__("os").path.exists(EMOJI_FONT),
                    reason="needs fontTools (the [tools] extra) and Debian's fonts-noto-color-emoji")
def test_emoji_folder_is_rgb_squares(tmp_path):
    result = run_script("make_emoji_folder.py", tmp_path / "emoji", "--size", "16")
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "emoji").glob("*.png"))
    assert len(files) > 3000 and not list((tmp_path / "emoji").glob(".*"))
    image = Image.open(files[100])
    assert image.mode == "RGB" and image.size == (16, 16)
    assert run_script("make_emoji_folder.py", tmp_path / "x", "--size", "4").returncode == 2

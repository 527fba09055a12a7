"""Training on a folder of the user's own images: any size the networks can make, grey or RGB,
class sub-folders recorded as labels, resumable, exported and sampled in the same shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers import FAST, dcgan_in_process, loss_values

COLOURS = {"blue": (40, 60, 220), "red": (220, 40, 40)}


def shapes_folder(root, n_per_class: int = 12, grey: bool = False):
    """Class folders of ellipses on a light ground, in assorted sizes and modes."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            image = Image.new("RGB", (int(rng.integers(24, 60)), int(rng.integers(24, 60))), (240, 240, 230))
            x, y, r = int(rng.integers(0, 10)), int(rng.integers(0, 10)), int(rng.integers(8, 16))
            ImageDraw.Draw(image).ellipse([x, y, x + r, y + r], fill=colour)
            image = image.convert("L") if grey else image.convert(("RGB", "RGBA", "P")[i % 3])
            image.save(root / name / f"{i}.png")
    return root


def train(*args, capsys):
    code, out, err = dcgan_in_process("train", *args, capsys=capsys)
    assert code == 0, err
    return out, err


def test_an_rgb_class_folder_trains_and_records_its_shape_and_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    data = shapes_folder(tmp_path / "shapes")
    run = tmp_path / "run"
    _, err = train("--data", str(data), "--image-size", "16", "--iterations", "4", *FAST, "--sample-every", "2",
                   "--out", str(run), capsys=capsys)
    assert "decoded 24 images to 16x16" in err
    record = json.loads((run / "config.json").read_text())
    assert record["data"]["image_shape"] == [16, 16, 3] and record["data"]["class_names"] == ["blue", "red"]
    assert record["options"]["image_size"] == 16
    grid = Image.open(sorted((run / "samples").glob("iter_*.png"))[-1])
    assert grid.mode == "RGB" and grid.size == (2 + 5 * 18, 2 + 5 * 18)
    import keras

    generator = keras.models.load_model(run / "generator.keras")
    assert tuple(generator.output_shape) == (None, 16, 16, 3)
    # a resume reads the folder from the cache and carries on exactly
    _, err = train("--resume", str(run), "--iterations", "6", "--quiet", capsys=capsys)
    assert "images from the cache" in err
    straight = tmp_path / "straight"
    train("--data", str(data), "--image-size", "16", "--iterations", "6", *FAST, "--out", str(straight), capsys=capsys)
    assert loss_values(run) == loss_values(straight)


def test_a_grey_folder_trains_one_channel_and_channels_can_be_forced(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    data = shapes_folder(tmp_path / "grey", grey=True)
    plan = json.loads(dcgan_in_process("train", "--data", str(data), "--image-size", "20", "--batch-size", "8",
                                       "--out", str(tmp_path / "a"), "--dry-run", capsys=capsys)[1])
    assert plan["data"]["images"] == 24
    train("--data", str(data), "--image-size", "20", "--iterations", "2", *FAST, "--out", str(tmp_path / "g"),
          capsys=capsys)
    assert json.loads((tmp_path / "g" / "config.json").read_text())["data"]["image_shape"] == [20, 20, 1]
    train("--data", "mnist-8k", "--channels", "3", "--iterations", "2", *FAST, "--out", str(tmp_path / "m"),
          capsys=capsys)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["data"]["image_shape"] == [28, 28, 3]


@pytest.mark.parametrize("args, message", [
    (["--image-size", "30"], "--image-size must be one the networks can make"),
    (["--channels", "2"], "--channels must be 1 or 3"),
    (["--background", "teal"], "--background must be black, white or #rrggbb"),
    (["--width-multiplier", "0"], "--width-multiplier must be in (0, 8]"),
    (["--class-guidance", "1"], "--class-guidance uses a digit classifier of 28x28x1 images"),
])
def test_bad_folder_options_are_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    data = shapes_folder(tmp_path / "shapes", n_per_class=2)
    code, _, err = dcgan_in_process("train", "--data", str(data), "--image-size", "16", *args,
                                    "--out", str(tmp_path / "run"), capsys=capsys)
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert code == 2 and len(errors) == 1 and message in errors[0] and err.strip().splitlines()[-1] == errors[0], err
    assert not (tmp_path / "run").exists()


def test_image_size_applies_to_folders_only(tmp_path, capsys):
    code, _, err = dcgan_in_process("train", "--image-size", "32", "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2 and "mnist-8k/train holds 28x28 images: --image-size 32 applies to folders of images only" in err


def test_a_corrupt_file_among_good_ones_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    data = shapes_folder(tmp_path / "shapes")
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = dcgan_in_process("train", "--data", str(data), "--image-size", "16", *FAST,
                                    "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2 and "broken.png: not a readable image" in err and "--skip-bad" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()

"""A folder of the user's own images (dcgan_export/image_folder.py): found, decoded in any Pillow
mode, cropped and resized, labelled by sub-folder, cached, and bad files named in one line."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dcgan_export.errors import DcganError
from dcgan_export.image_folder import decode_image, list_images, load_folder


def shape_image(mode: str, size=(40, 30), colour=(200, 40, 40), seed=0) -> Image.Image:
    """A filled ellipse on a plain ground, in ``mode``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (20, 20, 20))
    x0, y0 = rng.integers(0, size[0] // 3), rng.integers(0, size[1] // 3)
    ImageDraw.Draw(image).ellipse([x0, y0, x0 + size[0] // 2, y0 + size[1] // 2], fill=colour)
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.new("L", size, 128))
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def make_folder(root, files: dict) -> None:
    for name, image in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, bytes):
            path.write_bytes(image)
        else:
            image.save(path)


def load(root, cache, **options):
    return load_folder(root, options.pop("image_size", 16), cache_dir=cache, **options)


def test_every_mode_and_format_decodes_to_squares_of_the_asked_size(tmp_path):
    files = {"a.png": shape_image("L"), "b.jpg": shape_image("RGB"), "c.png": shape_image("RGBA"),
             "d.gif": shape_image("P"), "e.bmp": shape_image("RGB", (16, 64)), "f.webp": shape_image("RGB"),
             "g.PNG": shape_image("LA"), "sub/h.png": shape_image("I;16", (30, 30)), "notes.txt": b"not an image"}
    make_folder(tmp_path / "imgs", files)
    data = load(tmp_path / "imgs", tmp_path / "cache", image_size=16)
    assert data.images.shape == (8, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.labels is None and data.class_names is None  # images in the top folder: unlabelled
    red = data.images[1].astype(int)  # the JPEG's ellipse is red, its ground dark
    assert red[..., 0].max() > 150 and red[..., 1].max() < 120


def test_a_grey_folder_gives_one_channel_and_channels_can_be_forced(tmp_path):
    make_folder(tmp_path / "g", {f"{i}.png": shape_image("L", seed=i) for i in range(3)})
    assert load(tmp_path / "g", tmp_path / "c").images.shape == (3, 16, 16)
    assert load(tmp_path / "g", tmp_path / "c", channels=3).images.shape == (3, 16, 16, 3)
    make_folder(tmp_path / "rgb", {f"{i}.png": shape_image("RGB", seed=i) for i in range(3)})
    grey = load(tmp_path / "rgb", tmp_path / "c", channels=1).images
    colour = load(tmp_path / "rgb", tmp_path / "c", channels=3).images
    expected = np.asarray([np.asarray(Image.fromarray(c).convert("L")) for c in colour])
    assert grey.shape == (3, 16, 16) and np.abs(grey.astype(int) - expected).max() <= 1


def test_crop_is_centred_and_keeps_the_aspect_ratio(tmp_path):
    wide = Image.new("RGB", (96, 32), (0, 0, 255))
    wide.paste((255, 0, 0), (32, 0, 64, 32))  # a red square in the middle third
    make_folder(tmp_path / "w", {"wide.png": wide})
    image = load(tmp_path / "w", tmp_path / "c", image_size=16).images[0]
    # only the centre square is left (Lanczos reaches one pixel past the crop box at its edges)
    assert (image[:, 1:-1, 0] > 250).all() and (image[:, 1:-1, 2] < 5).all() and (image[..., 0] > 200).all()


def test_transparency_lands_on_the_background_you_choose(tmp_path):
    clear = Image.new("RGBA", (32, 32), (255, 255, 255, 0))
    make_folder(tmp_path / "t", {"clear.png": clear, "other.png": shape_image("RGB")})
    black = load(tmp_path / "t", tmp_path / "c").images[0]
    white = load(tmp_path / "t", tmp_path / "c", background=(255, 255, 255)).images[0]
    assert black.max() == 0 and white.min() == 255


def test_exif_orientation_is_applied(tmp_path):
    tall = Image.new("RGB", (32, 64), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 0, 32, 32))  # white top half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    sideways = tall.rotate(90, expand=True)
    sideways.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright = decode_image(tmp_path / "photo.jpg", 16)
    assert upright.shape == (16, 16, 3)
    # upright again: white above black (unturned, the centre crop would split left from right)
    assert upright[:7].min() > 200 and upright[9:].max() < 50


def test_class_folders_are_labels_with_their_names(tmp_path):
    files = {f"{name}/{i}.png": shape_image("L", seed=i) for name in ("cats", "dogs", "emu") for i in range(2)}
    make_folder(tmp_path / "lab", files)
    data = load(tmp_path / "lab", tmp_path / "c")
    assert data.class_names == ("cats", "dogs", "emu")
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2] and data.labels.dtype == np.int64
    make_folder(tmp_path / "lab", {"loose.png": shape_image("L")})  # an image outside the class folders
    assert load(tmp_path / "lab", tmp_path / "c").labels is None


def test_the_cache_is_used_and_follows_the_folder(tmp_path, monkeypatch):
    make_folder(tmp_path / "f", {f"{i}.png": shape_image("RGB", seed=i) for i in range(4)})
    lines = []
    first = load_folder(tmp_path / "f", 16, cache_dir=tmp_path / "c", echo=lines.append)
    assert "decoded 4 images" in lines[0] and "cached the decoded images" in lines[1]
    import dcgan_export.image_folder as image_folder

    monkeypatch.setattr(image_folder, "decode_image", lambda *a: pytest.fail("decoded again"))
    lines.clear()
    again = load_folder(tmp_path / "f", 16, cache_dir=tmp_path / "c", echo=lines.append)
    assert "from the cache" in lines[0] and again.sha256 == first.sha256
    np.testing.assert_array_equal(again.images, first.images)
    monkeypatch.undo()
    shape_image("RGB", seed=9).save(tmp_path / "f" / "new.png")  # the folder changed: decoded afresh
    assert len(load(tmp_path / "f", tmp_path / "c").images) == 5
    os.chmod(tmp_path / "c", 0o500)  # an unwritable cache costs time, not the run
    try:
        assert len(load(tmp_path / "f", tmp_path / "c", image_size=20).images) == 5
    finally:
        os.chmod(tmp_path / "c", 0o700)


@pytest.mark.parametrize("bad, message", [
    (b"this is not a png", "not a readable image"),
    ("TRUNCATED", "not a readable image"),
    ("TINY", "7x7 is smaller than half of --image-size 16"),
])
def test_a_bad_file_is_named_in_one_line_or_skipped_and_counted(tmp_path, bad, message):
    good = {f"{i:04d}.png": shape_image("RGB", seed=i) for i in range(30)}
    if bad == "TRUNCATED":
        full = tmp_path / "full.png"
        shape_image("RGB", (64, 64)).save(full)
        bad = full.read_bytes()[:200]
    elif bad == "TINY":
        bad = shape_image("RGB", (7, 7))
    make_folder(tmp_path / "f", {**good, "zz/../broken.png": bad})
    with pytest.raises(DcganError, match=f"broken.png: .*{message}.*--skip-bad") as error:
        load(tmp_path / "f", tmp_path / "c")
    assert "\n" not in str(error.value)
    lines = []
    data = load_folder(tmp_path / "f", 16, skip_bad=True, cache_dir=tmp_path / "c", echo=lines.append)
    assert len(data.images) == 30 and data.skipped == (str(tmp_path / "f" / "broken.png"),)
    assert any("skipped 1 bad image file" in line for line in lines)


@pytest.mark.parametrize("options, message", [
    (dict(image_size=30), "--image-size must be one the networks can make"),
    (dict(image_size=8), "from 16 to 128"),
    (dict(image_size=256), "from 16 to 128"),
    (dict(channels=2), "--channels must be 1 or 3"),
    (dict(background=(0, 0, 300)), "--background must be three values in 0..255"),
])
def test_bad_options_are_refused_before_any_decoding(tmp_path, options, message):
    make_folder(tmp_path / "f", {"a.png": shape_image("RGB")})
    with pytest.raises(DcganError, match=message):
        load(tmp_path / "f", tmp_path / "c", **options)
    assert not (tmp_path / "c").exists()


def test_empty_and_missing_folders_and_the_memory_ceiling(tmp_path, monkeypatch):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DcganError, match="no images in it"):
        list_images(tmp_path / "empty")
    with pytest.raises(DcganError, match="not a directory"):
        list_images(tmp_path / "missing")
    import dcgan_export.image_folder as image_folder

    make_folder(tmp_path / "f", {f"{i}.png": shape_image("RGB", seed=i) for i in range(3)})
    monkeypatch.setattr(image_folder, "MAX_BYTES", 3 * 16 * 16 * 3 - 1)
    with pytest.raises(DcganError, match=r"3 images at 16x16 take 0.0 GB decoded, over the .* --channels 1"):
        load(tmp_path / "f", tmp_path / "c")
    assert len(load(tmp_path / "f", tmp_path / "c", channels=1).images) == 3  # a third of the bytes fits


def test_hidden_folders_are_neither_images_nor_classes(tmp_path):
    make_folder(tmp_path / "f", {"cats/a.png": shape_image("L"), "dogs/b.png": shape_image("L", seed=1),
                                 ".thumbnails/c.png": shape_image("L", seed=2), "cats/.d.png": shape_image("L")})
    listing = list_images(tmp_path / "f")
    assert listing.class_names == ("cats", "dogs") and [p.name for p in listing.files] == ["a.png", "b.png"]

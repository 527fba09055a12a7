"""Image grids and PNG/GIF encoding (Pillow), shared by sampling, training previews and serving."""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np

from .atomic import atomic_open


def make_grid(pixels: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 images [n, h, w] (grey) or [n, h, w, 3] (RGB) into one [H, W] or [H, W, 3] image
    with ``padding`` black pixels between and around them. ``nrow`` images per row; default
    ceil(sqrt(n)), a square-ish grid."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] != 3) or len(pixels) == 0:
        raise ValueError(f"expected images of shape (n, h, w) or (n, h, w, 3) with n >= 1, got {pixels.shape}")
    n, h, w = pixels.shape[:3]
    cols = nrow or math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, *pixels.shape[3:]),
                    dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y:y + h, x:x + w] = pixels[i]
    return grid


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an [h, w] or [h, w, 3] image by a whole factor: every pixel
    becomes a scale x scale square, so nothing is smoothed or invented."""
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 array [h, w] (grey) or [h, w, 3] (RGB) as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        f.write(png_bytes(image))


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], duration_ms: int = 200) -> None:
    """An animated GIF of equally sized uint8 frames, grey [h, w] or RGB [h, w, 3] (training progress)."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    with atomic_open(path, "wb") as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)

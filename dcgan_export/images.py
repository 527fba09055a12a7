"""Image grids and PNG/GIF encoding (Pillow), shared by sampling, training previews and serving."""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np

from .atomic import atomic_open, atomic_path


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


def ffmpeg_path() -> str:
    """The ffmpeg an MP4 is encoded with, or a one-line DcganError saying how to get one."""
    import shutil

    from .errors import DcganError

    found = shutil.which("ffmpeg")
    if found is None:
        raise DcganError("an .mp4 needs ffmpeg on PATH (apt-get install ffmpeg, brew install ffmpeg); "
                         "or write an animated .gif")
    return found


def write_mp4(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 12.5) -> None:
    """An H.264 MP4 (yuv420p, what every player takes) of equally sized uint8 frames, grey or RGB,
    encoded by ffmpeg; frames are padded with black to even sides, which yuv420p needs."""
    import subprocess

    from .errors import DcganError

    ffmpeg = ffmpeg_path()
    rgb = [np.repeat(f[..., None], 3, axis=-1) if f.ndim == 2 else f for f in frames]
    h, w = rgb[0].shape[:2]
    padded = [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0))) for f in rgb]
    with atomic_path(path, suffix=".mp4") as tmp:
        command = [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{w + w % 2}x{h + h % 2}", "-r", f"{fps:g}", "-i", "-",
                   "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart", str(tmp)]
        result = subprocess.run(command, input=b"".join(np.ascontiguousarray(f, np.uint8).tobytes() for f in padded),
                                capture_output=True)
        if result.returncode != 0:
            why = (result.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise DcganError(f"ffmpeg could not write {path}: {why[:200]}")


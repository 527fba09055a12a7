"""A folder of the user's own images as training data: found, decoded, resized and cached once.

The folder is searched recursively for PNG, JPEG, WebP, BMP and GIF files (other files are
ignored and counted). Sub-folders of the top folder that hold every image are class labels,
named after them, the ImageFolder convention; images directly in the top folder make the set
unlabelled. Each image is turned upright (EXIF), its transparency composited onto
``background``, cropped to a centred square and resized to ``image_size`` (Pillow's
``ImageOps.fit``, Lanczos). ``channels`` 1 or 3; by default 1 when every image is grey.

Decoding thousands of files takes a while, so the result (uint8, with labels and class names)
is cached in ``cache_dir`` under a key made of the folder's file list (names, sizes, mtimes) and
the options: the next run with the same folder loads in a fraction of a second.

Pillow and numpy only: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_path
from .contract import check_image_size, luma
from .errors import DcganError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# Decoded uint8 pixels held in memory for training, at most: 100,000 images at 64x64x3 (1.23 GB).
# The decode fills one array of this size in place, and nothing copies it whole.
MAX_BYTES = 100_000 * 64 * 64 * 3
ANNOUNCE_FROM = 2000  # folders this large take seconds to decode: the progress output says so first
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused


@dataclasses.dataclass(frozen=True)
class FolderData:
    images: np.ndarray  # uint8 [n, S, S] (grey) or [n, S, S, 3]
    labels: np.ndarray | None  # int64 [n], indices into class_names
    class_names: tuple[str, ...] | None
    sha256: str  # of the decoded pixels and labels: what the run trained on
    skipped: tuple[str, ...]  # bad files left out under skip_bad


@dataclasses.dataclass(frozen=True)
class Listing:
    files: list[Path]
    labels: list[int] | None
    class_names: tuple[str, ...] | None
    ignored: int  # files that are not images by their suffix


def default_cache_dir() -> Path:
    """$DCGAN_CACHE_DIR, else $XDG_CACHE_HOME/dcgan, else ~/.cache/dcgan."""
    if os.environ.get("DCGAN_CACHE_DIR"):
        return Path(os.environ["DCGAN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan"


def list_images(root: Path) -> Listing:
    """Every image file under ``root`` in a stable order, with ImageFolder labels where they apply."""
    if not root.is_dir():
        raise DcganError(f"{root}: not a directory")
    files, ignored = [], 0
    for directory, subdirs, names in os.walk(root, onerror=_raise_walk_error):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))  # .thumbnails, .git: not images
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES):
                files.append(Path(directory) / name)
            else:
                ignored += 1
    if not files:
        raise DcganError(f"{root}: no images in it (looked for {', '.join(IMAGE_SUFFIXES)}, in sub-folders too)")
    tops = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None for f in files]
    if None in tops or len(set(tops)) < 2:
        return Listing(files, None, None, ignored)
    class_names = tuple(sorted(set(tops)))
    index = {name: i for i, name in enumerate(class_names)}
    return Listing(files, [index[t] for t in tops], class_names, ignored)


def _raise_walk_error(exc: OSError) -> None:
    raise DcganError(f"{exc.filename}: cannot read it ({exc.strerror})")


def load_folder(root: str | os.PathLike, image_size: int, channels: int | None = None,
                background: tuple[int, int, int] = (0, 0, 0), skip_bad: bool = False,
                cache_dir: str | os.PathLike | None = None, echo: Callable[[str], None] | None = None,
                write_cache: bool = True) -> FolderData:
    """The folder's images as uint8 arrays of ``image_size`` squares, from the cache when it has them.

    Bad files (not an image, truncated, smaller than half of ``image_size``) are a one-line
    DcganError naming the file, or with ``skip_bad`` left out and counted.
    """
    root = Path(root)
    check_image_size(image_size)
    if channels not in (None, 1, 3):
        raise DcganError(f"--channels must be 1 or 3, got {channels}")
    if len(background) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in background):
        raise DcganError(f"--background must be three values in 0..255, got {background}")
    listing = list_images(root)
    pixel_bytes = len(listing.files) * image_size * image_size * (channels or 3)
    if pixel_bytes > MAX_BYTES:
        raise DcganError(f"{root}: {len(listing.files):,} images at {image_size}x{image_size} take "
                         f"{pixel_bytes / 1e9:.1f} GB decoded, over the {MAX_BYTES / 1e9:.1f} GB this trainer "
                         "holds in memory: use a smaller --image-size, --channels 1, or a subset of the folder")
    say = echo or (lambda line: None)
    key = _cache_key(root, listing, image_size, channels, background, skip_bad)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = _read_cache(cache / f"{key}.npz")
    if cached is not None:
        say(f"{root}: {len(cached.images):,} images from the cache ({cache / f'{key}.npz'})")
        return cached
    what = f"{len(listing.files):,} images to {image_size}x{image_size}" + (
        f" ({listing.ignored} other files ignored)" if listing.ignored else "")
    if len(listing.files) >= ANNOUNCE_FROM:  # seconds of work: say so first
        say(f"{root}: decoding {what}")
    data = _decode_all(listing, image_size, channels, background, skip_bad, say)
    if len(listing.files) < ANNOUNCE_FROM:  # said after, so a bad file's error is the only line
        say(f"{root}: decoded {what}")
    if write_cache and _write_cache(cache / f"{key}.npz", data):
        say(f"{root}: cached the decoded images in {cache / f'{key}.npz'}")
    return data


def _decode_all(listing: Listing, size: int, channels: int | None, background, skip_bad: bool, say) -> FolderData:
    # One array of the final size, filled in place: memory stays at what training will hold.
    images = np.empty((len(listing.files), size, size, *(() if channels == 1 else (3,))), dtype=np.uint8)
    kept, skipped = [], []
    for i, path in enumerate(listing.files):
        try:
            rgb = decode_image(path, size, background)
        except BadImage as exc:
            if not skip_bad:
                raise DcganError(f"{exc} (--skip-bad leaves such files out)") from None
            skipped.append(str(path))
            continue
        images[len(kept)] = luma(rgb) if channels == 1 else rgb
        kept.append(i)
    if skipped:
        say(f"skipped {len(skipped)} bad image file{'s' * (len(skipped) > 1)}, e.g. {skipped[0]}")
    if not kept:
        raise DcganError(f"no usable images: all {len(listing.files)} files were bad")
    images = images[:len(kept)]
    if channels is None and _all_grey(images):
        images = np.ascontiguousarray(images[..., 0])  # every image is grey: one channel
    labels = None if listing.labels is None else np.asarray([listing.labels[i] for i in kept], dtype=np.int64)
    digest = hashlib.sha256(np.ascontiguousarray(images))  # hashed in place, not copied
    if labels is not None:
        digest.update(labels.tobytes())
    return FolderData(images, labels, listing.class_names, digest.hexdigest(), tuple(skipped))


def _all_grey(images: np.ndarray, chunk: int = 4096) -> bool:
    """Whether R = G = B in every pixel, a few thousand images at a time (a whole-array comparison
    would hold two more arrays the size of a channel)."""
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        if not ((part[..., 0] == part[..., 1]).all() and (part[..., 1] == part[..., 2]).all()):
            return False
    return True


class BadImage(Exception):
    """A file that cannot be one of the training images, and why (names the file)."""


def decode_image(path: Path, size: int, background=(0, 0, 0)) -> np.ndarray:
    """One file as a uint8 [size, size, 3] array: upright, alpha composited, centre-cropped, resized."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.seek(0)  # a GIF's first frame
                image.load()  # decodes now: a truncated file fails here, not later
                image = ImageOps.exif_transpose(image)
                rgb = _flatten(image, background)
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, struct.error, ...)
        raise BadImage(f"{path}: not a readable image ({first_line(exc)})") from None
    width, height = rgb.size
    if min(width, height) * 2 < size:
        raise BadImage(f"{path}: {width}x{height} is smaller than half of --image-size {size}")
    fitted = ImageOps.fit(rgb, (size, size), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8)


def _flatten(image, background):
    """Any Pillow mode as RGB, transparency composited onto ``background``."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array / top * 255.0), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


# -- the cache -----------------------------------------------------------------------------------


def _cache_key(root: Path, listing: Listing, size: int, channels, background, skip_bad: bool) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, size, channels, list(background), skip_bad]).encode())
    for path in listing.files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()[:32]


def _read_cache(path: Path) -> FolderData | None:
    """The cached decode, or None where there is none or it cannot be read (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            images = cache["images"]
            labels = cache["labels"] if "labels" in cache.files else None
            names = tuple(str(n) for n in cache["class_names"]) if "class_names" in cache.files else None
            meta = json.loads(str(cache["meta"]))
        return FolderData(images, labels, names, meta["sha256"], tuple(meta["skipped"]))
    except Exception:
        return None


def _write_cache(path: Path, data: FolderData) -> bool:
    """Write the cache atomically; a cache that cannot be written only costs the next run time."""
    arrays = {"images": data.images, "meta": np.asarray(json.dumps({"sha256": data.sha256, "skipped": data.skipped}))}
    if data.labels is not None:
        arrays["labels"] = data.labels
        arrays["class_names"] = np.asarray(data.class_names)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    except OSError:
        return False
    return True

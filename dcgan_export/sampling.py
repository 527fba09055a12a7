"""``dcgan sample``: validate the request, then stream images from a Sampler to disk.

Every check that can fail on user input runs before the model produces a single image, and
every file is written through a temporary file, so a bad request leaves the disk as it was.

A class-conditional model samples one class (``--class 7``, ``--class dog``), or with ``--class
all`` one row per class, every row the same noise (images 0 .. n-1 of the seed), so a column shows
one style through every class. Without ``--class`` image i is class i % K, as in the Sampler.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .contract import check_float_array
from .errors import DcganError
from .images import ffmpeg_path, make_grid, png_bytes, upscale, write_gif, write_mp4, write_png
from .paths import check_output_file, check_writable_dir, existing_ancestor
from .progress import counted
from .noise import check_truncation
from .runtime import Sampler, resolve_seed

MAX_SAMPLES = 10_000_000
MAX_GRID = 65_536  # a 256 x 256 grid; past that, a grid is no longer a picture anyone looks at
DEFAULT_N = 25
DEFAULT_PER_CLASS = 10  # --class all without --n: rows of 10
ALL_CLASSES = "all"
DEFAULT_SCALE = 4  # a 28-pixel digit is too small to look at: PNGs are enlarged 4x unless asked
MAX_SCALE = 16
MAX_PICTURE_BYTES = 256 * 2**20  # a grid, or all the frames of a walk, is held in memory until written


@dataclasses.dataclass
class SampleRequest:
    n: int | None = None
    out: str | None = None
    out_dir: str | None = None
    model: str | None = None
    seed: int | None = None
    noise: str | None = None
    nrow: int | None = None
    fmt: str | None = None
    batch_size: int = 256
    threads: int | None = None
    scale: int = DEFAULT_SCALE
    truncation: float | None = None
    interpolate: str | None = None  # "SEED_A,SEED_B[,...]": an animated GIF walking between them
    frames: int = 16
    label: str | None = None  # --class: an index, a class name, or "all" (one row per class)


def run_sample(req: SampleRequest) -> str:
    """Carry out the request; return the line to show the user."""
    if not 1 <= req.scale <= MAX_SCALE:
        raise DcganError(f"--scale must be between 1 and {MAX_SCALE}, got {req.scale}")
    check_truncation(req.truncation)
    if req.interpolate is not None:
        return _run_walk(req)
    fmt = _check_destination(req)
    noise = _load_noise(req.noise) if req.noise else None
    n = _count(req, noise)
    if req.nrow is not None and req.nrow < 1:
        raise DcganError(f"--nrow must be >= 1, got {req.nrow}")
    if req.nrow is not None and (req.out_dir or fmt == "npy"):
        raise DcganError("--nrow only applies to a grid PNG")
    _check_nrow_and_class(req)
    if req.batch_size < 1:
        raise DcganError(f"--batch-size must be >= 1, got {req.batch_size}")
    if fmt == "png" and not req.out_dir and n > MAX_GRID:
        raise DcganError(f"a grid of {n} images is too large (at most {MAX_GRID}): use --format npy or --out-dir")

    sampler = Sampler(req.model, threads=req.threads)
    label = check_class(req.label, sampler)
    total, nrow = n, req.nrow
    if label == ALL_CLASSES:  # n images per class, a row each
        total, nrow = n * sampler.num_classes, n
        limit = MAX_GRID if fmt == "png" and not req.out_dir else MAX_SAMPLES
        if total > limit:
            raise DcganError(f"--class all: {sampler.num_classes} classes of {n} images is {total:,} images, "
                             f"over {limit:,}: use a smaller --n")
    if fmt == "png" and not req.out_dir:
        size = grid_bytes(total, nrow, sampler.image_shape, req.scale)
        if size > MAX_PICTURE_BYTES:
            raise DcganError(f"a grid of {total} images at --scale {req.scale} is {size / 1e6:.0f} MB: use a smaller "
                             "--scale, fewer images, --format npy or --out-dir")
    if noise is not None:
        noise = sampler.check_noise(noise)
        source = f"noise from {req.noise}"

        def images(labels):
            for i in range(0, n, req.batch_size):
                chunk = noise[i:i + req.batch_size]
                yield sampler.generate_pixels(chunk, sampler.cycle_labels(len(chunk), i) if labels is None else labels)
    else:
        seed = resolve_seed(req.seed)
        source = f"seed {seed}"

        def images(labels):
            return sampler.iter_batches(n, seed, req.batch_size, pixels=True, truncation=req.truncation,
                                        labels=labels)

    if label == ALL_CLASSES:
        batches = itertools.chain.from_iterable(images(k) for k in range(sampler.num_classes))
        source += f", one row of {n} per class"
    else:
        batches = images(label)
        source += "" if label is None else f", class {sampler.class_names[label]!r}"

    batches = counted(batches, total, "sampling")
    if req.out_dir:
        try:
            Path(req.out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DcganError(f"cannot write to --out-dir {req.out_dir}: {exc.strerror or exc}") from None
        written = _write_pngs(Path(req.out_dir), batches, total, req.scale)
        return f"Wrote {written} PNGs to {req.out_dir} ({source})"
    if fmt == "npy":
        _write_npy_stream(Path(req.out), batches, total, sampler.pixel_shape)
        return f"Wrote {req.out}: uint8 [{total}, {', '.join(map(str, sampler.pixel_shape))}] ({source})"
    write_png(req.out, upscale(make_grid(np.concatenate(list(batches)), nrow=nrow, padding=2), req.scale))
    return f"Wrote {req.out}: a grid of {total} images ({source})"


def check_class(choice: str | None, sampler: Sampler) -> int | str | None:
    """--class as a class index, ALL_CLASSES, or None (no --class); a one-line DcganError for a
    class the model does not have, or any --class on an unconditional model."""
    if choice is None:
        return None
    if sampler.classes is None:
        raise DcganError(f"--class: {sampler.model_path} is not class-conditional (trained without --conditional): "
                         "it has no classes to choose from")
    if choice != ALL_CLASSES and "," in choice and choice not in sampler.classes.names:
        raise DcganError(f"--class {choice[:40]}: a list of classes (one per seed) is for --interpolate walks")
    return ALL_CLASSES if choice == ALL_CLASSES else sampler.classes.index(choice)


def check_walk_classes(choice: str | None, sampler: Sampler, seeds: int) -> int | str | list[int] | None:
    """--class of a walk: as ``check_class``, or a list of one class per seed (``3,8``: from a 3
    at the first seed to an 8 at the second), on a model that can blend classes."""
    if choice is None or sampler.classes is None or "," not in choice or choice in sampler.classes.names:
        return check_class(choice, sampler)
    classes = [sampler.classes.index(part.strip()) for part in choice.split(",")]
    if len(classes) != seeds:
        raise DcganError(f"--class {choice[:40]}: give one class per seed of --interpolate ({seeds}), "
                         f"got {len(classes)}")
    try:
        sampler.check_can_blend()
    except DcganError as exc:
        raise DcganError(f"--class {choice[:40]}: {exc}") from None
    return classes


def _check_nrow_and_class(req: SampleRequest) -> None:
    if req.label == ALL_CLASSES and req.nrow is not None:
        raise DcganError("--class all makes one row per class: not with --nrow (--n sets the images per row)")


def grid_bytes(n: int, nrow: int | None, shape: tuple, scale: int) -> int:
    """Bytes of the PNG grid ``make_grid`` + ``upscale`` would build, before building it."""
    cols = min(nrow or math.ceil(math.sqrt(n)), n)
    rows = -(-n // cols)
    h, w, c = shape
    return (rows * (h + 2) + 2) * (cols * (w + 2) + 2) * c * scale**2


def _run_walk(req: SampleRequest) -> str:
    """--interpolate: an animated GIF (or an MP4, where ffmpeg is installed) whose frames walk from
    seed to seed (``--n`` walks side by side)."""
    from .interpolation import parse_seeds, walk_class_weights, walk_noise

    seeds = parse_seeds(req.interpolate)
    if req.noise is not None or req.seed is not None or req.out_dir is not None:
        raise DcganError("--interpolate takes its seeds itself: not with --seed, --noise or --out-dir")
    if not req.out or Path(req.out).suffix.lower() not in (".gif", ".mp4") or req.fmt is not None:
        raise DcganError("--interpolate writes an animated GIF or an MP4: --out NAME.gif or NAME.mp4 (and no --format)")
    video = Path(req.out).suffix.lower() == ".mp4"
    if video:
        ffmpeg_path()  # before any work
    walks = 1 if req.n is None else req.n
    if not 1 <= walks <= 64:
        raise DcganError(f"--n (walks side by side) must be between 1 and 64 with --interpolate, got {walks}")
    if req.nrow is not None and req.nrow < 1:
        raise DcganError(f"--nrow must be >= 1, got {req.nrow}")
    _check_nrow_and_class(req)
    check_output_file(Path(req.out), "--out", protect={"--model file": req.model})
    sampler = Sampler(req.model, threads=req.threads)
    label = check_walk_classes(req.label, sampler, len(seeds))
    # --class all: a row of the walks per class; a list of classes: every walk goes through them
    rows = sampler.num_classes if label == ALL_CLASSES else 1
    labels = (np.repeat(np.arange(rows), walks) if label == ALL_CLASSES
              else sampler.cycle_labels(walks) if label is None or isinstance(label, list) else label)
    count = (len(seeds) - 1) * req.frames + 1
    frame_bytes = grid_bytes(rows * walks, req.nrow or walks, sampler.image_shape, req.scale)
    if count * frame_bytes > MAX_PICTURE_BYTES:
        raise DcganError(f"a walk of {count} frames of {frame_bytes / 1e6:.1f} MB is over {MAX_PICTURE_BYTES / 1e6:.0f} MB: "
                         "use fewer seeds, --frames, --n or a smaller --scale")
    noise = walk_noise(sampler, seeds, req.frames, walks, req.truncation)
    weights = (walk_class_weights(label, req.frames, sampler.num_classes) if isinstance(label, list)
               else [None] * len(noise))
    frames = [upscale(make_grid(sampler.generate_pixels(np.tile(z, (rows, 1)), None if w is not None else labels,
                                                        class_weights=w),
                                nrow=req.nrow or walks, padding=2), req.scale)
              for z, w in zip(noise, weights)]
    write_mp4(req.out, frames, fps=12.5) if video else write_gif(req.out, frames, duration_ms=80)
    held = ("" if label is None else ", a row per class" if label == ALL_CLASSES
            else f", classes {' -> '.join(repr(sampler.class_names[k]) for k in label)}" if isinstance(label, list)
            else f", class {sampler.class_names[label]!r}")
    return (f"Wrote {req.out}: {len(frames)} frames, {walks} walk{'s' * (walks > 1)} through seeds "
            f"{', '.join(map(str, seeds))}{held}")


def _check_destination(req: SampleRequest) -> str:
    if req.out and req.out_dir:
        raise DcganError("give --out or --out-dir, not both")
    if not req.out and not req.out_dir:
        raise DcganError("say where to write: --out grid.png, --out images.npy or --out-dir DIR")
    if req.out_dir:
        if req.fmt == "npy":
            raise DcganError("--out-dir writes PNGs; use --out FILE.npy for --format npy")
        directory = Path(req.out_dir)
        if directory.exists() and not directory.is_dir():
            raise DcganError(f"--out-dir {directory} exists and is not a directory")
        check_writable_dir(existing_ancestor(directory), "--out-dir")  # created only once all checks pass
        return "png"
    out = Path(req.out)
    suffix = out.suffix.lower()
    # The format follows the suffix; any other suffix needs an explicit --format, so a typo
    # such as --out model.onnx cannot replace a file of another kind with an image.
    implied = {".png": "png", ".npy": "npy"}.get(suffix)
    if req.fmt and implied and req.fmt != implied:
        raise DcganError(f"--format {req.fmt} contradicts --out {out}: name it .{req.fmt}, or drop --format")
    fmt = req.fmt or implied
    if fmt is None:
        raise DcganError(f"--out {out}: use a .png or .npy name, or say --format png|npy")
    check_output_file(out, "--out", protect={"--model file": req.model, "--noise file": req.noise})
    return fmt


def _load_noise(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise DcganError(f"--noise {path}: no such file")
    try:
        noise = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DcganError(f"--noise {path}: not a readable .npy file ({type(exc).__name__})") from None
    if not isinstance(noise, np.ndarray) or not np.issubdtype(noise.dtype, np.floating):
        raise DcganError(f"--noise {path}: expected a float array [n, latent], got dtype {getattr(noise, 'dtype', '?')}")
    if noise.ndim != 2 or len(noise) == 0:
        raise DcganError(f"--noise {path}: expected shape [n, latent] with n >= 1, got {noise.shape}")
    return check_float_array(noise, f"--noise {path}", (noise.shape[1],))


def _count(req: SampleRequest, noise: np.ndarray | None) -> int:
    if noise is not None:
        if req.n is not None and req.n != len(noise):
            raise DcganError(f"--n {req.n} disagrees with --noise, which holds {len(noise)} vectors")
        if req.seed is not None:
            raise DcganError("give --seed or --noise, not both")
        if req.truncation is not None:
            raise DcganError("--truncation shapes the noise drawn from a seed; --noise is used as it is")
        return len(noise)
    n = (DEFAULT_PER_CLASS if req.label == ALL_CLASSES else DEFAULT_N) if req.n is None else req.n
    if not 1 <= n <= MAX_SAMPLES:
        raise DcganError(f"--n must be between 1 and {MAX_SAMPLES:,}, got {n}")
    return n


def _write_npy_stream(path: Path, batches, n: int, shape: tuple) -> None:
    """An .npy of uint8 [n, *shape], written chunk by chunk: memory stays bounded for any n."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (n, *shape)}
    with atomic_open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in batches:
            f.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())


def _write_pngs(directory: Path, batches, n: int, scale: int) -> int:
    width = max(6, len(str(n - 1)))
    index = 0
    for chunk in batches:
        for image in chunk:
            with atomic_open(directory / f"{index:0{width}d}.png", "wb") as f:
                f.write(png_bytes(upscale(image, scale)))
            index += 1
    return index

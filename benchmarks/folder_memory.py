"""Peak memory of `dcgan train` on a large folder of images: the decode (first run) and the
cached load (second run), each followed by a few training iterations.

Makes a folder of ``--images`` small PNGs (flat colours with a stripe, so files are tiny and
decoding is what costs), then runs ``dcgan train --data FOLDER --image-size SIZE`` twice in child
processes and reports each one's peak resident memory (ru_maxrss) and wall time, next to the
size of the decoded pixels. The default is the ceiling the trainer accepts: 100,000 images at
64x64x3, 1.23 GB of uint8.

    python benchmarks/folder_memory.py [--images 100000] [--size 64] [--backend tensorflow]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_description  # noqa: E402


def make_folder(folder: Path, count: int, size: int) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (size, size), (i % 251, (i * 7) % 253, (i * 13) % 255))
        ImageDraw.Draw(image).rectangle([i % size, 0, i % size + 3, size - 1], fill=(255 - i % 251, 40, 90))
        image.save(folder / f"{i:06d}.png")


def peak_of_child(command: list[str], env: dict) -> tuple[float, float]:
    """(peak resident GB, seconds) of one child process. ru_maxrss of RUSAGE_CHILDREN is the
    largest of all children so far, so each measurement runs in a fresh intermediate process."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "code = subprocess.call(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, code)")
    done = subprocess.run([sys.executable, "-c", probe, *command], env=env, capture_output=True, text=True)
    kib, seconds, code = done.stdout.split()[-3:]
    if code != "0":
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return int(kib) / 1024**2, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backend", default="tensorflow")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        t = time.perf_counter()
        make_folder(folder, args.images, args.size)
        print(f"made {args.images:,} PNGs of {args.size}x{args.size} in {time.perf_counter() - t:.0f} s")
        env = dict(os.environ, DCGAN_CACHE_DIR=str(Path(tmp) / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
        pixels = args.images * args.size * args.size * 3 / 1e9
        for label in ("decode + 3 iterations", "cached + 3 iterations"):
            command = [sys.executable, "-m", "dcgan_export.cli", "train", "--data", str(folder), "--image-size",
                       str(args.size), "--channels", "3", "--iterations", "3", "--batch-size", "16", "--quiet",
                       "--no-export", "--backend", args.backend, "--out", str(Path(tmp) / "run"), "--force"]
            peak, seconds = peak_of_child(command, env)
            print(f"{label:<24} peak RSS {peak:.2f} GB ({pixels:.2f} GB of pixels), {seconds:.0f} s")


if __name__ == "__main__":
    main()

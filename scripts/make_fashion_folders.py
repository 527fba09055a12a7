"""Write Fashion-MNIST (Debian's ``dataset-fashion-mnist``) as class folders of PNGs, to train
on labelled data through the folder loader as a user's own pictures would be:

    python scripts/make_fashion_folders.py data/fashion --limit 1000
    dcgan train --data data/fashion --image-size 28 --out runs/fashion
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write CLASS/NNNNN.png into (created)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per class [all]")
    args = parser.parse_args(argv)
    from PIL import Image

    from dcgan_export import datasets
    from dcgan_export.errors import DcganError

    try:
        data = datasets.load("fashion-mnist")
    except DcganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    counts = [0] * len(CLASSES)
    for index, (image, label) in enumerate(zip(data.images, data.labels)):
        if args.limit and counts[label] >= args.limit:
            continue
        folder = args.out / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
        counts[label] += 1
    print(f"Wrote {sum(counts)} images in {len(CLASSES)} class folders to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

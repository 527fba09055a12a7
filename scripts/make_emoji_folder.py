"""Turn the colour emoji in Debian's Noto Color Emoji font into a folder of RGB PNGs: a real RGB
data set that needs no download (``apt-get install fonts-noto-color-emoji``, ``pip install
'dcgan[tools]'`` for fontTools).

    python scripts/make_emoji_folder.py data/emoji --size 64
    dcgan train --data data/emoji --image-size 64 --out runs/emoji64

The font holds each emoji as a PNG bitmap (its CBDT table, 136x128, with transparency): each is
composited onto ``--background``, padded to a square and resized to ``--size`` (Lanczos).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write NNNN_<glyph>.png into (created)")
    parser.add_argument("--size", type=int, default=64, help="side of the square images [64]")
    parser.add_argument("--background", default="white", help="white, black or #rrggbb [white]")
    parser.add_argument("--font", type=Path, default=FONT)
    args = parser.parse_args(argv)
    try:
        from fontTools.ttLib import TTFont
        from PIL import Image, ImageOps
    except ImportError as exc:
        print(f"Error: needs fontTools and Pillow: pip install 'dcgan[tools]' ({exc})", file=sys.stderr)
        return 2
    if not args.font.is_file():
        print(f"Error: {args.font} not found: apt-get install fonts-noto-color-emoji", file=sys.stderr)
        return 2
    if not 8 <= args.size <= 512:
        print(f"Error: --size must be between 8 and 512, got {args.size}", file=sys.stderr)
        return 2
    background = {"white": "#ffffff", "black": "#000000"}.get(args.background, args.background)
    try:
        Image.new("RGB", (1, 1), background)
    except ValueError:
        print(f"Error: --background must be white, black or #rrggbb, got {args.background!r}", file=sys.stderr)
        return 2

    strikes = TTFont(args.font)["CBDT"].strikeData
    glyphs = max(strikes, key=len)  # the largest strike: every emoji the font draws
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name in sorted(glyphs):
        glyph = glyphs[name]
        glyph.ensureDecompiled()
        data = getattr(glyph, "imageData", None)
        if not data or not data.startswith(b"\x89PNG"):
            continue
        emoji = Image.open(io.BytesIO(data)).convert("RGBA")
        square = Image.new("RGBA", (max(emoji.size),) * 2, background)
        square.alpha_composite(emoji, ((square.width - emoji.width) // 2, (square.height - emoji.height) // 2))
        image = ImageOps.fit(square.convert("RGB"), (args.size, args.size), method=Image.Resampling.LANCZOS)
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:60]
        tmp = args.out / f".{written:04d}.tmp.png"
        image.save(tmp)
        tmp.replace(args.out / f"{written:04d}_{safe}.png")
        written += 1
    print(f"Wrote {written} {args.size}x{args.size} RGB emoji to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

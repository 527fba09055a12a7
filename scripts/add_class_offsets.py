"""Give a conditional generator exported before the optional ``class_offsets`` input existed
(CHANGELOG) that input: blends of classes, ``dcgan sample --interpolate A,B --class 3,8``. For a
model whose run directory is gone (the shipped one); with the run, ``dcgan export`` it again.

    python scripts/add_class_offsets.py MODEL.onnx [--out NEW.onnx]

The rewrite (``dcgan_export/class_blend.py``) is exact: before writing, the new model must give
bit-identical images and pixels to the old one on the parity gate's 1,026 vectors, every class,
at batch sizes 1 and 257, and a blend that is all one class must equal that class. Needs onnx
(the ``train`` extra). Writes atomically; the source file is untouched unless --out is omitted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcgan_export.atomic import atomic_write_bytes  # noqa: E402
from dcgan_export.class_blend import add_class_offsets  # noqa: E402
from dcgan_export.contract import (CLASS_OFFSETS_INPUT, IMAGES_OUTPUT, LABELS_INPUT, LATENT_INPUT,  # noqa: E402
                                   PIXELS_OUTPUT, Meta)
from dcgan_export.errors import DcganError  # noqa: E402
from dcgan_export.parity import PARITY_BATCH_SIZES, parity_noise  # noqa: E402
from dcgan_export.runtime import open_session  # noqa: E402


def upgrade(source: Path) -> bytes:
    import onnx

    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    classes = len(json.loads(props.get(Meta.CLASS_NAMES, "[]")))
    if not classes or LABELS_INPUT not in [i.name for i in model.graph.input]:
        raise DcganError(f"{source}: not a class-conditional generator")
    add_class_offsets(model, classes)
    props["input"] = props.get("input", "") + (f"; optional {CLASS_OFFSETS_INPUT}: float32 [N, {classes}], "
                                               "added to one_hot(labels)")
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()

    old, new = open_session(source, label=str(source)), open_session(data, label="upgraded model")
    z = parity_noise(int(props.get(Meta.LATENT_DIM, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value)))
    labels = np.arange(len(z), dtype=np.int64) % classes
    for batch in PARITY_BATCH_SIZES:
        for i in range(0, len(z), batch):
            feeds = {LATENT_INPUT: z[i:i + batch], LABELS_INPUT: labels[i:i + batch]}
            for a, b in zip(old.run([IMAGES_OUTPUT, PIXELS_OUTPUT], feeds), new.run([IMAGES_OUTPUT, PIXELS_OUTPUT], feeds)):
                if not np.array_equal(a, b):
                    raise DcganError(f"{source}: the upgraded model differs from the original; nothing written")
    shifted = (labels + 1) % classes
    offsets = np.eye(classes, dtype=np.float32)[shifted] - np.eye(classes, dtype=np.float32)[labels]
    a = old.run([IMAGES_OUTPUT], {LATENT_INPUT: z, LABELS_INPUT: shifted})[0]
    b = new.run([IMAGES_OUTPUT], {LATENT_INPUT: z, LABELS_INPUT: labels, CLASS_OFFSETS_INPUT: offsets})[0]
    if not np.array_equal(a, b):
        raise DcganError(f"{source}: a one-class blend differs from its class; nothing written")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    args = parser.parse_args()
    try:
        data = upgrade(args.model)
        atomic_write_bytes(args.out or args.model, data)
    except DcganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out or args.model}: input {CLASS_OFFSETS_INPUT!r} added, images unchanged bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())

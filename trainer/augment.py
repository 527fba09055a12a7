"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al., 2020).

With a few thousand training images the discriminator memorises them and its feedback to the
generator degrades. Augmenting real *and* generated images, in the D update and in the G update
alike, with operations that gradients flow through, keeps D from memorising without teaching G
to produce augmented images (which augmenting only the real data would do).

Written in ``keras.ops``, so it runs on every backend; Keras is imported inside the operations,
so that ``parse_policy`` stays cheap for ``TrainConfig.validate`` (bad options fail before any
backend loads).
"""

from __future__ import annotations

POLICIES = ("translation", "cutout")
TRANSLATION = 1 / 8  # the largest shift, as a fraction of the image side (rounded: 4 pixels of 28)
CUTOUT = 1 / 2  # the side of the masked square, as a fraction of the image side


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' or 'none' -> (); ValueError if unknown."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in POLICIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"expected a comma-separated subset of {', '.join(POLICIES)} (or none), got {text!r}")
    return names


def augment(images, policy: tuple[str, ...], randint):
    """Apply each operation of ``policy``, drawn independently per image, to NHWC ``images``;
    ``randint(shape, low, high)`` draws int32 values in [low, high) (shape[0]: the batch)."""
    for name in policy:
        images = _OPERATIONS[name](images, randint)
    return images


def translate(images, randint):
    """Shift each image by up to TRANSLATION of its side in x and y, filling with the background
    (-1, the value of blank pixels in [-1, 1] images)."""
    from keras import ops

    n, h, w, c = ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
    sy, sx = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    padded = ops.pad(images, [[0, 0], [sy, sy], [sx, sx], [0, 0]], constant_values=-1.0)
    oy = randint((n, 1), 0, 2 * sy + 1)
    ox = randint((n, 1), 0, 2 * sx + 1)
    rows = oy + ops.arange(h, dtype="int32")[None, :]  # [n, h]: the rows of the padded image that image i keeps
    cols = ox + ops.arange(w, dtype="int32")[None, :]
    out = ops.take_along_axis(padded, ops.broadcast_to(rows[:, :, None, None], (n, h, w + 2 * sx, c)), axis=1)
    return ops.take_along_axis(out, ops.broadcast_to(cols[:, None, :, None], (n, h, w, c)), axis=2)


def cutout(images, randint):
    """Set a square of side CUTOUT of the image, at a random place per image, to 0 (mid-grey in
    [-1, 1]); the square may reach past the border, as in DiffAugment."""
    from keras import ops

    n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    cy = randint((n, 1, 1), 0, h + (1 - ch % 2))  # centre, as DiffAugment
    cx = randint((n, 1, 1), 0, w + (1 - cw % 2))
    y = ops.arange(h, dtype="int32")[None, :, None]
    x = ops.arange(w, dtype="int32")[None, None, :]
    inside = ((y >= cy - ch // 2) & (y < cy - ch // 2 + ch) & (x >= cx - cw // 2) & (x < cx - cw // 2 + cw))
    return images * ops.cast(ops.logical_not(inside), images.dtype)[..., None]


_OPERATIONS = {"translation": translate, "cutout": cutout}

"""Differentiable augmentation of everything the discriminator sees (DiffAugment, Zhao et al., 2020).

With a few thousand training images the discriminator memorises them and its feedback to the
generator degrades. Augmenting real *and* generated images, in the D update and in the G update
alike, with operations that gradients flow through, keeps D from memorising without teaching G
to produce augmented images (which augmenting only the real data would do).

TensorFlow is imported inside the operations, so that ``parse_policy`` stays cheap for
``TrainConfig.validate`` (bad options fail before TensorFlow loads).
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


def augment(images, policy: tuple[str, ...], draw_seed):
    """Apply each operation of ``policy``, drawn independently per image, to NHWC ``images``;
    ``draw_seed()`` returns a fresh int32 [2] seed for TensorFlow's stateless random ops."""
    for name in policy:
        images = _OPERATIONS[name](images, draw_seed)
    return images


def _randint(tf, shape, low, high, draw_seed):
    return tf.random.stateless_uniform(shape, draw_seed(), minval=low, maxval=high, dtype=tf.int32)


def translate(images, draw_seed):
    """Shift each image by up to TRANSLATION of its side in x and y, filling with the background
    (-1, the value of blank pixels in [-1, 1] images)."""
    import tensorflow as tf

    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    sy, sx = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    padded = tf.pad(images, [[0, 0], [sy, sy], [sx, sx], [0, 0]], constant_values=-1.0)
    oy = _randint(tf, (n, 1), 0, 2 * sy + 1, draw_seed)
    ox = _randint(tf, (n, 1), 0, 2 * sx + 1, draw_seed)
    rows = oy + tf.range(h)[None, :]  # [n, h]: the rows of the padded image that image i keeps
    cols = ox + tf.range(w)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def cutout(images, draw_seed):
    """Set a square of side CUTOUT of the image, at a random place per image, to 0 (mid-grey in
    [-1, 1]); the square may reach past the border, as in DiffAugment."""
    import tensorflow as tf

    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    cy = _randint(tf, (n, 1, 1), 0, h + (1 - ch % 2), draw_seed)  # centre, as DiffAugment
    cx = _randint(tf, (n, 1, 1), 0, w + (1 - cw % 2), draw_seed)
    y = tf.range(h)[None, :, None]
    x = tf.range(w)[None, None, :]
    inside = ((y >= cy - ch // 2) & (y < cy - ch // 2 + ch) & (x >= cx - cw // 2) & (x < cx - cw // 2 + cw))
    return images * tf.cast(~inside, images.dtype)[..., None]


_OPERATIONS = {"translation": translate, "cutout": cutout}

"""trainer/dropout.py: hashed dropout masks are dropout (the right keep rate and scale, independent
across elements, draws and layers), and walking the discriminator computes what calling it does."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.dropout import discriminator_forward, dropout, lowbias32, random_bits
from trainer.models import build_discriminator


def bits(seed, shape, offset=0) -> np.ndarray:
    return keras.ops.convert_to_numpy(random_bits(np.array(seed, np.int64), shape, offset)).astype(np.int64)


def test_lowbias32_is_the_published_hash():
    """Reference values computed in Python integers from Wellons's constants."""
    def reference(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    values = np.array([0, 1, 2, 12345, 2**31, 2**32 - 1], np.uint32)
    got = keras.ops.convert_to_numpy(lowbias32(keras.ops.convert_to_tensor(values, "uint32")))
    assert [int(v) for v in got] == [reference(int(v)) for v in values]


def test_bits_are_uniform_and_independent():
    n = 1 << 20
    a, b = bits((7, 0), (n,)), bits((7, 1), (n,))  # consecutive draws of one SeedGenerator
    c = bits((8, 0), (n,))  # another layer's seed
    sigma = 0.5 / np.sqrt(n)
    for k in range(32):  # every bit position is a fair coin
        assert abs(((a >> k) & 1).mean() - 0.5) < 5 * sigma, k
    keep = 0.7
    masks = [x < round(keep * 2**32) for x in (a, b, c)]
    s = np.sqrt(keep * (1 - keep) / n)
    for m in masks:
        assert abs(m.mean() - keep) < 5 * s
    # pairs agree as independent coins would: across draws, across seeds, and between neighbours
    # (along a row and one row apart, as an image's pixels lie)
    agree = keep**2 + (1 - keep) ** 2
    for x, y in ((masks[0], masks[1]), (masks[0], masks[2]), (masks[0][:-1], masks[0][1:]),
                 (masks[0][:-784], masks[0][784:])):
        assert abs((x == y).mean() - agree) < 5 * 0.5 / np.sqrt(len(x))
    assert len(np.unique(a)) == n  # a bijection of the index for a fixed seed


def test_offset_is_the_same_rows_of_a_larger_draw():
    """Under MirroredStrategy, replica r draws offset r x its size: the rows of the global mask."""
    whole = bits((3, 9), (8, 5, 5, 2))
    np.testing.assert_array_equal(bits((3, 9), (4, 5, 5, 2), offset=4 * 50), whole[4:])


def test_dropout_keeps_and_scales_like_keras():
    x = np.random.default_rng(0).uniform(1, 2, (64, 14, 14, 64)).astype(np.float32)
    seed = keras.random.SeedGenerator(3)
    first = keras.ops.convert_to_numpy(dropout(x, 0.3, seed))
    kept = first != 0
    np.testing.assert_allclose(first[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.01
    second = keras.ops.convert_to_numpy(dropout(x, 0.3, seed))  # the seed moved on: a new mask
    assert 0.5 < ((second != 0) == kept).mean() < 0.65  # 0.58 for independent masks
    assert keras.ops.convert_to_numpy(dropout(x, 0.0, keras.random.SeedGenerator(1))).min() >= 1


@pytest.mark.parametrize("classes", [None, 4])
def test_walking_the_discriminator_is_calling_it(classes):
    d = build_discriminator(num_classes=classes)
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 4, 6).astype(np.int32) if classes else None
    inputs = images if classes is None else [images, labels]
    inference = keras.ops.convert_to_numpy(discriminator_forward(d, images, labels, training=False))
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(d(inputs, training=False)), rtol=1e-5, atol=1e-6)
    for layer in (d.get_layer("features") if classes else d).layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # without masks, training mode is the same function
    walked = keras.ops.convert_to_numpy(discriminator_forward(d, images, labels, training=True))
    np.testing.assert_allclose(walked, inference, rtol=1e-5, atol=1e-6)


def test_training_pass_drops_a_share_of_the_features():
    """With dropout on, the walked training pass differs from inference, and differs per draw."""
    d = build_discriminator()
    images = np.random.default_rng(2).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)
    inference = keras.ops.convert_to_numpy(d(images, training=False))
    a, b = (keras.ops.convert_to_numpy(discriminator_forward(d, images)) for _ in range(2))
    assert not np.allclose(a, inference, atol=1e-4) and not np.allclose(a, b, atol=1e-4)

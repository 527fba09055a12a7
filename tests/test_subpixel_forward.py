"""The trainer's fused generator forward pass computes what the Keras layers compute, gradients
and BatchNorm updates included, so it can stand in for ``generator(z, training=True)``."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import randomize_batchnorm  # noqa: E402

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
layers = keras.layers

from trainer.models import build_generator  # noqa: E402
from trainer.subpixel_forward import fusable, generator_forward  # noqa: E402


def small_generator(k: int, rng, dtype=None) -> keras.Sequential:
    """The recipe's shape at a tenth of the width, with non-trivial BN statistics and biases."""
    model = keras.Sequential([
        keras.Input((12,)), layers.Dense(4 * 4 * 16, dtype=dtype), layers.BatchNormalization(dtype=dtype),
        layers.LeakyReLU(0.2, dtype=dtype), layers.Reshape((4, 4, 16), dtype=dtype), layers.UpSampling2D(dtype=dtype),
        layers.Conv2D(8, k, padding="same", dtype=dtype), layers.BatchNormalization(dtype=dtype),
        layers.LeakyReLU(0.2, dtype=dtype), layers.UpSampling2D(dtype=dtype),
        layers.Conv2D(1, k, padding="same", activation="tanh", dtype="float32"),
    ])
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            randomize_batchnorm(layer, rng)
        elif isinstance(layer, layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype(np.float32))
    return model


def forward_with_gradients(fn, model, z, weights):
    stats = [v.numpy().copy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        out = fn(z)
        loss = tf.reduce_sum(out * weights)
    grads = tape.gradient(loss, model.trainable_variables)
    updated = [v.numpy().copy() for v in model.non_trainable_variables]
    for v, s in zip(model.non_trainable_variables, stats):  # leave the model as it was
        v.assign(s)
    return out.numpy(), [g.numpy() for g in grads], updated


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("training", [False, True])
def test_fused_forward_matches_the_layers(k, training):
    rng = np.random.default_rng(k)
    model = small_generator(k, rng)
    z = tf.constant(rng.standard_normal((6, 12)).astype(np.float32))
    weights = tf.constant(rng.standard_normal((6, 16, 16, 1)).astype(np.float32))

    ref, ref_grads, ref_stats = forward_with_gradients(lambda z: model(z, training=training), model, z, weights)
    got, got_grads, got_stats = forward_with_gradients(
        lambda z: generator_forward(model, z, training=training), model, z, weights)

    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # In training mode a bias that feeds BatchNorm has an exactly-zero gradient (BN subtracts the
    # batch mean), so both sides hold rounding noise there, on the scale of the whole backward
    # pass: hence the second term, relative to the largest gradient of the model.
    scale = max(float(np.abs(g).max()) for g in ref_grads)
    for variable, a, b in zip(model.trainable_variables, got_grads, ref_grads):
        np.testing.assert_allclose(a, b, atol=1e-4 * float(np.abs(b).max()) + 1e-5 * scale, rtol=0,
                                   err_msg=variable.path)
    for a, b in zip(got_stats, ref_stats):  # BatchNorm moving statistics move identically
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    if training:
        assert any(not np.allclose(a, s) for a, s in zip(ref_stats, (v.numpy() for v in model.non_trainable_variables)))


def test_fused_forward_under_mixed_precision_matches_the_layers():
    """--mixed-precision: float16 compute, float32 variables and output layer."""
    rng = np.random.default_rng(0)
    model = small_generator(5, rng, dtype="mixed_float16")
    assert sum(fusable(a, b) for a, b in zip(model.layers, model.layers[1:])) == 2
    z = tf.constant(rng.standard_normal((6, 12)).astype(np.float32))
    for training in (False, True):
        got = generator_forward(model, z, training=training)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got, model(z, training=training), atol=5e-3, rtol=0)


def test_both_upsample_conv_pairs_of_the_recipe_are_fused():
    g = build_generator()
    pairs = [fusable(a, b) for a, b in zip(g.layers, g.layers[1:])]
    assert sum(pairs) == 2


@pytest.mark.parametrize("stack, fused", [
    ([layers.UpSampling2D(interpolation="bilinear"), layers.Conv2D(2, 3, padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, 3, padding="valid")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, 4, padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, 3, strides=2, padding="same")], False),
    ([layers.UpSampling2D(size=3), layers.Conv2D(2, 3, padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, (3, 5), padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, 3, dilation_rate=2, padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(3, 3, groups=3, padding="same")], False),
    ([layers.UpSampling2D(), layers.Conv2D(2, 3, padding="same", activation="relu")], True),
    ([layers.UpSampling2D(), layers.Conv2D(2, 5, padding="same", use_bias=False)], True),
])
def test_only_exact_pairs_are_fused_and_others_still_compute_the_same(stack, fused):
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((5, 5, 3)), *stack])
    if model.layers[1].use_bias:
        model.layers[1].bias.assign(rng.normal(0, 0.5, model.layers[1].bias.shape).astype(np.float32))
    assert fusable(*model.layers) is fused
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(generator_forward(model, x, training=True), model(x, training=True), atol=1e-5, rtol=0)

"""The sub-pixel rewrite is exact: checked against real Keras layers with non-trivial BatchNorm stats."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import randomize_batchnorm  # noqa: E402
from dcgan_export import subpixel  # noqa: E402

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
layers = keras.layers


def keras_stack(shape, stack, rng):
    model = keras.Sequential([keras.Input(shape), *stack])
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            randomize_batchnorm(layer, rng)
        elif isinstance(layer, layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype(np.float32))
    return model


def conv(x, kernel, bias):
    return tf.nn.bias_add(tf.nn.conv2d(x, kernel.astype(np.float32), 1, "SAME"), bias.astype(np.float32))


def folded(conv_layer, bn_layer):
    return subpixel.fold_batchnorm(conv_layer.kernel.numpy(), conv_layer.bias.numpy(), bn_layer.gamma.numpy(),
                                   bn_layer.beta.numpy(), bn_layer.moving_mean.numpy(),
                                   bn_layer.moving_variance.numpy(), bn_layer.epsilon)


@pytest.mark.parametrize("k", [3, 5])
def test_upsample_conv_batchnorm_equals_phase_conv_then_depth_to_space(k):
    rng = np.random.default_rng(k)
    model = keras_stack((6, 5, 7), [layers.UpSampling2D(2), layers.Conv2D(4, k, padding="same"),
                                    layers.BatchNormalization(epsilon=0.01)], rng)
    x = rng.standard_normal((3, 6, 5, 7)).astype(np.float32)
    reference = model(x, training=False).numpy()
    kernel, bias = folded(model.layers[1], model.layers[2])
    phase = subpixel.upsample_conv_kernel(kernel)
    assert phase.shape == (3, 3, 7, 16)  # every phase fits 3x3 for k = 3 and k = 5
    got = tf.nn.depth_to_space(conv(x, phase, np.tile(bias, 4)), 2).numpy()
    np.testing.assert_allclose(got, reference, atol=2e-5, rtol=0)
    # BN statistics matter: the same layers without the fold differ a lot
    unfolded = tf.nn.depth_to_space(conv(x, subpixel.upsample_conv_kernel(model.layers[1].kernel.numpy()),
                                         np.tile(model.layers[1].bias.numpy(), 4)), 2).numpy()
    assert np.abs(unfolded - reference).max() > 0.1


def test_phase_kernels_use_exactly_the_taps_that_land_on_each_coarse_pixel():
    # k = 5: each phase sums 2-1-2 or 1-2-2 taps per axis into 3 coarse offsets, nothing dropped.
    kernel = np.ones((5, 5, 1, 1))
    phase = subpixel.upsample_conv_kernel(kernel).reshape(3, 3, 4)
    np.testing.assert_array_equal(phase[:, :, 0], np.outer([2, 2, 1], [2, 2, 1]))  # phase (0, 0)
    np.testing.assert_array_equal(phase[:, :, 3], np.outer([1, 2, 2], [1, 2, 2]))  # phase (1, 1)
    assert phase.sum() == 4 * 25
    # k = 3: each phase is really 2x2 (placed in a 3x3 window shared by all phases)
    phase3 = subpixel.upsample_conv_kernel(np.ones((3, 3, 1, 1))).reshape(3, 3, 4)
    assert [(phase3[..., p] != 0).sum() for p in range(4)] == [4, 4, 4, 4]
    assert [subpixel.phase_radius(k) for k in (1, 3, 5, 7, 9)] == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        subpixel.upsample_conv_kernel(np.ones((4, 4, 1, 1)))


@pytest.mark.parametrize("k", [3, 5])
def test_two_stages_compose_on_the_coarse_grid_with_one_final_depth_to_space(k):
    """up, conv, BN, LeakyReLU, up, conv(tanh) == conv, LeakyReLU, conv, tanh, depth_to_space(4)."""
    rng = np.random.default_rng(10 + k)
    model = keras_stack((5, 4, 6), [
        layers.UpSampling2D(2), layers.Conv2D(8, k, padding="same"), layers.BatchNormalization(),
        layers.LeakyReLU(0.2), layers.UpSampling2D(2), layers.Conv2D(2, k, padding="same", activation="tanh"),
    ], rng)
    x = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    reference = model(x, training=False).numpy()

    kernel1, bias1 = folded(model.layers[1], model.layers[2])
    stage1 = tf.nn.leaky_relu(conv(x, subpixel.upsample_conv_kernel(kernel1), np.tile(bias1, 4)), 0.2)
    conv2 = model.layers[5]
    kernel2 = subpixel.coarse_grid_kernel(subpixel.upsample_conv_kernel(conv2.kernel.numpy()), 2)
    bias2 = np.tile(conv2.bias.numpy(), 16)
    perm = subpixel.nest_depth_to_space_channels(kernel2.shape[-1], 2, 2, 2)
    assert kernel2.shape == (3, 3, 4 * 8, 16 * 2)  # stays 3x3 on the coarse grid
    got = tf.nn.depth_to_space(tf.tanh(conv(stage1, kernel2[..., perm], bias2[perm])), 4).numpy()
    np.testing.assert_allclose(got, reference, atol=2e-5, rtol=0)


@pytest.mark.parametrize("factor,k", [(2, 5), (3, 3), (2, 7)])
def test_coarse_grid_kernel_equals_conv_on_the_fine_grid(factor, k):
    rng = np.random.default_rng(factor * k)
    coarse = rng.standard_normal((2, 4, 3, factor * factor * 3)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 3, 5))
    fine = tf.nn.depth_to_space(coarse, factor)
    reference = tf.nn.conv2d(fine, kernel.astype(np.float32), 1, "SAME").numpy()
    got = tf.nn.depth_to_space(conv(coarse, subpixel.coarse_grid_kernel(kernel, factor), np.zeros(factor**2 * 5)),
                               factor).numpy()
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)


def test_nested_depth_to_space_is_one_depth_to_space_with_permuted_channels():
    y = np.random.default_rng(0).standard_normal((2, 3, 4, 4 * 9 * 2)).astype(np.float32)
    perm = subpixel.nest_depth_to_space_channels(72, 2, 3, 2)
    reference = tf.nn.depth_to_space(tf.nn.depth_to_space(y, 2), 3).numpy()
    np.testing.assert_array_equal(tf.nn.depth_to_space(y[..., perm], 6).numpy(), reference)
    np.testing.assert_array_equal(subpixel.depth_to_space(y[..., perm], 6), reference)  # numpy reference agrees
    assert sorted(perm) == list(range(72))


def test_fold_batchnorm_into_dense_matches_keras():
    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((10,)), layers.Dense(6), layers.BatchNormalization(epsilon=0.1)])
    randomize_batchnorm(model.layers[1], rng)
    x = rng.standard_normal((4, 10)).astype(np.float32)
    dense, bn = model.layers
    kernel, bias = subpixel.fold_batchnorm(dense.kernel.numpy(), dense.bias.numpy(), bn.gamma.numpy(),
                                           bn.beta.numpy(), bn.moving_mean.numpy(), bn.moving_variance.numpy(),
                                           bn.epsilon)
    np.testing.assert_allclose(x @ kernel + bias, model(x, training=False).numpy(), atol=1e-5)


def test_recipe_generator_mflop_per_image_84_original_31_two_stage_34_coarse_grid():
    before = 2 * 100 * 6272 + subpixel.conv_flops(14, 14, (5, 5, 128, 64)) + subpixel.conv_flops(28, 28, (5, 5, 64, 1))
    two_stage = (2 * 100 * 6272 + subpixel.conv_flops(7, 7, (3, 3, 128, 4 * 64))
                 + subpixel.conv_flops(14, 14, (3, 3, 64, 4 * 1)))
    coarse = 2 * 100 * 6272 + subpixel.conv_flops(7, 7, (3, 3, 128, 256)) + subpixel.conv_flops(7, 7, (3, 3, 256, 16))
    assert round(before / 1e6, 1) == 84.0
    assert round(two_stage / 1e6, 1) == 31.1
    assert round(coarse / 1e6, 1) == 33.8  # the coarse-grid second conv computes its zero taps too

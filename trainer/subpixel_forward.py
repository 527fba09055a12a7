"""The generator's forward pass for training, with upsample + convolve done on the coarse grid.

``UpSampling2D(2)`` followed by a 'same' stride-1 ``Conv2D(k)`` (k odd) equals one convolution of
the *un-upsampled* input with 4x the output channels, then ``depth_to_space(2)``
(``dcgan_export/subpixel.py`` derives it; the exporter uses the same identity). For the recipe's
generator (k = 5, so each phase kernel is 3x3) that turns its largest layer from 80 into 29
MFLOP per image, and training spends most of its time in the generator. For k = 3 the phase
kernels are 3x3 too, so the arithmetic is unchanged and only the upsampled copy is saved.

The trained variables stay the recipe's own ``[k, k, cin, cout]`` kernels: the phase kernels are
a fixed linear map of them, computed inside the step, so gradients reach the original kernels,
checkpoints and ``generator.keras`` are unchanged, and the function computed is the same (up to
float rounding). Every other layer, BatchNormalization included, is called as it is, so its
training behaviour (batch statistics, moving-average updates) is untouched.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from dcgan_export import subpixel


def generator_forward(generator: keras.Model, z, training: bool, labels=None):
    """``generator(z, training=training)`` (``generator([z, labels], ...)`` for a class-conditional
    one: its ``trunk`` on z joined to the one-hot labels), with every upsample + conv pair fused.

    Only a ``Sequential`` is walked layer by layer; any other model is simply called."""
    if labels is not None:
        trunk = generator.get_layer("trunk")
        one_hot = generator.get_layer("one_hot")
        return generator_forward(trunk, ops.concatenate([z, ops.cast(one_hot(labels), z.dtype)], axis=1), training)
    if not isinstance(generator, keras.Sequential):
        return generator(z, training=training)
    x = z
    layers = generator.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        follower = layers[i + 1] if i + 1 < len(layers) else None
        if follower is not None and fusable(layer, follower):
            x = _upsample_conv(x, follower)
            i += 2
        else:
            x = layer(x, training=training)
            i += 1
    return x


def fusable(upsampling, conv) -> bool:
    """Whether the pair is nearest-neighbour x2 upsampling into a 'same', stride-1, odd-kernel conv."""
    return (isinstance(upsampling, keras.layers.UpSampling2D) and isinstance(conv, keras.layers.Conv2D)
            and subpixel.is_nearest_upsample_2x(upsampling) and subpixel.is_same_odd_conv(conv))


@functools.cache
def _phase_map(kernel_size: int) -> np.ndarray:
    """M with phase_kernel[r, s, i, p, o] = sum_t M[r, s, p, t] * kernel[t, i, o] (t = flat tap)."""
    taps = kernel_size * kernel_size
    basis = np.eye(taps).reshape(taps, kernel_size, kernel_size, 1, 1)
    columns = [subpixel.upsample_conv_kernel(b)[:, :, 0, :] for b in basis]  # each [K, K, 4]
    return np.stack(columns, axis=-1).astype(np.float32)  # [K, K, 4, taps]


def _upsample_conv(x, conv: keras.layers.Conv2D):
    dtype = conv.compute_dtype
    k = conv.kernel_size[0]
    kernel = ops.cast(conv.kernel, dtype)
    cin, cout = kernel.shape[-2], kernel.shape[-1]
    phase_map = ops.convert_to_tensor(_phase_map(k), dtype=dtype)
    phases = ops.einsum("rspt,tio->rsipo", phase_map, ops.reshape(kernel, (k * k, cin, cout)))
    size = phases.shape[0]
    y = ops.conv(ops.cast(x, dtype), ops.reshape(phases, (size, size, cin, 4 * cout)), strides=1, padding="same")
    if conv.use_bias:
        y = y + ops.tile(ops.cast(conv.bias, dtype), [4])
    return conv.activation(depth_to_space(y, 2))


def depth_to_space(x, block: int):
    """NHWC [n, h, w, b*b*c] -> [n, h*b, w*b, c], channel (dy*b + dx)*c + ch going to pixel (dy, dx)
    of each block: TensorFlow's ``depth_to_space`` (its own kernel there), ONNX's DCR mode."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.depth_to_space(x, block)
    n, h, w, channels = ops.shape(x)
    c = channels // (block * block)
    y = ops.reshape(x, (n, h, w, block, block, c))
    y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
    return ops.reshape(y, (n, h * block, w * block, c))

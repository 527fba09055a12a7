"""Exact kernel algebra that lets the exported generator do a third of the original work.

Numpy only (float64 inside), so every identity here can be checked against real Keras layers.

Layouts are Keras/TensorFlow ones: kernels ``[kh, kw, cin, cout]`` for 'same'-padded stride-1
convolutions, images NHWC, and ``depth_to_space(x, f)`` (TF's, ONNX mode DCR) puts channel
``(a * f + b) * C + c`` of coarse pixel ``(i, j)`` at fine pixel ``(f * i + a, f * j + b)``,
channel ``c``. "Phase ``(a, b)``" below means that fine-pixel offset.

Why it works: nearest upsampling by 2 repeats each pixel, so each of the four output phases of
"upsample, then convolve with a k x k kernel" is a small convolution of the *input* (3 x 3 for
k = 5). Stacking the four phase kernels as output channels gives one convolution on the coarse
grid followed by ``depth_to_space(2)``. Elementwise activations commute with
``depth_to_space``, so a following convolution can be re-indexed onto the coarse grid too and
all the pixel shuffling collapses into a single ``depth_to_space`` at the very end.
"""

from __future__ import annotations

import numpy as np


def fold_batchnorm(kernel, bias, gamma, beta, mean, variance, epsilon):
    """(kernel, bias) of a linear layer followed by inference-mode BatchNormalization.

    BN(y) = gamma * (y - mean) / sqrt(variance + epsilon) + beta is affine per output channel
    (the last kernel axis), so it folds into the layer before it. ``gamma``/``beta`` may be None
    (BatchNormalization(scale=False / center=False)); ``bias`` may be None (use_bias=False).
    """
    kernel = np.asarray(kernel, np.float64)
    channels = kernel.shape[-1]
    bias = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
    gamma = np.ones(channels) if gamma is None else np.asarray(gamma, np.float64)
    beta = np.zeros(channels) if beta is None else np.asarray(beta, np.float64)
    scale = gamma / np.sqrt(np.asarray(variance, np.float64) + float(epsilon))
    return kernel * scale, (bias - np.asarray(mean, np.float64)) * scale + beta


def is_nearest_upsample_2x(layer) -> bool:
    """Whether a Keras ``UpSampling2D`` is the nearest-neighbour x2 NHWC one these identities cover.

    Duck-typed on the layer's config attributes, so this module needs no Keras."""
    return (tuple(layer.size) == (2, 2) and layer.interpolation == "nearest"
            and layer.data_format == "channels_last")


def is_same_odd_conv(layer) -> bool:
    """Whether a Keras ``Conv2D`` is an odd, square, stride-1, undilated, ungrouped 'same' NHWC
    convolution: the kind that an upsample before it, or a coarse grid, can be folded into."""
    kh, kw = layer.kernel_size
    return (tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1
            and layer.padding == "same" and layer.data_format == "channels_last"
            and kh == kw and kh % 2 == 1)


def phase_radius(kernel_size: int) -> int:
    """Radius of the coarse-grid kernel that replaces upsample(2) + conv(kernel_size, 'same')."""
    _check_odd(kernel_size)
    p = kernel_size // 2
    return max(-((-p) // 2), (1 + p) // 2)  # coarse offsets span floor(-p/2) .. floor((1+p)/2)


def upsample_conv_kernel(kernel):
    """Kernel ``[K, K, cin, 4 * cout]`` (K = 2 * phase_radius + 1) such that

        conv_same(upsample_nearest_2(x), kernel) == depth_to_space(conv_same(x, result), 2)

    Fine pixel 2i + a with tap dy reads coarse pixel i + floor((a + dy) / 2), so the phase-(a, b)
    kernel sums the taps that land on the same coarse pixel.
    """
    kernel = np.asarray(kernel, np.float64)
    k, kw, cin, cout = kernel.shape
    if k != kw:
        raise ValueError(f"square kernels only, got {k}x{kw}")
    p = k // 2
    radius = phase_radius(k)
    size = 2 * radius + 1
    out = np.zeros((size, size, cin, 4, cout))
    for a in range(2):
        for b in range(2):
            for dy in range(-p, p + 1):
                r = (a + dy) // 2
                for dx in range(-p, p + 1):
                    s = (b + dx) // 2
                    out[radius + r, radius + s, :, a * 2 + b, :] += kernel[p + dy, p + dx]
    return out.reshape(size, size, cin, 4 * cout)


def coarse_grid_kernel(kernel, factor: int):
    """Re-index a 'same' stride-1 convolution onto the coarse grid of ``depth_to_space(., factor)``.

    For x = depth_to_space(X, factor) with X of factor**2 * cin channels and any kernel
    ``[k, k, cin, D]`` (k odd), returns ``[K, K, factor**2 * cin, factor**2 * D]`` with

        conv_same(x, kernel) == depth_to_space(conv_same(X, result), factor).

    Fine pixel f*i + a1 with tap r reads fine pixel f*i + a1 + r = f*(i + u) + a0 where
    u = floor((a1 + r) / f) and a0 = (a1 + r) mod f: coarse offset u, input phase a0.
    Zero padding agrees on both grids, because the fine grid is exactly the coarse one times f.
    """
    kernel = np.asarray(kernel, np.float64)
    k, kw, cin, depth = kernel.shape
    if k != kw:
        raise ValueError(f"square kernels only, got {k}x{kw}")
    _check_odd(k)
    if factor == 1:
        return kernel.copy()
    p = k // 2
    radius = (factor - 1 + p) // factor  # largest |u| over all output phases and taps
    size = 2 * radius + 1
    out = np.zeros((size, size, factor, factor, cin, factor, factor, depth))
    for a1 in range(factor):  # output phase (rows)
        for r in range(-p, p + 1):
            u, a0 = divmod(a1 + r, factor)
            for b1 in range(factor):  # output phase (columns)
                for s in range(-p, p + 1):
                    v, b0 = divmod(b1 + s, factor)
                    out[radius + u, radius + v, a0, b0, :, a1, b1, :] += kernel[p + r, p + s]
    return out.reshape(size, size, factor * factor * cin, factor * factor * depth)


def nest_depth_to_space_channels(n_channels: int, outer: int, inner: int, channels: int):
    """Permutation ``perm`` of ``n_channels`` channels such that for Y of those channels

        depth_to_space(depth_to_space(Y, outer), inner) == depth_to_space(Y[..., perm], outer * inner).

    Y's channels are ordered (a1, b1, a2, b2, c) (outer phase, then inner phase); a single
    depth_to_space(outer * inner) wants (A, B, c) with A = a1 * inner + a2, i.e. (a1, a2, b1, b2, c).
    """
    if n_channels != outer * outer * inner * inner * channels:
        raise ValueError(f"{n_channels} channels is not {outer}^2 * {inner}^2 * {channels}")
    index = np.arange(n_channels).reshape(outer, outer, inner, inner, channels)  # (a1, b1, a2, b2, c)
    return index.transpose(0, 2, 1, 3, 4).reshape(-1)  # position (a1, a2, b1, b2, c) -> source channel


def tile_phases(vector, factor: int):
    """A per-channel vector (bias, scale) for a tensor held as the coarse grid of depth_to_space(factor)."""
    return np.tile(np.asarray(vector, np.float64), factor * factor)


def depth_to_space(x, factor: int):
    """Reference NHWC depth_to_space (TF / ONNX DCR), for tests and documentation."""
    n, h, w, c = x.shape
    out_c = c // (factor * factor)
    return (x.reshape(n, h, w, factor, factor, out_c).transpose(0, 1, 3, 2, 4, 5)
            .reshape(n, h * factor, w * factor, out_c))


def conv_flops(height: int, width: int, kernel_shape) -> int:
    """Multiply-adds x 2 of a 'same' stride-1 convolution over a height x width output."""
    kh, kw, cin, cout = kernel_shape
    return 2 * height * width * kh * kw * cin * cout


def _check_odd(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"odd kernel sizes only ('same' padding is asymmetric otherwise), got {kernel_size}")

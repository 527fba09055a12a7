"""The generator's inference as a short list of TensorFlow ops that does a third of the work.

Optimised graph for the recipe generator (see ``subpixel.py`` for the algebra)::

    z -> MatMul(BN folded) -> LeakyReLU -> [7x7x128]
      -> Conv3x3(128 -> 256, phase kernels of up1+conv1, BN folded) -> LeakyReLU
      -> Conv3x3(256 -> 16, phase kernels of up2+conv2 re-indexed onto the 7x7 grid) -> tanh
      -> DepthToSpace(4) -> images [N, 28, 28, 1]

The plan is made in numpy (float64) from the trained weights; TensorFlow is imported only to run
it, inside the functions, so that ``export.py`` can hand it to tf2onnx.

A class-conditional generator (``trainer.models``: z joined to a one-hot label, into the network
called ``trunk``) is planned as its trunk; the first MatMul's rows for the one-hot part become a
table of K rows, one gathered per image: ``z @ W_z + W_y[labels]``, the same sum without the
one-hot vector. For blends of classes the Sampler rewrites that Gather (``class_blend.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import subpixel
from .errors import DcganError
from .contract import IMAGE_SIZES, IMAGES_OUTPUT, LABELS_INPUT, LATENT_INPUT, PIXELS_OUTPUT


@dataclass
class _Step:
    """One operation of the optimised graph, with numpy float32 parameters."""

    kind: str  # matmul | class_matmul | conv | affine | act | reshape | nhwc_from_chw | depth_to_space
    params: dict = field(default_factory=dict)


class InferenceFunction:
    """``fn(z[, labels]) -> {"images": float32 [N, H, W, C], "pixels": uint8 [N, H, W(, 3)]}`` in
    TensorFlow ops (``labels`` int64 [N] for a class-conditional generator, ``num_classes`` set).

    Built by ``build_inference_function``; pass it to ``onnx_convert.convert_function`` or call it
    eagerly. ``flops_per_image`` counts the multiply-adds (x 2) of the dense and convolution
    layers it runs; ``original_flops_per_image`` those of the Keras generator.
    """

    def __init__(self, model, steps: list[_Step] | None, latent_dim: int,
                 flops_per_image: int, original_flops_per_image: int, num_classes: int | None = None):
        self._model = model
        self.num_classes = num_classes
        self.steps = steps
        self.optimized = steps is not None
        self.latent_dim = latent_dim
        self.flops_per_image = flops_per_image
        self.original_flops_per_image = original_flops_per_image
        self.image_shape = tuple(int(d) for d in model.outputs[0].shape[1:])  # (H, W, C)

    @property
    def ends_in_tanh(self) -> bool:
        """float32 tanh lies in [-1, 1] and (x + 1) * 127.5 rounds monotonically: no clip needed."""
        last = [step for step in self.steps or [] if step.kind != "depth_to_space"][-1:]
        return bool(last) and last[0].kind == "act" and last[0].params["name"] == "tanh"

    def input_signature(self):
        import tensorflow as tf

        z = tf.TensorSpec((None, self.latent_dim), tf.float32, name=LATENT_INPUT)
        return [z, tf.TensorSpec((None,), tf.int64, name=LABELS_INPUT)] if self.num_classes else [z]

    def images(self, z, labels=None):
        import tensorflow as tf

        if self.steps is None:
            if labels is None:
                return tf.cast(self._model(z, training=False), tf.float32)
            # the one-hot as a row of the identity: a Gather that class_blend.py can rewrite for blends
            one_hot = tf.gather(np.eye(self.num_classes, dtype=np.float32), labels)
            trunk = self._model.get_layer("trunk")
            return tf.cast(trunk(tf.concat([z, one_hot], axis=1), training=False), tf.float32)
        x = z
        for step in self.steps:
            x = _apply(step, x, labels)
        return x

    def __call__(self, z, labels=None):
        import tensorflow as tf

        images = self.images(z, labels)
        scaled = tf.round((images + 1.0) * 127.5)  # round half to even, as numpy.rint / ONNX Round
        if not self.ends_in_tanh:
            scaled = tf.clip_by_value(scaled, 0.0, 255.0)
        pixels = tf.cast(scaled, tf.uint8)
        if images.shape[-1] == 1:  # grey: [N, H, W], as the contract has always said
            pixels = tf.squeeze(pixels, axis=-1)
        return {IMAGES_OUTPUT: images, PIXELS_OUTPUT: pixels}

    def describe(self) -> str:
        if self.steps is None:
            return "the Keras generator as it is"
        names = []
        for step in self.steps:
            p = step.params
            if step.kind == "conv":
                k = p["kernel"].shape
                names.append(f"Conv{k[0]}x{k[1]}({k[2]}->{k[3]})")
            elif step.kind == "matmul":
                names.append(f"MatMul({p['kernel'].shape[0]}->{p['kernel'].shape[1]})")
            elif step.kind == "class_matmul":
                names.append(f"MatMul({p['kernel'].shape[0]}->{p['kernel'].shape[1]})+ClassRow({p['table'].shape[0]})")
            elif step.kind == "act":
                names.append(p["name"])
            elif step.kind == "depth_to_space":
                names.append(f"DepthToSpace({p['factor']})")
            elif step.kind == "affine":
                names.append("Affine")
        return " -> ".join(names)


def _apply(step: _Step, x, labels=None):
    import tensorflow as tf

    p = step.params
    if step.kind == "matmul":
        return tf.matmul(x, p["kernel"]) + p["bias"]
    if step.kind == "class_matmul":
        return tf.matmul(x, p["kernel"]) + tf.gather(p["table"], labels) + p["bias"]
    if step.kind == "conv":
        return tf.nn.bias_add(tf.nn.conv2d(x, p["kernel"], strides=1, padding="SAME"), p["bias"])
    if step.kind == "affine":
        return x * p["scale"] + p["shift"]
    if step.kind == "act":
        name = p["name"]
        if name == "leaky_relu":
            return tf.nn.leaky_relu(x, alpha=p["alpha"])
        return {"relu": tf.nn.relu, "tanh": tf.tanh, "sigmoid": tf.sigmoid}[name](x)
    if step.kind == "reshape":
        return tf.reshape(x, [-1, *p["shape"]])
    if step.kind == "nhwc_from_chw":
        # The dense layer's columns were permuted to (c, h, w): onnxruntime's NCHW convolutions
        # then read the tensor as it is, and this transpose cancels the one tf2onnx puts before Conv.
        c, h, w = p["shape"]
        return tf.transpose(tf.reshape(x, [-1, c, h, w]), [0, 2, 3, 1])
    if step.kind == "depth_to_space":
        return tf.nn.depth_to_space(x, p["factor"])
    raise AssertionError(step.kind)


def build_inference_function(keras_generator, optimize: bool = True) -> InferenceFunction:
    """The generator's inference (training=False) as TensorFlow ops, optimised or as it is.

    Optimised: BatchNormalization folded into the layer before it, each UpSampling2D(2) +
    Conv2D('same') turned into a phase-kernel convolution on the coarse grid, activations kept on
    that grid, and depth_to_space where folding further would cost more FLOPs (for the recipe's
    28x28 generator, once, at the end). Raises DcganError for a model that is not a
    generator, or (optimize=True) for a layer the rewrite does not know.
    """
    latent_dim = check_generator(keras_generator)
    classes = generator_classes(keras_generator)
    network = keras_generator.get_layer("trunk") if classes else keras_generator
    original = _keras_flops(network)
    if not optimize:
        return InferenceFunction(keras_generator, None, latent_dim, original, original, classes)
    steps, flops = _plan(network, latent_dim + (classes or 0))
    if classes:
        flops -= _split_class_rows(steps, latent_dim)
    return InferenceFunction(keras_generator, steps, latent_dim, flops, original, classes)


def generator_classes(model) -> int | None:
    """K of a class-conditional generator (``trainer.models``), else None."""
    try:
        one_hot = model.get_layer("one_hot")
        model.get_layer("trunk")
    except ValueError:
        return None
    return int(one_hot.num_tokens)


def _split_class_rows(steps: list[_Step], latent_dim: int) -> int:
    """The first MatMul's one-hot rows as a table gathered by label; returns the FLOPs saved."""
    first = steps[0]
    if first.kind != "matmul":
        raise DcganError("cannot optimise this conditional generator: it does not start with a Dense layer; "
                         "export with --no-optimize")
    kernel = first.params["kernel"]
    steps[0] = _Step("class_matmul", {"kernel": kernel[:latent_dim], "table": kernel[latent_dim:],
                                      "bias": first.params["bias"]})
    return 2 * (kernel.shape[0] - latent_dim) * kernel.shape[1]


def check_generator(model) -> int:
    """latent size of a [N, latent] (and, conditional, [N] labels) -> [N, S, S, C] model, or
    DcganError saying what it is instead."""
    name = getattr(model, "name", type(model).__name__)
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except Exception:  # a model never built has no symbolic inputs
        raise DcganError(f"model {name!r} is not a generator: it has no defined input shape") from None
    in_shapes = [tuple(t.shape) for t in inputs]
    out_shapes = [tuple(t.shape) for t in outputs]
    labels_ok = len(in_shapes) == 1 or (len(in_shapes) == 2 and len(in_shapes[1]) == 1
                                        and generator_classes(model) is not None)
    if (not labels_ok or len(in_shapes[0]) != 2 or not in_shapes[0][1]
            or len(out_shapes) != 1 or not _is_image_shape(out_shapes[0][1:])):
        raise DcganError(
            f"model {name!r} is not a generator: expected input [N, latent] (and labels [N]) -> output [N, S, S, 1 or 3] "
            f"(S one of {', '.join(map(str, IMAGE_SIZES))}), found input {_shapes(in_shapes)} -> "
            f"output {_shapes(out_shapes)}"
        )
    return int(in_shapes[0][1])


def _is_image_shape(shape) -> bool:
    return len(shape) == 3 and shape[0] == shape[1] and shape[0] in IMAGE_SIZES and shape[2] in (1, 3)


def _shapes(shapes) -> str:
    text = ", ".join("[" + ", ".join("N" if d is None else str(d) for d in s) + "]" for s in shapes)
    return text or "none"


def _keras_flops(model) -> int:
    total = 0
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind == "Dense":
            total += 2 * int(np.prod(layer.kernel.shape))
        elif kind == "Conv2D":
            _, h, w, _ = layer.output.shape
            total += subpixel.conv_flops(h, w, layer.kernel.shape)
    return total


def _layers(model):
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


# What a depth_to_space costs, in FLOPs per value it moves. It computes nothing, but it is a
# strided copy of the whole tensor, and the convolution after it runs on few channels: measured
# (benchmarks/sample_speed.py, onnxruntime, 2 cores), one more depth_to_space in the 28x28 graph
# (saving 2.7 of 33.8 MFLOPs per image) made it 1.28x slower, and in the 32x32x3 graph (saving
# 10.6 of 53.5) 1.31x slower: both fit about 1,000 FLOPs per value moved (docs/export.md).
DEPTH_TO_SPACE_FLOPS_PER_VALUE = 1000

_IDENTITY_LAYERS = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"}


class _Planner:
    """Walks a Sequential generator layer by layer, emitting the optimised steps (numpy, float64
    until the end); one handler per layer kind, in ``_HANDLERS``.

    The tensor is tracked as the coarse grid of depth_to_space(factor) of the true tensor, which
    the final step expands; per-channel parameters are tiled over the factor**2 phases.
    """

    def __init__(self, latent_dim: int, expand_before: frozenset[int] = frozenset()):
        self.expand_before = expand_before  # indices of the Conv2D layers to run on the true grid
        self.convs = 0  # Conv2D layers seen so far
        self.moved = 0  # values all the depth_to_space steps move, per image
        self.steps: list[_Step] = []
        self.factor = 1
        self.height = self.width = None  # coarse grid size once the tensor is an image
        self.channels = latent_dim  # true channel count
        self.flops = 0
        self.upsample_pending = False
        self.linear_open = False  # the last step is a matmul/conv nothing elementwise has touched yet

    def plan(self, model) -> tuple[list[_Step], int]:
        if type(model).__name__ != "Sequential":
            raise DcganError("can only optimise a Sequential generator; export it with --no-optimize")
        for layer in _layers(model):
            kind = type(layer).__name__
            if self.upsample_pending and kind != "Conv2D":
                raise _unsupported(layer, ", UpSampling2D must be followed by Conv2D")
            if kind in _IDENTITY_LAYERS:
                continue
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise _unsupported(layer)
            handler(self, layer)
        if self.upsample_pending:
            raise DcganError("cannot optimise a generator that ends with UpSampling2D; export with --no-optimize")
        if self.factor > 1:
            self._expand()
        _reshape_as_chw(self.steps)
        for step in self.steps:
            step.params = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v)
                           for k, v in step.params.items()}
        return self.steps, int(self.flops)

    # -- one handler per layer kind ---------------------------------------------------------------

    def dense(self, layer) -> None:
        if self.height is not None:
            raise _unsupported(layer, " on an image")
        kernel, bias = _kernel_bias(layer)
        self.steps.append(_Step("matmul", {"kernel": kernel, "bias": bias}))
        self.flops += 2 * kernel.size
        self.channels = kernel.shape[1]
        self._linear_then(layer)

    def conv(self, layer) -> None:
        if not subpixel.is_same_odd_conv(layer) or self.height is None:
            raise _unsupported(layer, ", only odd square stride-1 'same' NHWC convolutions")
        kernel, bias = _kernel_bias(layer)
        if self.convs in self.expand_before and self.factor > 1:
            self._expand()  # run this stage on the true grid: fold from here on
        self.convs += 1
        out_channels = kernel.shape[-1]
        if self.upsample_pending:
            kernel = subpixel.upsample_conv_kernel(kernel)
            bias = np.tile(bias, 4)
        kernel = subpixel.coarse_grid_kernel(kernel, self.factor)
        bias = subpixel.tile_phases(bias, self.factor)
        if self.upsample_pending:
            perm = subpixel.nest_depth_to_space_channels(kernel.shape[-1], self.factor, 2, out_channels)
            kernel, bias = kernel[..., perm], bias[perm]
            self.factor *= 2
            self.upsample_pending = False
        self.steps.append(_Step("conv", {"kernel": kernel, "bias": bias}))
        self.flops += subpixel.conv_flops(self.height, self.width, kernel.shape)
        self.channels = out_channels
        self._linear_then(layer)

    def batch_norm(self, layer) -> None:
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            raise _unsupported(layer, ", normalising an axis other than the last")
        gamma = None if layer.gamma is None else np.asarray(layer.gamma.numpy())
        beta = None if layer.beta is None else np.asarray(layer.beta.numpy())
        mean = np.asarray(layer.moving_mean.numpy())
        variance = np.asarray(layer.moving_variance.numpy())
        if self.linear_open:
            last = self.steps[-1].params
            # The last linear step's channels are its true channels tiled over the phases.
            reps = last["kernel"].shape[-1] // mean.size
            last["kernel"], last["bias"] = subpixel.fold_batchnorm(
                last["kernel"], last["bias"], *(None if v is None else np.tile(v, reps)
                                                for v in (gamma, beta, mean, variance)),
                layer.epsilon)
        else:
            scale, shift = subpixel.fold_batchnorm(np.ones((1, mean.size)), None, gamma, beta,
                                                   mean, variance, layer.epsilon)
            self.steps.append(_Step("affine", {"scale": subpixel.tile_phases(scale[0], self.factor),
                                               "shift": subpixel.tile_phases(shift, self.factor)}))

    def leaky_relu(self, layer) -> None:
        self.steps.append(_Step("act", {"name": "leaky_relu", "alpha": float(layer.negative_slope)}))
        self.linear_open = False

    def relu(self, layer) -> None:
        if layer.max_value is not None or float(layer.threshold) != 0.0:
            raise _unsupported(layer, ", only a plain ReLU")
        slope = float(layer.negative_slope)
        self.steps.append(_Step("act", {"name": "leaky_relu", "alpha": slope} if slope else {"name": "relu"}))
        self.linear_open = False

    def activation(self, layer) -> None:
        self._activation(layer.activation, layer)

    def reshape(self, layer) -> None:
        shape = tuple(int(d) for d in layer.target_shape)
        if self.height is not None or len(shape) != 3:
            raise _unsupported(layer, ", only a vector -> [h, w, c] reshape")
        self.height, self.width, self.channels = shape
        self.steps.append(_Step("reshape", {"shape": shape}))
        self.linear_open = False

    def upsample(self, layer) -> None:
        if not subpixel.is_nearest_upsample_2x(layer) or self.height is None:
            raise _unsupported(layer, ", only size 2 nearest NHWC")
        self.upsample_pending = True
        self.linear_open = False

    # -- shared by the handlers -------------------------------------------------------------------

    def _expand(self) -> None:
        """depth_to_space of what is folded so far: the tensor is on its true grid again."""
        self.steps.append(_Step("depth_to_space", {"factor": self.factor}))
        self.moved += self.height * self.width * self.factor**2 * self.channels
        self.height, self.width, self.factor = self.height * self.factor, self.width * self.factor, 1

    def _linear_then(self, layer) -> None:
        """After a matmul or conv: its own activation, if any, closes it to BatchNorm folding."""
        self.linear_open = True
        self._activation(layer.activation, layer)

    def _activation(self, fn, layer) -> None:
        name = getattr(fn, "__name__", str(fn))
        if name == "linear":
            return
        if name not in ("relu", "tanh", "sigmoid", "leaky_relu"):
            raise _unsupported(layer, f", activation {name}")
        self.steps.append(_Step("act", {"name": name, "alpha": 0.2}))
        self.linear_open = False


_HANDLERS = {
    "Dense": _Planner.dense,
    "Conv2D": _Planner.conv,
    "BatchNormalization": _Planner.batch_norm,
    "LeakyReLU": _Planner.leaky_relu,
    "ReLU": _Planner.relu,
    "Activation": _Planner.activation,
    "Reshape": _Planner.reshape,
    "UpSampling2D": _Planner.upsample,
}


def _unsupported(layer, why: str = "") -> DcganError:
    return DcganError(f"cannot optimise layer {layer.name!r} ({type(layer).__name__}{why}); "
                      "export with --no-optimize")


def _plan(model, latent_dim: int) -> tuple[list[_Step], int]:
    """The cheapest of the plans that expand the folded tensor before any subset of the
    convolutions: FLOPs plus what their depth_to_space steps cost (at most 2^5 plans to compare)."""
    convs = sum(type(layer).__name__ == "Conv2D" for layer in _layers(model))
    if convs > 6:
        return _Planner(latent_dim, frozenset(range(convs))).plan(model)  # expand before every stage
    best = None
    for mask in range(2 ** max(convs - 1, 0)):
        expand_before = frozenset(i + 1 for i in range(convs - 1) if mask >> i & 1)
        planner = _Planner(latent_dim, expand_before)
        steps, flops = planner.plan(model)
        cost = (flops + DEPTH_TO_SPACE_FLOPS_PER_VALUE * planner.moved, len(expand_before))
        if best is None or cost < best[0]:
            best = (cost, steps, flops)
    return best[1], best[2]


def _reshape_as_chw(steps: list[_Step]) -> None:
    """matmul (+ elementwise) + reshape to [h, w, c]: emit the dense columns in (c, h, w) order.

    tf2onnx runs convolutions NCHW; without this the graph transposes every image after the
    dense layer. Elementwise steps in between must be per-column (activations) to be reordered.
    """
    for i, step in enumerate(steps):
        if step.kind != "reshape":
            continue
        j = i - 1
        while j >= 0 and steps[j].kind == "act":
            j -= 1
        if j < 0 or steps[j].kind != "matmul":
            return
        h, w, c = step.params["shape"]
        order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        dense = steps[j].params
        dense["kernel"], dense["bias"] = dense["kernel"][:, order], dense["bias"][order]
        steps[i] = _Step("nhwc_from_chw", {"shape": (c, h, w)})
        return


def _kernel_bias(layer):
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    bias = np.zeros(kernel.shape[-1]) if layer.bias is None else np.asarray(layer.bias.numpy(), np.float64)
    return kernel, bias

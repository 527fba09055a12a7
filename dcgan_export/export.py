"""Keras generator -> ONNX file that computes the same images with a third of the work.

The exported graph is checked against the original Keras generator in onnxruntime before a single
byte is written (the parity gate); the file then appears atomically, so a failed or interrupted
export never leaves a broken or half-written model behind.

Optimised graph for the recipe generator (see ``subpixel.py`` for the algebra)::

    z -> MatMul(BN folded) -> LeakyReLU -> [7x7x128]
      -> Conv3x3(128 -> 256, phase kernels of up1+conv1, BN folded) -> LeakyReLU
      -> Conv3x3(256 -> 16, phase kernels of up2+conv2 re-indexed onto the 7x7 grid) -> tanh
      -> DepthToSpace(4) -> images [N, 28, 28, 1]

TensorFlow is imported inside the functions: ``dcgan`` commands other than export never pay for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import subpixel
from .atomic import atomic_write_bytes
from .errors import DcganError, first_line
from .runtime import IMAGES_OUTPUT, PIXELS_OUTPUT, open_session, to_pixels

GENERATOR_FILENAME = "generator.keras"
IMAGE_SHAPE = (28, 28, 1)
PARITY_SEED = 20240611
PARITY_VECTORS = 1024
PARITY_BATCH_SIZES = (1, 257)
EDGE_NORM = 10.0
UNKNOWN = "unknown"


# --- the inference function ---------------------------------------------------------------------


@dataclass
class _Step:
    """One operation of the optimised graph, with numpy float32 parameters."""

    kind: str  # matmul | conv | affine | act | reshape | nhwc_from_chw | depth_to_space
    params: dict = field(default_factory=dict)


class InferenceFunction:
    """``fn(z) -> {"images": float32 [N, 28, 28, 1], "pixels": uint8 [N, 28, 28]}`` in TensorFlow ops.

    Built by ``build_inference_function``; pass it to ``onnx_convert.convert_function`` or call it
    eagerly. ``flops_per_image`` counts the multiply-adds (x 2) of the dense and convolution
    layers it runs; ``original_flops_per_image`` those of the Keras generator.
    """

    def __init__(self, model, steps: list[_Step] | None, latent_dim: int,
                 flops_per_image: int, original_flops_per_image: int):
        self._model = model
        self.steps = steps
        self.optimized = steps is not None
        self.latent_dim = latent_dim
        self.flops_per_image = flops_per_image
        self.original_flops_per_image = original_flops_per_image

    @property
    def ends_in_tanh(self) -> bool:
        """float32 tanh lies in [-1, 1] and (x + 1) * 127.5 rounds monotonically: no clip needed."""
        last = [step for step in self.steps or [] if step.kind != "depth_to_space"][-1:]
        return bool(last) and last[0].kind == "act" and last[0].params["name"] == "tanh"

    def input_signature(self):
        import tensorflow as tf

        return [tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")]

    def images(self, z):
        import tensorflow as tf

        if self.steps is None:
            return tf.cast(self._model(z, training=False), tf.float32)
        x = z
        for step in self.steps:
            x = _apply(step, x)
        return x

    def __call__(self, z):
        import tensorflow as tf

        images = self.images(z)
        scaled = tf.round((images + 1.0) * 127.5)  # round half to even, as numpy.rint / ONNX Round
        if not self.ends_in_tanh:
            scaled = tf.clip_by_value(scaled, 0.0, 255.0)
        pixels = tf.cast(scaled, tf.uint8)
        return {IMAGES_OUTPUT: images, PIXELS_OUTPUT: tf.squeeze(pixels, axis=-1)}

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
            elif step.kind == "act":
                names.append(p["name"])
            elif step.kind == "depth_to_space":
                names.append(f"DepthToSpace({p['factor']})")
            elif step.kind == "affine":
                names.append("Affine")
        return " -> ".join(names)


def _apply(step: _Step, x):
    import tensorflow as tf

    p = step.params
    if step.kind == "matmul":
        return tf.matmul(x, p["kernel"]) + p["bias"]
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
    that grid, and one depth_to_space at the end. Raises DcganError for a model that is not a
    generator, or (optimize=True) for a layer the rewrite does not know.
    """
    latent_dim = check_generator(keras_generator)
    original = _keras_flops(keras_generator)
    if not optimize:
        return InferenceFunction(keras_generator, None, latent_dim, original, original)
    steps, flops = _plan(keras_generator, latent_dim)
    return InferenceFunction(keras_generator, steps, latent_dim, flops, original)


def check_generator(model) -> int:
    """latent size of a [N, latent] -> [N, 28, 28, 1] model, or DcganError saying what it is instead."""
    name = getattr(model, "name", type(model).__name__)
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except Exception:  # a model never built has no symbolic inputs
        raise DcganError(f"model {name!r} is not a generator: it has no defined input shape") from None
    in_shapes = [tuple(t.shape) for t in inputs]
    out_shapes = [tuple(t.shape) for t in outputs]
    if (len(in_shapes) != 1 or len(in_shapes[0]) != 2 or not in_shapes[0][1]
            or len(out_shapes) != 1 or tuple(out_shapes[0][1:]) != IMAGE_SHAPE):
        raise DcganError(
            f"model {name!r} is not a generator: expected input [N, latent] -> output [N, 28, 28, 1], "
            f"found input {_shapes(in_shapes)} -> output {_shapes(out_shapes)}"
        )
    return int(in_shapes[0][1])


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


_IDENTITY_LAYERS = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"}


def _plan(model, latent_dim: int):
    """Walk a Sequential generator and emit the optimised steps (numpy, float64 until the end).

    The tensor is tracked as the coarse grid of depth_to_space(factor) of the true tensor, which
    the final step expands; per-channel parameters are tiled over the factor**2 phases.
    """
    if type(model).__name__ != "Sequential":
        raise DcganError("can only optimise a Sequential generator; export it with --no-optimize")
    steps: list[_Step] = []
    factor = 1
    height = width = None  # coarse grid size once the tensor is an image
    channels = latent_dim  # true channel count
    flops = 0
    upsample_pending = False
    linear_open = False  # the last step is a matmul/conv nothing elementwise has touched yet

    def unsupported(layer, why=""):
        return DcganError(f"cannot optimise layer {layer.name!r} ({type(layer).__name__}{why}); "
                          "export with --no-optimize")

    def add_activation(fn, layer):
        name = getattr(fn, "__name__", str(fn))
        if name == "linear":
            return
        if name not in ("relu", "tanh", "sigmoid", "leaky_relu"):
            raise unsupported(layer, f", activation {name}")
        steps.append(_Step("act", {"name": name, "alpha": 0.2}))

    for layer in _layers(model):
        kind = type(layer).__name__
        if upsample_pending and kind != "Conv2D":
            raise unsupported(layer, ", UpSampling2D must be followed by Conv2D")
        if kind in _IDENTITY_LAYERS:
            continue
        if kind == "Dense":
            if height is not None:
                raise unsupported(layer, " on an image")
            kernel, bias = _kernel_bias(layer)
            steps.append(_Step("matmul", {"kernel": kernel, "bias": bias}))
            flops += 2 * kernel.size
            channels = kernel.shape[1]
            linear_open = True
            add_activation(layer.activation, layer)
            linear_open = linear_open and getattr(layer.activation, "__name__", "") == "linear"
        elif kind == "Conv2D":
            k = layer.kernel.shape
            if (tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1
                    or layer.padding != "same" or layer.data_format != "channels_last"
                    or k[0] != k[1] or k[0] % 2 == 0 or height is None):
                raise unsupported(layer, ", only odd square stride-1 'same' NHWC convolutions")
            kernel, bias = _kernel_bias(layer)
            out_channels = kernel.shape[-1]
            if upsample_pending:
                kernel = subpixel.upsample_conv_kernel(kernel)
                bias = np.tile(bias, 4)
            kernel = subpixel.coarse_grid_kernel(kernel, factor)
            bias = subpixel.tile_phases(bias, factor)
            if upsample_pending:
                perm = subpixel.nest_depth_to_space_channels(kernel.shape[-1], factor, 2, out_channels)
                kernel, bias = kernel[..., perm], bias[perm]
                factor *= 2
                upsample_pending = False
            steps.append(_Step("conv", {"kernel": kernel, "bias": bias}))
            flops += subpixel.conv_flops(height, width, kernel.shape)
            channels = out_channels
            linear_open = True
            add_activation(layer.activation, layer)
            linear_open = linear_open and getattr(layer.activation, "__name__", "") == "linear"
        elif kind == "BatchNormalization":
            if layer.axis not in (-1, len(layer.input.shape) - 1):
                raise unsupported(layer, ", normalising an axis other than the last")
            gamma = None if layer.gamma is None else np.asarray(layer.gamma.numpy())
            beta = None if layer.beta is None else np.asarray(layer.beta.numpy())
            mean = np.asarray(layer.moving_mean.numpy())
            variance = np.asarray(layer.moving_variance.numpy())
            if linear_open:
                last = steps[-1].params
                # The last linear step's channels are its true channels tiled over the phases.
                reps = last["kernel"].shape[-1] // mean.size
                last["kernel"], last["bias"] = subpixel.fold_batchnorm(
                    last["kernel"], last["bias"], *(None if v is None else np.tile(v, reps)
                                                    for v in (gamma, beta, mean, variance)),
                    layer.epsilon)
            else:
                scale, shift = subpixel.fold_batchnorm(np.ones((1, mean.size)), None, gamma, beta,
                                                       mean, variance, layer.epsilon)
                steps.append(_Step("affine", {"scale": subpixel.tile_phases(scale[0], factor),
                                              "shift": subpixel.tile_phases(shift, factor)}))
        elif kind == "LeakyReLU":
            steps.append(_Step("act", {"name": "leaky_relu", "alpha": float(layer.negative_slope)}))
            linear_open = False
        elif kind == "ReLU":
            if layer.max_value is not None or float(layer.threshold) != 0.0:
                raise unsupported(layer, ", only a plain ReLU")
            slope = float(layer.negative_slope)
            steps.append(_Step("act", {"name": "leaky_relu", "alpha": slope} if slope else {"name": "relu"}))
            linear_open = False
        elif kind == "Activation":
            add_activation(layer.activation, layer)
            linear_open = linear_open and getattr(layer.activation, "__name__", "") == "linear"
        elif kind == "Reshape":
            shape = tuple(int(d) for d in layer.target_shape)
            if height is not None or len(shape) != 3:
                raise unsupported(layer, ", only a vector -> [h, w, c] reshape")
            height, width, channels = shape
            steps.append(_Step("reshape", {"shape": shape}))
            linear_open = False
        elif kind == "UpSampling2D":
            if (tuple(layer.size) != (2, 2) or layer.interpolation != "nearest"
                    or layer.data_format != "channels_last" or height is None):
                raise unsupported(layer, ", only size 2 nearest NHWC")
            upsample_pending = True
            linear_open = False
        else:
            raise unsupported(layer)
    if upsample_pending:
        raise DcganError("cannot optimise a generator that ends with UpSampling2D; export with --no-optimize")
    if factor > 1:
        steps.append(_Step("depth_to_space", {"factor": factor}))
    _reshape_as_chw(steps)
    for step in steps:
        step.params = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v)
                       for k, v in step.params.items()}
    return steps, int(flops)


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


# --- source, conversion, parity gate, file --------------------------------------------------------


def resolve_source(src: str | os.PathLike) -> tuple[Path, Path | None]:
    """(generator.keras path, run directory or None) or DcganError."""
    path = Path(src)
    if not path.exists():
        raise DcganError(f"{path}: no such file or directory")
    if path.is_dir():
        model = path / GENERATOR_FILENAME
        if not model.is_file():
            raise DcganError(f"{path}: not a run directory with a trained generator (no {GENERATOR_FILENAME})")
        return model, path
    if path.suffix != ".keras":  # checked here, before TensorFlow's seconds of import time
        raise DcganError(f"{path}: not a Keras model file (expected a .keras file)")
    if path.name == GENERATOR_FILENAME and (path.parent / "config.json").is_file():
        return path, path.parent  # generator.keras inside a run directory: use its records too
    return path, None


def check_output_path(out: str | os.PathLike, source: Path | None = None) -> Path:
    """Fail before any slow work if ``out`` can never be written, or would overwrite ``source``."""
    path = Path(out)
    parent = path.parent
    if path.is_dir():
        raise DcganError(f"--out {path}: is a directory; give a file name such as {path / 'generator.onnx'}")
    if source is not None and (path.resolve() == source.resolve()
                               or (path.exists() and os.path.samefile(path, source))):
        raise DcganError(f"--out {path}: is the source model itself; give another file name")
    if path.suffix != ".onnx":
        raise DcganError(f"--out must end in .onnx, got {path}")
    if not parent.exists():
        raise DcganError(f"--out {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise DcganError(f"--out {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DcganError(f"--out {path}: directory {parent} is not writable")
    return path


def load_generator(path: Path):
    """keras.models.load_model(safe_mode=True), with a one-line error for anything that is not one."""
    if path.suffix != ".keras":  # before the import: a typo fails in milliseconds
        raise DcganError(f"{path}: not a Keras model file (expected a .keras file)")
    _quiet_tensorflow()
    import keras

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise DcganError(f"{path}: not a loadable Keras model ({first_line(exc)})") from None
    if not isinstance(model, keras.Model):
        raise DcganError(f"{path}: not a Keras model")
    return as_float32(model)


def as_float32(model):
    """The same model computing in float32 (a mixed_float16 one is cloned with its weights).

    The exported graph is float32; comparing it with float16 arithmetic would fail the gate on
    rounding alone, and --no-optimize would export the float16 casts.
    """
    import keras

    if all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model

    def to_float32(node):
        if isinstance(node, dict):
            return {k: ("float32" if k == "dtype" and _is_policy(v) else to_float32(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [to_float32(v) for v in node]
        return node

    try:
        clone = type(model).from_config(to_float32(model.get_config()))
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise DcganError(f"cannot run model {model.name!r} in float32 for export ({first_line(exc)})") from None
    return clone


def _is_policy(value) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"))


def run_records(run_dir: Path | None, echo: Callable[[str], None]) -> dict[str, str]:
    """Data set name/sha256 and training iterations from a run directory, "unknown" where absent."""
    records = {"dataset": UNKNOWN, "dataset_sha256": UNKNOWN, "training_iterations": UNKNOWN}
    if run_dir is None:
        return records
    config = _read_json(run_dir / "config.json", echo)
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict):
        records["dataset"] = str(data.get("name", UNKNOWN))
        records["dataset_sha256"] = str(data.get("sha256", UNKNOWN))
    state = _read_json(run_dir / "state.json", echo)
    if isinstance(state, dict) and isinstance(state.get("iteration"), int):
        records["training_iterations"] = str(state["iteration"])
    return records


def _read_json(path: Path, echo):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        echo(f"warning: ignoring {path} ({first_line(exc)})")
        return None


def convert(function: InferenceFunction):
    """The inference function as an ONNX model with a dynamic batch dimension named N."""
    _quiet_tensorflow()
    import onnx

    from .onnx_convert import convert_function, name_batch_dimension

    model = name_batch_dimension(convert_function(function, function.input_signature(),
                                                  [IMAGES_OUTPUT, PIXELS_OUTPUT]))
    onnx.checker.check_model(model, full_check=True)
    return model


def parity_noise(latent_dim: int) -> np.ndarray:
    """PARITY_VECTORS seeded standard-normal vectors, then the zero vector and one of norm 10."""
    rng = np.random.default_rng(PARITY_SEED)
    z = rng.standard_normal((PARITY_VECTORS, latent_dim)).astype(np.float32)
    direction = rng.standard_normal(latent_dim)
    edge = np.stack([np.zeros(latent_dim), direction * (EDGE_NORM / np.linalg.norm(direction))])
    return np.concatenate([z, edge.astype(np.float32)])


def parity_check(model_bytes: bytes, keras_generator, atol: float) -> dict:
    """Run the ONNX model in onnxruntime and the Keras generator (training=False) on the same noise."""
    latent_dim = check_generator(keras_generator)
    z = parity_noise(latent_dim)
    reference = np.concatenate([np.asarray(keras_generator(z[i:i + 257], training=False), np.float32)
                                for i in range(0, len(z), 257)])
    # max() skips NaN, so a broken reference (NaN weights) would otherwise compare as "equal"
    reference_finite = bool(np.isfinite(reference).all())
    session = open_session(model_bytes, label="exported model")
    input_name = session.get_inputs()[0].name
    max_diff = 0.0
    sum_diff = 0.0
    pixels_differing = 0
    pixels_inconsistent = 0
    finite = True
    with np.errstate(invalid="ignore"):  # NaN images cast to junk pixels: reported below, not warned
        reference_pixels = to_pixels(reference)
        for batch_size in PARITY_BATCH_SIZES:
            for i in range(0, len(z), batch_size):
                images, pixels = session.run([IMAGES_OUTPUT, PIXELS_OUTPUT], {input_name: z[i:i + batch_size]})
                if images.shape != reference[i:i + batch_size].shape or pixels.dtype != np.uint8:
                    raise DcganError(f"exported model returned images {images.shape} / pixels {pixels.dtype}, "
                                     f"expected {reference[i:i + batch_size].shape} / uint8")
                finite = finite and bool(np.isfinite(images).all())
                diff = np.abs(images.astype(np.float64) - reference[i:i + batch_size])
                max_diff = max(max_diff, float(diff.max()))
                sum_diff += float(diff.sum())
                pixels_differing += int((pixels != reference_pixels[i:i + batch_size]).sum())
                pixels_inconsistent += int((pixels != to_pixels(images)).sum())
    runs = len(PARITY_BATCH_SIZES)
    mean_diff = sum_diff / (runs * reference.size)
    return {
        "vectors": len(z),
        "batch_sizes": list(PARITY_BATCH_SIZES),
        "max_abs_diff": max_diff if finite and reference_finite else float("inf"),
        "mean_abs_diff": mean_diff,
        "pixels_differing": pixels_differing,
        "pixels_compared": runs * reference_pixels.size,
        "pixels_output_mismatches": pixels_inconsistent,
        "atol": atol,
        "reference_finite": reference_finite,
        "passed": reference_finite and finite and max_diff <= atol and pixels_inconsistent == 0,
    }


def metadata(function: InferenceFunction, records: dict, source: Path, parity: dict) -> dict[str, str]:
    from . import __version__

    return {
        "latent_dim": str(function.latent_dim),
        "input": f"z: float32 [N, {function.latent_dim}], standard normal noise",
        "outputs": f"{IMAGES_OUTPUT},{PIXELS_OUTPUT}",
        IMAGES_OUTPUT: "float32 [N, 28, 28, 1] NHWC, range [-1, 1]",
        PIXELS_OUTPUT: "uint8 [N, 28, 28], range [0, 255], round((images + 1) * 127.5)",
        **records,
        "source_file": source.name,
        "source_sha256": _sha256(source),
        "dcgan_version": __version__,
        "optimized": "true" if function.optimized else "false",
        "graph": function.describe(),
        "flops_per_image_original": str(function.original_flops_per_image),
        "flops_per_image": str(function.flops_per_image),
        "parity_reference": "Keras generator, training=False",
        "parity_vectors": str(parity["vectors"]),
        "parity_batch_sizes": ",".join(map(str, parity["batch_sizes"])),
        "parity_max_abs_diff": f"{parity['max_abs_diff']:.3e}",
        "parity_mean_abs_diff": f"{parity['mean_abs_diff']:.3e}",
        "parity_pixels_differing": str(parity["pixels_differing"]),
        "parity_atol": f"{parity['atol']:g}",
    }


def format_report(report: dict) -> str:
    mflops = lambda f: f"{f / 1e6:.1f}"  # noqa: E731
    lines = [
        f"export {report['source']} -> {report['out']} ({'optimised' if report['optimized'] else 'not optimised'})",
        f"  graph:         {report['graph']}",
        f"  FLOPs/image:   {mflops(report['flops_before'])} M (Keras) -> {mflops(report['flops_after'])} M (exported)",
        f"  parity:        {report['vectors']} vectors x batch sizes {report['batch_sizes']} vs Keras (training=False)",
        f"  max |diff|:    {report['max_abs_diff']:.3e} (atol {report['atol']:g})",
        f"  mean |diff|:   {report['mean_abs_diff']:.3e}",
        f"  uint8 pixels:  {report['pixels_differing']} of {report['pixels_compared']} differ from Keras"
        f" ({report['pixels_output_mismatches']} pixels-output mismatches vs its own images)",
        f"  file size:     {report['file_size'] / 1e6:.2f} MB",
        f"  time:          {report['seconds']:.1f} s",
        f"  result:        {'PASSED, written' if report['passed'] else 'FAILED, nothing written'}",
    ]
    return "\n".join(lines)


def export_generator(src: str | os.PathLike, out: str | os.PathLike, optimize: bool = True,
                     atol: float = 1e-4, echo: Callable[[str], None] = print) -> dict:
    """Export SRC (run directory or .keras file) to ``out``; returns the report dict.

    Raises DcganError (exit code 2) for bad input and (exit code 1) when the parity gate fails;
    in both cases nothing is written and an existing ``out`` is left untouched.
    """
    started = time.perf_counter()
    if not (atol >= 0):
        raise DcganError(f"--atol must be >= 0, got {atol}")
    source, run_dir = resolve_source(src)
    out = check_output_path(out, source)
    records = run_records(run_dir, echo)
    keras_generator = load_generator(source)
    function = build_inference_function(keras_generator, optimize=optimize)
    model = convert(function)
    if optimize:
        ops = {node.op_type for node in model.graph.node}
        wants_shuffle = any(step.kind == "depth_to_space" for step in function.steps)
        if ("DepthToSpace" in ops) != wants_shuffle or ops & {"Resize", "Tile", "Upsample"}:
            raise DcganError(f"optimised graph has unexpected operators {sorted(ops)}; export with --no-optimize")
    parity = parity_check(model.SerializeToString(), keras_generator, atol)
    import onnx

    onnx.helper.set_model_props(model, metadata(function, records, source, parity))
    model.doc_string = "DCGAN generator: z [N, latent] -> images [N, 28, 28, 1] in [-1, 1], pixels uint8"
    data = model.SerializeToString()
    report = {
        "source": str(source), "out": str(out), "optimized": function.optimized, "graph": function.describe(),
        "flops_before": function.original_flops_per_image, "flops_after": function.flops_per_image,
        **parity, "file_size": len(data), "records": records,
    }
    if parity["passed"]:
        try:
            atomic_write_bytes(out, data)
        except OSError as exc:
            raise DcganError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    report["seconds"] = time.perf_counter() - started
    echo(format_report(report))
    if not parity["passed"]:
        why = ("the Keras generator's own output is not finite (NaN or inf)" if not report["reference_finite"]
               else "non-finite output" if report["max_abs_diff"] == float("inf")
               else f"max |diff| {report['max_abs_diff']:.3e} > atol {atol:g}"
               if report["max_abs_diff"] > atol
               else f"{report['pixels_output_mismatches']} 'pixels' values disagree with 'images'")
        raise DcganError(f"parity gate failed ({why}); nothing written to {out}", exit_code=1)
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)

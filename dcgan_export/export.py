"""Keras generator -> ONNX file that computes the same images with a third of the work.

The exported graph is checked against the original Keras generator in onnxruntime before a single
byte is written (the parity gate); the file then appears atomically, so a failed or interrupted
export never leaves a broken or half-written model behind.

The steps: ``inference_graph.py`` plans the optimised graph, ``onnx_convert.py`` converts it,
``parity.py`` checks it against Keras; this module resolves the source and the output path,
records where the model came from in the ONNX metadata, and writes the file.

TensorFlow is imported inside the functions: ``dcgan`` commands other than export never pay for it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from .atomic import atomic_write_bytes
from .errors import DcganError, first_line
from .inference_graph import InferenceFunction, build_inference_function
from .parity import parity_check
from .contract import IMAGES_OUTPUT, PIXELS_OUTPUT, Meta
from .paths import check_output_file, file_sha256
from .run_dir import RunDir

def resolve_source(src: str | os.PathLike) -> tuple[Path, RunDir | None]:
    """(generator.keras path, its run directory or None) or DcganError."""
    path = Path(src)
    if not path.exists():
        raise DcganError(f"{path}: no such file or directory")
    if path.is_dir():
        run = RunDir(path)
        return run.model(RunDir.GENERATOR, "the run has not finished; resume it, or export a .keras file"), run
    if path.suffix != ".keras":  # checked here, before TensorFlow's seconds of import time
        raise DcganError(f"{path}: not a Keras model file (expected a .keras file)")
    if path.name == RunDir.GENERATOR and RunDir(path.parent).config.is_file():
        return path, RunDir(path.parent)  # generator.keras inside a run directory: use its records too
    return path, None


def check_output_path(out: str | os.PathLike, source: Path | None = None) -> Path:
    """Fail before any slow work if ``out`` can never be written, or would overwrite ``source``."""
    return check_output_file(out, "--out", suffixes=(".onnx",), protect={"source model": source})


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


def run_records(run: RunDir | None, echo: Callable[[str], None]) -> dict[str, str]:
    """Data set name/sha256 and training iterations from a run directory, "unknown" where absent."""
    records = {Meta.DATASET: Meta.UNKNOWN, Meta.DATASET_SHA256: Meta.UNKNOWN, Meta.TRAINING_ITERATIONS: Meta.UNKNOWN}
    if run is None:
        return records
    config = {}
    if run.config.exists():
        try:
            config = run.read_config()
        except DcganError as exc:
            echo(f"warning: ignoring run records ({exc})")
    data = config.get("data")
    if isinstance(data, dict):
        records[Meta.DATASET] = str(data.get("name", Meta.UNKNOWN))
        records[Meta.DATASET_SHA256] = str(data.get("sha256", Meta.UNKNOWN))
        if isinstance(data.get("class_names"), list):
            records[Meta.CLASS_NAMES] = json.dumps(data["class_names"])
    # generator.keras is written only when a run finishes: a resumed run that has not finished
    # (still training, or stopped) holds the previous finish's generator
    saved = run.generator_iteration()
    if saved is not None:
        records[Meta.TRAINING_ITERATIONS] = str(saved)
        iteration = run.read_state().get("iteration")
        if isinstance(iteration, int) and iteration != saved:
            echo(f"note: {run} has trained on to iteration {iteration} without finishing; "
                 f"generator.keras is from iteration {saved}")
    return records


def convert(function: InferenceFunction):
    """The inference function as an ONNX model with a dynamic batch dimension named N."""
    _quiet_tensorflow()
    import onnx

    from .onnx_convert import convert_function, name_batch_dimension

    model = name_batch_dimension(convert_function(function, function.input_signature(),
                                                  [IMAGES_OUTPUT, PIXELS_OUTPUT]))
    onnx.checker.check_model(model, full_check=True)
    return model


def metadata(function: InferenceFunction, records: dict, source: Path, parity: dict) -> dict[str, str]:
    from . import __version__

    h, w, c = function.image_shape
    inputs = f"z: float32 [N, {function.latent_dim}], standard normal noise"
    conditional = {}
    if function.num_classes:
        inputs += f"; labels: int64 [N], each image's class, 0 to {function.num_classes - 1}"
        names = json.loads(records.get(Meta.CLASS_NAMES, "null")) or [str(i) for i in range(function.num_classes)]
        if len(names) != function.num_classes:
            raise DcganError(f"the run records {len(names)} class names for a generator of {function.num_classes} classes")
        conditional = {Meta.CLASS_NAMES: json.dumps(names), "num_classes": str(function.num_classes)}
    return {
        "latent_dim": str(function.latent_dim),
        "input": inputs,
        "outputs": f"{IMAGES_OUTPUT},{PIXELS_OUTPUT}",
        IMAGES_OUTPUT: f"float32 [N, {h}, {w}, {c}] NHWC, range [-1, 1]",
        PIXELS_OUTPUT: f"uint8 [N, {h}, {w}{'' if c == 1 else f', {c}'}], range [0, 255], round((images + 1) * 127.5)",
        Meta.IMAGE_SIZE: str(h),
        Meta.CHANNELS: str(c),
        **records,
        **conditional,
        "source_file": source.name,
        "source_sha256": file_sha256(source),
        "dcgan_version": __version__,
        "optimized": "true" if function.optimized else "false",
        "graph": function.describe(),
        "flops_per_image_original": str(function.original_flops_per_image),
        "flops_per_image": str(function.flops_per_image),
        "parity_reference": "Keras generator, training=False",
        "parity_vectors": str(parity["vectors"]),
        **({"parity_blend_vectors": str(parity["blend_vectors"])} if parity.get("blend_vectors") else {}),
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
        f"  parity:        {report['vectors']} vectors"
        f"{f' + {blends} blends of classes' if (blends := report.get('blend_vectors')) else ''}"
        f" x batch sizes {report['batch_sizes']} vs Keras (training=False)",
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
    if not 0 <= atol <= 1:  # images are in [-1, 1]: a tolerance of 2 would pass any model (and NaN none)
        raise DcganError(f"--atol must be between 0 and 1, got {atol}")
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
    model.doc_string = (f"DCGAN generator: z [N, latent]{' and labels [N]' if function.num_classes else ''} -> "
                        f"images [N, {', '.join(map(str, function.image_shape))}] in [-1, 1], pixels uint8")
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



def _quiet_tensorflow() -> None:
    from .onnx_convert import use_tensorflow_backend

    use_tensorflow_backend()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)

"""What many tests share: running ``dcgan`` as a user would, a hand-built ONNX generator with the
exported contract (no TensorFlow needed), a run's loss log, and a Ctrl-C at a chosen iteration.

Imported by test modules as ``helpers`` (pytest puts tests/ on sys.path); fixtures live in
conftest.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def make_tiny_generator(path: Path, latent_dim: int = 100, seed: int = 0, with_pixels: bool = True,
                        dtype=np.float32, batch: int | str = "N", nan: bool = False,
                        shape: tuple = (28, 28, 1), class_names: list[str] | None = None) -> Path:
    """A small ONNX model that keeps the generator contract: z -> tanh(z @ W) as images (and pixels).

    ``shape`` is one image's (H, W, C); ``dtype`` (float32 or float64) and ``batch`` (a fixed
    size) make models that keep the contract loosely; ``nan`` one whose images are all NaN;
    ``class_names`` a class-conditional one: input ``labels`` int64 [N] adds row ``labels`` of a
    table to z @ W, and the metadata lists the names."""
    pixel_shape = list(shape[:2]) if shape[2] == 1 else list(shape)
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.DOUBLE if np.dtype(dtype) == np.float64 else TensorProto.FLOAT
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((latent_dim, int(np.prod(shape)))) / np.sqrt(latent_dim)).astype(dtype)
    nodes = [
        helper.make_node("MatMul", ["z", "W"], ["h0" if class_names else "h"]),
        helper.make_node("Tanh", ["h"], ["t0"]),
        helper.make_node("Mul" if nan else "Identity", ["t0", "nan"] if nan else ["t0"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["images"]),
    ]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array([-1, *shape], np.int64), "shape")]
    if nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, dtype), "nan"))
    inputs = [helper.make_tensor_value_info("z", elem, [batch, latent_dim])]
    if class_names:
        table = rng.standard_normal((len(class_names), int(np.prod(shape)))).astype(dtype)
        inits.append(numpy_helper.from_array(table, "E"))
        nodes[1:1] = [helper.make_node("Gather", ["E", "labels"], ["e"]), helper.make_node("Add", ["h0", "e"], ["h"])]
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, [batch]))
    outputs = [helper.make_tensor_value_info("images", elem, [batch, *shape])]
    if with_pixels:
        nodes += [
            helper.make_node("Add", ["t", "one"], ["a"]),
            helper.make_node("Mul", ["a", "half255"], ["b"]),
            helper.make_node("Round", ["b"], ["r"]),
            helper.make_node("Clip", ["r", "zero", "max255"], ["c"]),
            helper.make_node("Cast", ["c"], ["flat"], to=TensorProto.UINT8),
            helper.make_node("Reshape", ["flat", "pshape"], ["pixels"]),
        ]
        inits += [numpy_helper.from_array(np.array(v, dtype), n) for n, v in
                  [("one", 1.0), ("half255", 127.5), ("zero", 0.0), ("max255", 255.0)]]
        inits.append(numpy_helper.from_array(np.array([-1, *pixel_shape], np.int64), "pshape"))
        outputs.append(helper.make_tensor_value_info("pixels", TensorProto.UINT8, [batch, *pixel_shape]))
    graph = helper.make_graph(nodes, "tiny_generator", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = {"latent_dim": str(latent_dim), "note": "test fixture"}
    if class_names:
        props["class_names"] = json.dumps(class_names)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def run_dcgan(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the real ``dcgan`` CLI in a subprocess, as a user would."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dcgan_export.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def dcgan_in_process(*args: str, capsys):
    """Run the CLI in this process (fast: no interpreter start); return (exit code, stdout, stderr)."""
    from dcgan_export.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dcgan(*args: str, capsys):
    """Run the CLI in this process; return (exit code, stderr)."""
    code, _, err = dcgan_in_process(*args, capsys=capsys)
    return code, err


def randomize_batchnorm(layer, rng) -> None:
    """Moving statistics and affine parameters far from the identity defaults."""
    c = layer.moving_mean.shape[0]
    layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
    layer.beta.assign(rng.normal(0, 0.3, c).astype(np.float32))
    layer.moving_mean.assign(rng.normal(0, 0.5, c).astype(np.float32))
    layer.moving_variance.assign(rng.uniform(0.2, 3.0, c).astype(np.float32))


# Tiny, fast training runs that write no ONNX file (each export costs ~10 s); tests about
# the export at the end of a run leave --no-export out.
FAST = ["--batch-size", "8", "--sample-every", "5", "--quiet", "--no-export"]


def loss_rows(run_dir) -> list[dict]:
    with open(run_dir / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def loss_values(run_dir) -> list[list[str]]:
    """losses.csv without the timings: what must match between two runs that train alike."""
    return [[r[k] for k in r if k != "elapsed_s"] for r in loss_rows(run_dir)]


def press_ctrl_c_at(monkeypatch, iteration):
    """Make the next run in this process stop as Ctrl-C would at ``iteration``; returns the undo."""
    from trainer.callbacks import LossLog

    log_row = LossLog.on_iteration_end

    def interrupt(self, at, logs):
        if at == iteration:
            raise KeyboardInterrupt
        log_row(self, at, logs)

    monkeypatch.setattr(LossLog, "on_iteration_end", interrupt)
    return lambda: monkeypatch.setattr(LossLog, "on_iteration_end", log_row)


def load_benchmark():
    """benchmarks/serve_load.py as a module: it starts real ``dcgan serve`` processes for tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


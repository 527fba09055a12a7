"""Embedding the generator: the Python example, and Node.js (onnxruntime-node) giving the very
same pixels as Python for the same noise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, make_tiny_generator
from dcgan_export.runtime import Sampler

PY_EXAMPLE = ROOT / "examples" / "embed_python.py"
NODE_DIR = ROOT / "examples" / "node"
NODE_SCRIPT = NODE_DIR / "generate.js"
SHIPPED = ROOT / "models" / "generator.onnx"

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
    reason="Node.js example needs node and its packages: cd examples/node && npm ci --ignore-scripts"
    if NODE else "node is not installed",
)


def run_python_example(model, out_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PY_EXAMPLE), str(model), str(out_dir)],
                          capture_output=True, text=True, timeout=120)


def run_node(*args) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, str(NODE_SCRIPT), *map(str, args)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=120)


def python_then_node(model, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """Python writes noise.npy and its pixels; Node reads that noise; both pixel arrays."""
    py = run_python_example(model, tmp_path)
    assert py.returncode == 0, py.stderr
    node = run_node(model, tmp_path / "noise.npy", tmp_path / "node.npy")
    assert node.returncode == 0, node.stderr
    return np.load(tmp_path / "pixels.npy"), np.load(tmp_path / "node.npy")


def test_python_example_is_short_and_matches_the_sampler(tiny_generator_onnx, tmp_path):
    assert len(PY_EXAMPLE.read_text().splitlines()) <= 15
    result = run_python_example(tiny_generator_onnx, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "16 images" in result.stdout
    sampler = Sampler(tiny_generator_onnx)
    np.testing.assert_array_equal(np.load(tmp_path / "noise.npy"), sampler.noise(16, seed=0))
    pixels = np.load(tmp_path / "pixels.npy")
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 28, 28)
    np.testing.assert_array_equal(pixels, sampler.sample_pixels(16, seed=0))


@needs_node
def test_node_pixels_equal_python_pixels(tiny_generator_onnx, tmp_path):
    python, node = python_then_node(tiny_generator_onnx, tmp_path)
    assert node.dtype == np.uint8 and node.shape == (16, 28, 28)
    np.testing.assert_array_equal(node, python)


@needs_node
@pytest.mark.parametrize("with_pixels", [True, False], ids=["pixels-output", "images-only"])
def test_node_and_python_agree_on_an_rgb_model(tmp_path, with_pixels):
    model = make_tiny_generator(tmp_path / "rgb.onnx", shape=(32, 32, 3), with_pixels=with_pixels)
    python, node = python_then_node(model, tmp_path)
    assert node.shape == python.shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(node, python)
    result = run_node(model, tmp_path / "noise.npy", tmp_path / "pixels.json")
    assert result.returncode == 0 and "16 RGB images of 32x32" in result.stdout, result.stderr
    doc = json.loads((tmp_path / "pixels.json").read_text())
    assert doc["shape"] == [16, 32, 32, 3]
    np.testing.assert_array_equal(np.array(doc["pixels"], dtype=np.uint8), python)


@needs_node
def test_node_reads_json_noise_and_writes_json_pixels(tiny_generator_onnx, tmp_path):
    sampler = Sampler(tiny_generator_onnx)
    z = sampler.noise(5, seed=11).astype(np.float64)  # float64 in JSON, float32 in the model
    (tmp_path / "noise.json").write_text(json.dumps({"z": z.tolist()}))
    result = run_node(tiny_generator_onnx, tmp_path / "noise.json", tmp_path / "pixels.json")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "pixels.json").read_text())
    assert doc["shape"] == [5, 28, 28] and doc["dtype"] == "uint8"
    np.testing.assert_array_equal(np.array(doc["pixels"], dtype=np.uint8), sampler.generate_pixels(z))


@needs_node
def test_node_rounds_like_python_when_the_model_has_no_pixels_output(tmp_path):
    model = make_tiny_generator(tmp_path / "images_only.onnx", seed=3, with_pixels=False)
    python, node = python_then_node(model, tmp_path)
    np.testing.assert_array_equal(node, python)


@needs_node
@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped models/generator.onnx yet")
def test_node_matches_python_on_the_shipped_model(tmp_path):
    python, node = python_then_node(SHIPPED, tmp_path)
    np.testing.assert_array_equal(node, python)


@needs_node
@pytest.mark.parametrize("noise, message", [
    (None, "cannot read"),
    (np.zeros((2, 99), np.float32), "the model takes noise of shape (n, 100)"),
    (np.zeros((2, 100), np.int32), "float32 or float64"),
    (np.zeros(100, np.float32), "shape (n, latent)"),
    (b"junk", "neither .npy nor valid JSON"),
    (b'{"z": [[1, 2], [3]]}', "equally long"),
])
def test_node_bad_input_is_a_one_line_error(tiny_generator_onnx, tmp_path, noise, message):
    noise_file = tmp_path / ("noise.json" if isinstance(noise, bytes) else "noise.npy")
    if isinstance(noise, bytes):
        noise_file.write_bytes(noise)
    elif noise is not None:
        np.save(noise_file, noise)
    out = tmp_path / "out.npy"
    result = run_node(tiny_generator_onnx, noise_file, out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert not out.exists()


@needs_node
@pytest.mark.parametrize("seed, n, truncation", [(42, 16, None), (2**63 - 1, 5, 0.7)])
def test_node_makes_the_samplers_images_from_a_seed_alone(tmp_path, seed, n, truncation):
    model = make_tiny_generator(tmp_path / "rgb.onnx", latent_dim=33, shape=(32, 32, 3))
    extra = ["--truncation", str(truncation)] if truncation else []
    result = run_node(model, "--seed", seed, "--n", n, *extra, tmp_path / "node.npy")
    assert result.returncode == 0, result.stderr
    expected = Sampler(model).sample_pixels(n, seed=seed, truncation=truncation)
    np.testing.assert_array_equal(np.load(tmp_path / "node.npy"), expected)


@needs_node
@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "seed must be an integer"),
    (["--seed", str(2**63)], "seed must be an integer"),
    (["--seed", "3", "--n", "0"], "--n must be"),
    (["--seed", "3", "--truncation", "0"], "truncation must be"),
    (["--bogus", "1"], "unknown option"),
])
def test_node_bad_seed_options_are_one_line_errors(tiny_generator_onnx, tmp_path, args, message):
    result = run_node(tiny_generator_onnx, *args, tmp_path / "out.npy")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "out.npy").exists()


# --- class-conditional models: labels pass through --------------------------------------------------

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture
def conditional(tmp_path):
    return make_tiny_generator(tmp_path / "cond.onnx", latent_dim=24, shape=(16, 16, 1), class_names=CLASSES)


def test_python_example_samples_a_conditional_model(conditional, tmp_path):
    result = run_python_example(conditional, tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "pixels.npy"), Sampler(conditional).sample_pixels(16, seed=0))


@needs_node
@pytest.mark.parametrize("label, labels", [("dog", 1), ("2", 2), (None, None)], ids=["name", "index", "cycled"])
def test_node_passes_the_class_through(conditional, tmp_path, label, labels):
    extra = [] if label is None else ["--class", label]
    result = run_node(conditional, "--seed", 9, "--n", 7, "--truncation", "0.8", *extra, tmp_path / "node.npy")
    assert result.returncode == 0, result.stderr
    sampler = Sampler(conditional)
    expected = sampler.sample_pixels(7, seed=9, truncation=0.8, labels=labels)  # None: image i is class i % K
    np.testing.assert_array_equal(np.load(tmp_path / "node.npy"), expected)
    np.save(tmp_path / "noise.npy", sampler.noise(5, seed=4))
    result = run_node(conditional, tmp_path / "noise.npy", *extra, tmp_path / "node.npy")
    assert result.returncode == 0, result.stderr
    expected = sampler.generate_pixels(sampler.noise(5, seed=4), sampler.cycle_labels(5) if labels is None else labels)
    np.testing.assert_array_equal(np.load(tmp_path / "node.npy"), expected)


@needs_node
@pytest.mark.parametrize("which, label, message", [
    ("conditional", "cow", "--class: unknown class \"cow\": this model's classes are 0-2: 'cat', 'dog', 'bird'"),
    ("conditional", "3", "--class: class 3 is out of range"),
    ("conditional", "-1", "--class: unknown class \"-1\""),
    ("plain", "1", "--class: this model is not class-conditional"),
])
def test_node_bad_class_is_a_one_line_error(conditional, tiny_generator_onnx, tmp_path, which, label, message):
    model = conditional if which == "conditional" else tiny_generator_onnx
    result = run_node(model, "--seed", 1, "--class", label, tmp_path / "out.npy")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "out.npy").exists()

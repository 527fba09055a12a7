"""The TF-free runtime: Sampler's contract, per-image seeds, streaming, threads, bad models."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, make_tiny_generator
from dcgan_export import DcganError, Sampler
from dcgan_export.contract import to_pixels
from dcgan_export.runtime import noise

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx")


@pytest.fixture(scope="module")
def sampler(tiny_generator_onnx):
    return Sampler(tiny_generator_onnx, threads=1)


def test_generate_returns_images_in_range(sampler):
    z = np.random.default_rng(0).standard_normal((7, 100))  # float64 on purpose: converted
    images = sampler.generate(z)
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.float32
    assert -1 <= images.min() and images.max() <= 1
    pixels = sampler.generate_pixels(z)
    assert pixels.shape == (7, 28, 28) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, to_pixels(images))


@pytest.mark.parametrize("z,message", [
    (np.zeros((3, 99)), r"shape \(n, 100\).*got \(3, 99\)"),
    (np.zeros((100,)), r"got \(100,\)"),
    (np.zeros((0, 100)), r"n >= 1"),
    (np.full((2, 100), np.nan), "NaN"),
    (np.full((2, 100), np.inf), "infinite"),
    (np.array([["a"] * 100]), "numeric"),
])
def test_generate_rejects_bad_noise_with_a_clear_valueerror(sampler, z, message):
    with pytest.raises(ValueError, match=message):
        sampler.generate(z)


def test_image_i_of_seed_s_is_independent_of_n_and_batch_size(sampler):
    full = sampler.sample(50, seed=11, batch_size=256)
    np.testing.assert_array_equal(sampler.sample(50, seed=11, batch_size=7), full)
    np.testing.assert_array_equal(sampler.sample(5, seed=11), full[:5])
    np.testing.assert_array_equal(sampler.generate(noise(11, 30, 20, 100)), full[30:])
    # documented derivation (docs/noise.md): another program rebuilds the noise from (seed, i) alone
    from test_noise import reference_noise
    z17 = np.array(reference_noise(11, 17, 100), np.float32)
    np.testing.assert_array_equal(sampler.generate(z17[None])[0], full[17])
    assert not np.array_equal(sampler.sample(5, seed=12), full[:5])


def test_iter_batches_streams_bounded_chunks(sampler):
    chunks = list(sampler.iter_batches(1000, seed=0, batch_size=128, pixels=True))
    assert [len(c) for c in chunks] == [128] * 7 + [104]
    assert all(c.dtype == np.uint8 for c in chunks)


def test_concurrent_calls_match_sequential(tiny_generator_onnx):
    shared = Sampler(tiny_generator_onnx)
    expected = [shared.sample(64, seed=s, batch_size=16) for s in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: shared.sample(64, seed=s, batch_size=16), range(8)))
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_model_without_pixels_output_still_gives_pixels(tmp_path):
    s = Sampler(make_tiny_generator(tmp_path / "np.onnx", with_pixels=False))
    z = s.noise(3, seed=1)
    np.testing.assert_array_equal(s.generate_pixels(z), to_pixels(s.generate(z)))


def test_missing_corrupt_and_non_generator_models(tmp_path):
    with pytest.raises(DcganError, match="model not found"):
        Sampler(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(DcganError, match="not a loadable ONNX model"):
        Sampler(junk)
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["images"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "classifier_like.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(DcganError, match=r"not a generator: expected an input of shape \[N, latent\]"):
        Sampler(tmp_path / "classifier_like.onnx")


def test_runtime_and_sample_never_import_tensorflow(tiny_generator_onnx, tmp_path):
    script = f"""
import sys, json
import dcgan_export, dcgan_export.runtime, dcgan_export.cli
from dcgan_export.cli import main
try:
    main(["sample", "--n", "4", "--seed", "1", "--model", {str(tiny_generator_onnx)!r}, "--out", {str(tmp_path / 'g.png')!r}])
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "g.png").exists()


@pytest.mark.slow
def test_shipped_model_is_found_after_a_non_editable_install(tmp_path):
    """pip install . (not editable) into a separate target, then run from another directory."""
    if not (ROOT / "models" / "generator.onnx").exists():
        pytest.skip("models/generator.onnx is not there yet")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    assert (target / "dcgan_export" / "shipped" / "generator.onnx").is_file()
    assert (target / "dcgan_export" / "data" / "mnist-8k" / "train-images-idx3-ubyte.gz").is_file()
    script = ("import dcgan_export, sys; from dcgan_export import Sampler; s = Sampler(); "
              "assert str(s.model_path).startswith(sys.argv[1]), s.model_path; print(s.sample(2, seed=0).shape)")
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); " + script,
                             str(target)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "(2, 28, 28, 1)" in result.stdout


# -- models that keep the contract loosely, or break it at run time ------------------------------


def test_a_float64_model_gives_the_float32_models_images(tmp_path):
    ref = Sampler(make_tiny_generator(tmp_path / "f32.onnx"))
    wide = Sampler(make_tiny_generator(tmp_path / "f64.onnx", dtype=np.float64))
    images = wide.sample(5, seed=3)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, ref.sample(5, seed=3), atol=1e-5)
    # its own pixels output rounds in float64: a value at a rounding boundary may land either side
    differ = wide.sample_pixels(5, seed=3).astype(int) - to_pixels(images)
    assert np.abs(differ).max() <= 1 and np.count_nonzero(differ) <= 5


@pytest.mark.parametrize("n", [1, 3, 4, 11])
def test_a_fixed_batch_model_is_fed_in_chunks_of_its_size(tmp_path, n):
    ref = Sampler(make_tiny_generator(tmp_path / "dyn.onnx"))
    fixed = Sampler(make_tiny_generator(tmp_path / "b4.onnx", batch=4))
    np.testing.assert_array_equal(fixed.sample_pixels(n, seed=9, batch_size=3), ref.sample_pixels(n, seed=9))
    np.testing.assert_allclose(fixed.sample(n, seed=9), ref.sample(n, seed=9), atol=1e-6)


def test_a_model_producing_nan_is_an_error_not_black_images(tmp_path):
    from dcgan_export.errors import ModelOutputError

    broken = Sampler(make_tiny_generator(tmp_path / "nan.onnx", nan=True))
    for call in (broken.sample, broken.sample_pixels):
        with pytest.raises(ModelOutputError, match="NaN or infinite values for 2 of 2 images"):
            call(2, seed=0)


def test_a_model_with_an_integer_input_is_refused_in_one_line(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Cast", ["z"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("Reshape", ["f", "s"], ["images"])], "g",
                              [helper.make_tensor_value_info("z", TensorProto.INT64, ["N", 784])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              initializer=[helper.make_tensor("s", TensorProto.INT64, [4], [-1, 28, 28, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "int.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(DcganError, match=r"input 'z' must be a float tensor, found tensor\(int64\)"):
        Sampler(tmp_path / "int.onnx")


@pytest.mark.parametrize("threads", [0, 2**31, 2**32])
def test_threads_out_of_range_are_refused_before_onnxruntime_sees_them(tiny_generator_onnx, threads):
    with pytest.raises(DcganError, match="threads must be between 1 and"):
        Sampler(tiny_generator_onnx, threads=threads)


def test_seeds_cover_int64_and_no_more(tiny_generator_onnx):
    s = Sampler(tiny_generator_onnx)
    assert s.sample_pixels(1, seed=2**63 - 1).shape == (1, 28, 28)
    for seed in (-1, 2**63):
        with pytest.raises(DcganError, match="seed must be between 0 and"):
            s.sample(1, seed=seed)


# -- every shape the contract allows ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (16, 16, 1)])
def test_rgb_and_other_sizes_sample_through_the_same_api(tmp_path, shape):
    sampler = Sampler(make_tiny_generator(tmp_path / "g.onnx", shape=shape))
    assert sampler.image_shape == shape
    pixel_shape = shape if shape[2] == 3 else shape[:2]
    assert sampler.pixel_shape == pixel_shape
    images = sampler.sample(5, seed=2, batch_size=2)
    assert images.shape == (5, *shape) and images.dtype == np.float32
    pixels = sampler.sample_pixels(5, seed=2)
    assert pixels.shape == (5, *pixel_shape) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, to_pixels(images))  # the model's pixels output agrees
    no_pixels = Sampler(make_tiny_generator(tmp_path / "np.onnx", shape=shape, with_pixels=False))
    np.testing.assert_array_equal(no_pixels.sample_pixels(5, seed=2), pixels)


def test_pixel_mapping_round_trips_rgb():
    from dcgan_export.contract import to_images

    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert to_images(pixels).shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(to_pixels(to_images(pixels)), pixels)
    grey = pixels[..., 0]
    assert to_images(grey).shape == (4, 8, 8, 1) and to_pixels(to_images(grey)).shape == (4, 8, 8)


def test_a_pixels_output_of_another_shape_is_not_trusted(tmp_path):
    from onnx import load, save

    model = load(str(make_tiny_generator(tmp_path / "g.onnx")))
    pixels = [o for o in model.graph.output if o.name == "pixels"][0]
    pixels.type.tensor_type.shape.dim[1].dim_value = 14  # claims [N, 14, 28]
    save(model, str(tmp_path / "odd.onnx"))
    sampler = Sampler(tmp_path / "odd.onnx")
    np.testing.assert_array_equal(sampler.sample_pixels(3, seed=0), to_pixels(sampler.sample(3, seed=0)))

"""dcgan export: optimised ONNX that matches Keras, a parity gate that refuses, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dcgan_export import DcganError, Sampler  # noqa: E402
from dcgan_export.run_dir import RunDir  # noqa: E402
from dcgan_export.contract import to_pixels  # noqa: E402

from helpers import ROOT, randomize_batchnorm, run_dcgan  # noqa: E402

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
export = pytest.importorskip("dcgan_export.export")
from dcgan_export.inference_graph import build_inference_function  # noqa: E402
from dcgan_export.parity import parity_check  # noqa: E402


def save_random_generator(path: Path, seed: int = 0) -> Path:
    from trainer.testing import random_generator

    random_generator(seed).save(path)
    return path


@pytest.fixture(scope="module")
def generator_keras(tmp_path_factory) -> Path:
    return save_random_generator(tmp_path_factory.mktemp("gen") / "generator.keras")


@pytest.fixture(scope="module")
def run_dir(generator_keras, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    (run / "generator.keras").write_bytes(generator_keras.read_bytes())
    (run / "config.json").write_text(json.dumps({"options": {"seed": 0}, "data": {"name": "mnist-8k", "sha256": "ab" * 32}}))
    # a resumed run in progress: generator.keras is still the one saved when it finished at 1234
    (run / "state.json").write_text(json.dumps({"iteration": 1300, "finished": False, "generator_iteration": 1234}))
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "generator.onnx"
    lines = []
    report = export.export_generator(run_dir, out, echo=lines.append)
    return out, report, "\n".join(lines)


def test_optimised_export_matches_keras_and_records_everything(exported, run_dir):
    out, report, printed = exported
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    assert report["vectors"] >= 1026 and report["batch_sizes"] == [1, 257]
    assert report["pixels_output_mismatches"] == 0
    assert round(report["flops_before"] / 1e6, 1) == 84.0
    assert report["flops_after"] < 0.45 * report["flops_before"]
    for words in ("max |diff|", "mean |diff|", "uint8 pixels", "FLOPs/image", "file size", "time"):
        assert words in printed
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["latent_dim"] == "100"
    assert props["dataset"] == "mnist-8k" and props["dataset_sha256"] == "ab" * 32
    assert props["training_iterations"] == "1234"
    assert "trained on to iteration 1300 without finishing; generator.keras is from iteration 1234" in printed
    assert props["source_sha256"] == hashlib.sha256((run_dir / "generator.keras").read_bytes()).hexdigest()
    assert props["optimized"] == "true"
    assert props["dcgan_version"] == "0.1.0"
    assert float(props["parity_max_abs_diff"]) == pytest.approx(report["max_abs_diff"], rel=1e-3)
    assert "images" in props and "pixels" in props and props["outputs"] == "images,pixels"


def test_optimised_graph_is_subpixel_convolutions_without_upsampling_chains(exported):
    ops = [node.op_type for node in onnx.load(exported[0]).graph.node]
    assert ops.count("DepthToSpace") == 1
    assert ops.count("Conv") == 2
    assert not {"Resize", "Tile", "Upsample", "BatchNormalization"} & set(ops)
    assert "Transpose" not in ops  # the dense layer emits NCHW; tf2onnx's transposes all cancel


def test_exported_model_samples_like_keras_at_any_batch_size(exported, generator_keras):
    sampler = Sampler(exported[0])
    assert sampler.latent_dim == 100 and sampler.image_shape == (28, 28, 1)
    z = np.random.default_rng(7).standard_normal((5, 100)).astype(np.float32)
    reference = keras.models.load_model(generator_keras)(z, training=False).numpy()
    images = sampler.generate(z)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images, reference, atol=1e-4, rtol=0)
    assert np.abs(images).max() <= 1.0
    pixels = sampler.generate_pixels(z)
    assert pixels.dtype == np.uint8 and pixels.shape == (5, 28, 28)
    np.testing.assert_array_equal(pixels, to_pixels(images))


def test_build_inference_function_runs_eagerly_and_matches_keras(generator_keras):
    model = keras.models.load_model(generator_keras)
    z = np.random.default_rng(1).standard_normal((3, 100)).astype(np.float32)
    reference = model(z, training=False).numpy()
    for optimize in (True, False):
        fn = build_inference_function(model, optimize=optimize)
        result = fn(z)
        np.testing.assert_allclose(result["images"].numpy(), reference, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(result["pixels"].numpy(), to_pixels(result["images"].numpy()))
        assert fn.optimized is optimize and fn.latent_dim == 100


@pytest.mark.parametrize("cost, graphs", [
    (None, {28: 1, 32: 1, 64: 2}),  # the measured cost: fold 28 and 32 fully, expand 64 once part-way
    (0, {28: 2, 32: 2, 64: 3}),  # expanding is free: every stage on its true grid (fewest FLOPs)
    (10**12, {28: 1, 32: 1, 64: 1}),  # expanding is dear: every stage folded onto the base grid
])
def test_depth_to_space_goes_where_the_counted_cost_is_least(monkeypatch, cost, graphs):
    from dcgan_export import inference_graph
    from trainer.testing import random_generator

    if cost is not None:
        monkeypatch.setattr(inference_graph, "DEPTH_TO_SPACE_FLOPS_PER_VALUE", cost)
    z = np.random.default_rng(2).standard_normal((2, 100)).astype(np.float32)
    for size, expected in graphs.items():
        model = random_generator(0, (size, size, 3 if size != 28 else 1))
        fn = build_inference_function(model)
        assert [s.kind for s in fn.steps].count("depth_to_space") == expected, fn.describe()
        np.testing.assert_allclose(fn(z)["images"].numpy(), model(z, training=False).numpy(), atol=1e-5, rtol=0)
        if cost == 0:  # nothing is cheaper than the fewest FLOPs
            flops = fn.flops_per_image
            monkeypatch.setattr(inference_graph, "DEPTH_TO_SPACE_FLOPS_PER_VALUE", 10**12)
            assert build_inference_function(model).flops_per_image >= flops
            monkeypatch.setattr(inference_graph, "DEPTH_TO_SPACE_FLOPS_PER_VALUE", 0)


def test_optimiser_handles_other_layer_orders_and_kernel_sizes():
    """BN after an activation (kept as an affine on the phase grid), ReLU, Activation, k = 3 and 5."""
    L = keras.layers
    model = keras.Sequential([
        keras.Input((16,)), L.Dense(7 * 7 * 8), L.LeakyReLU(0.1), L.BatchNormalization(), L.Reshape((7, 7, 8)),
        L.UpSampling2D(), L.Conv2D(6, 3, padding="same", activation="relu"), L.BatchNormalization(), L.Dropout(0.5),
        L.UpSampling2D(), L.Conv2D(1, 5, padding="same"), L.BatchNormalization(), L.Activation("tanh"),
    ])
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            randomize_batchnorm(layer, rng)
    z = rng.standard_normal((3, 16)).astype(np.float32)
    fn = build_inference_function(model)
    assert [s.kind for s in fn.steps].count("affine") == 2 and fn.steps[-1].params == {"factor": 4}
    np.testing.assert_allclose(fn(z)["images"].numpy(), model(z, training=False).numpy(), atol=1e-5, rtol=0)
    flat = keras.Sequential([keras.Input((16,)), L.Dense(784, activation="tanh"), L.Reshape((28, 28, 1))])
    fn = build_inference_function(flat)
    assert "depth_to_space" not in [s.kind for s in fn.steps]
    np.testing.assert_allclose(fn(z)["images"].numpy(), flat(z).numpy(), atol=1e-6, rtol=0)


def test_no_optimize_exports_the_keras_graph_from_a_plain_keras_file(generator_keras, tmp_path):
    out = tmp_path / "plain.onnx"
    report = export.export_generator(generator_keras, out, optimize=False, echo=lambda s: None)
    assert report["passed"] and report["flops_after"] == report["flops_before"]
    model = onnx.load(out)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["optimized"] == "false"
    assert props["dataset"] == props["training_iterations"] == "unknown"  # no run directory
    assert "DepthToSpace" not in {node.op_type for node in model.graph.node}


@pytest.mark.parametrize("state, iterations, note", [
    ({"iteration": 900, "finished": True, "generator_iteration": 900}, "900", False),
    ({"iteration": 950, "finished": False, "generator_iteration": 900}, "900", True),  # resumed, not finished
    ({"iteration": 900, "finished": True}, "900", False),  # a run finished before generator_iteration existed
    ({"iteration": 900, "finished": False}, "unknown", False),  # its generator.keras is not from iteration 900
    ({"iteration": "900"}, "unknown", False),
    ([900], "unknown", False),
], ids=["finished", "resumed-unfinished", "finished-old-format", "first-run-unfinished", "not-int", "not-object"])
def test_training_iterations_come_from_the_iteration_generator_keras_was_saved_at(tmp_path, state, iterations, note):
    (tmp_path / "state.json").write_text(json.dumps(state))
    lines = []
    assert export.run_records(RunDir(tmp_path), echo=lines.append)["training_iterations"] == iterations
    assert bool(lines) == note and all("generator.keras is from iteration 900" in line for line in lines)


def test_parity_gate_refuses_and_leaves_existing_file_untouched(generator_keras, tmp_path):
    out = tmp_path / "generator.onnx"
    out.write_bytes(b"the model we already had")
    lines = []
    with pytest.raises(DcganError) as info:
        export.export_generator(generator_keras, out, atol=0.0, echo=lines.append)
    assert info.value.exit_code == 1
    assert "parity gate failed" in str(info.value) and "\n" not in str(info.value)
    assert "FAILED, nothing written" in "\n".join(lines) and "max |diff|" in "\n".join(lines)
    assert out.read_bytes() == b"the model we already had"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.onnx"]  # no temp file left


def test_a_failed_write_keeps_the_existing_file(generator_keras, tmp_path, monkeypatch):
    out = tmp_path / "generator.onnx"
    out.write_bytes(b"old")

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export, "atomic_write_bytes", refuse)
    with pytest.raises(DcganError, match="cannot write"):
        export.export_generator(generator_keras, out, echo=lambda s: None)
    assert out.read_bytes() == b"old"


def test_parity_gate_refuses_a_generator_whose_own_output_is_not_finite(exported, tmp_path):
    from trainer.testing import random_generator

    model = random_generator(0)  # the weights of the exported fixture, but one NaN
    kernel = model.get_layer("dense").kernel
    broken = kernel.numpy()
    broken[0, 0] = np.nan
    kernel.assign(broken)
    # a finite ONNX model against the NaN reference: max() skips NaN, so this used to pass
    parity = parity_check(exported[0].read_bytes(), model, atol=1e-4)
    assert parity["reference_finite"] is False and parity["passed"] is False
    assert parity["max_abs_diff"] == float("inf")
    source, out = tmp_path / "nan.keras", tmp_path / "g.onnx"
    model.save(source)
    with pytest.raises(DcganError, match="Keras generator's own output is not finite") as info:
        export.export_generator(source, out, echo=lambda s: None)
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    assert not out.exists()


def test_a_mixed_precision_generator_is_exported_in_float32(tmp_path):
    from trainer.models import build_generator

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        build_generator().save(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    original = keras.models.load_model(tmp_path / "mixed.keras")
    assert original.layers[0].compute_dtype == "float16"
    model = export.load_generator(tmp_path / "mixed.keras")
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    z = np.random.default_rng(2).standard_normal((4, 100)).astype(np.float32)
    reference = model(z, training=False).numpy()
    np.testing.assert_allclose(reference, original(z, training=False).numpy(), atol=5e-3)  # same weights
    optimised = build_inference_function(model)(z)["images"].numpy()
    np.testing.assert_allclose(optimised, reference, atol=1e-5, rtol=0)


# --- bad input -------------------------------------------------------------------------------------


def test_missing_source(tmp_path):
    with pytest.raises(DcganError, match="no such file"):
        export.export_generator(tmp_path / "nope", tmp_path / "g.onnx")


def test_run_directory_without_generator(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DcganError, match="no generator.keras"):
        export.export_generator(tmp_path, tmp_path / "g.onnx")


def test_junk_bytes_are_not_a_keras_model(tmp_path):
    junk = tmp_path / "generator.keras"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(DcganError, match="not a loadable Keras model") as info:
        export.export_generator(junk, tmp_path / "g.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "g.onnx").exists()


def test_a_discriminator_is_not_a_generator(tmp_path):
    from trainer.models import build_discriminator

    path = tmp_path / "discriminator.keras"
    build_discriminator().save(path)
    with pytest.raises(DcganError, match=r"not a generator.*\[N, 28, 28, 1\] -> output \[N, 1\]"):
        export.export_generator(path, tmp_path / "g.onnx")


def test_a_model_with_the_wrong_image_shape_is_not_a_generator(tmp_path):
    path = tmp_path / "small.keras"
    keras.Sequential([keras.Input((100,)), keras.layers.Dense(196), keras.layers.Reshape((14, 14, 1))]).save(path)
    with pytest.raises(DcganError, match=r"not a generator.*output \[N, 14, 14, 1\]"):
        export.export_generator(path, tmp_path / "g.onnx")


def test_output_directory_must_exist_and_be_a_directory(generator_keras, tmp_path):
    with pytest.raises(DcganError, match="does not exist"):
        export.export_generator(generator_keras, tmp_path / "missing" / "g.onnx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DcganError, match="not a directory"):
        export.export_generator(generator_keras, tmp_path / "file" / "g.onnx")
    with pytest.raises(DcganError, match="is a directory"):
        export.export_generator(generator_keras, tmp_path)


def test_out_must_be_an_onnx_file_and_not_the_source(generator_keras, tmp_path):
    before = generator_keras.read_bytes()
    with pytest.raises(DcganError, match=r"^--out must end in \.onnx, got .*g\.keras$"):
        export.export_generator(generator_keras, tmp_path / "g.keras")
    with pytest.raises(DcganError, match=r"^--out must end in \.onnx"):
        export.export_generator(generator_keras, tmp_path / "generator")
    for same in (generator_keras, generator_keras.parent / ".." / generator_keras.parent.name / generator_keras.name):
        with pytest.raises(DcganError, match="is the source model"):
            export.export_generator(same, same)
    link = tmp_path / "g.onnx"  # ends in .onnx, but is the source through a symlink
    link.symlink_to(generator_keras)
    with pytest.raises(DcganError, match="is the source model"):
        export.export_generator(generator_keras, link)
    assert generator_keras.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_bad_paths_fail_before_tensorflow_is_imported(generator_keras, tmp_path):
    # A typo must fail in milliseconds, not after TensorFlow's seconds of import.
    not_keras = tmp_path / "generator.h5"
    not_keras.write_bytes(b"weights")
    cases = [
        (not_keras, tmp_path / "g.onnx", "not a Keras model file (expected a .keras file)"),
        (tmp_path / "typo.keras", tmp_path / "g.onnx", "no such file or directory"),
        (generator_keras, tmp_path / "g.onx", "--out must end in .onnx"),
        (generator_keras, generator_keras, "is the source model"),
    ]
    code = ("import sys\n"
            "from dcgan_export import DcganError\n"
            "from dcgan_export.export import export_generator\n"
            f"for src, out in {[(str(a), str(b)) for a, b, _ in cases]!r}:\n"
            "    try:\n"
            "        export_generator(src, out)\n"
            "    except DcganError as exc:\n"
            "        print(exc)\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    *errors, heavy = result.stdout.strip().splitlines()
    assert heavy == "[]"
    assert len(errors) == len(cases)
    for line, (_, _, message) in zip(errors, cases):
        assert message in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_output_directory_must_be_writable(generator_keras, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(DcganError, match="not writable"):
            export.export_generator(generator_keras, locked / "g.onnx")
    finally:
        locked.chmod(0o700)


def test_unwritable_output_directory_is_refused_before_any_work(generator_keras, tmp_path, monkeypatch):
    # root (as in CI containers) can write anywhere, so simulate the permission check failing
    monkeypatch.setattr(export.os, "access", lambda path, mode: False)
    with pytest.raises(DcganError, match="not writable"):
        export.export_generator(generator_keras, tmp_path / "g.onnx")


def test_unknown_layers_are_refused_by_the_optimiser_only():
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(7 * 7 * 4), keras.layers.Reshape((7, 7, 4)),
                              keras.layers.Conv2DTranspose(1, 4, strides=4, padding="same")])
    with pytest.raises(DcganError, match="cannot optimise layer.*--no-optimize"):
        build_inference_function(model, optimize=True)
    assert build_inference_function(model, optimize=False).optimized is False


# --- the real CLI ------------------------------------------------------------------------------------


def test_cli_imports_export_code_lazily():
    code = ("import sys, dcgan_export.cli; "
            "print(sorted(m for m in ('dcgan_export.export', 'tensorflow', 'keras', 'tf2onnx', 'onnx') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


def test_cli_bad_input_is_one_line_and_non_zero(tmp_path):
    result = run_dcgan("export", str(tmp_path / "nope"), "--out", str(tmp_path / "g.onnx"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope'}: no such file or directory"]
    result = run_dcgan("export", str(tmp_path), "--out", str(tmp_path / "no" / "g.onnx"))
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_export_writes_and_refuses(run_dir, tmp_path):
    out = tmp_path / "generator.onnx"
    result = run_dcgan("export", str(run_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout and out.is_file()
    written = out.read_bytes()
    result = run_dcgan("export", str(run_dir), "--out", str(out), "--atol", "0")
    assert result.returncode == 1
    assert "FAILED, nothing written" in result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == \
        [f"Error: parity gate failed (max |diff| {result.stdout.split('max |diff|:')[1].split()[0]} > atol 0); "
         f"nothing written to {out}"]
    assert out.read_bytes() == written


@pytest.mark.parametrize("atol", [-1.0, float("nan"), float("inf"), 2.0])
def test_a_tolerance_that_would_make_the_gate_vacuous_is_refused_first(tmp_path, atol):
    from dcgan_export.export import export_generator

    with pytest.raises(DcganError, match="--atol must be between 0 and 1"):
        export_generator(tmp_path / "missing.keras", tmp_path / "g.onnx", atol=atol)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(32, 32, 3), (64, 64, 3), (16, 16, 1)])
def test_other_sizes_and_rgb_export_through_the_gate_and_sample(tmp_path, shape):
    from trainer.testing import random_generator

    source = tmp_path / "generator.keras"
    model = random_generator(1, shape)
    model.save(source)
    report = export.export_generator(source, tmp_path / "g.onnx", echo=lambda line: None)
    assert report["passed"] and report["max_abs_diff"] < 1e-4
    sampler = Sampler(tmp_path / "g.onnx")
    assert sampler.image_shape == shape and sampler.metadata["image_size"] == str(shape[0])
    assert sampler.metadata["channels"] == str(shape[2])
    z = sampler.noise(3, seed=0)
    np.testing.assert_allclose(sampler.generate(z), model(z, training=False).numpy(), atol=1e-4)
    pixels = sampler.generate_pixels(z)
    assert pixels.shape == ((3, *shape) if shape[2] == 3 else (3, *shape[:2]))

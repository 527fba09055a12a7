"""Blends of classes: the optional ``class_offsets`` input (``class_blend.py``), the Sampler's
``class_weights``, walks from class to class (``dcgan sample --interpolate A,B --class 3,8``) and
``scripts/add_class_offsets.py``, on hand-built conditional models (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from helpers import ROOT, dcgan_in_process, make_tiny_generator
from dcgan_export import DcganError, Sampler
from dcgan_export.class_blend import add_class_offsets
from dcgan_export.contract import split_class_weights
from dcgan_export.images import make_grid
from dcgan_export.interpolation import slerp, walk_class_weights

NAMES = ["cat", "dog", "bird"]
LATENT = 12
SHAPE = (16, 16, 1)
dcgan = dcgan_in_process


def blendable(path):
    """``path`` rewritten with the class_offsets input, as export writes conditional models."""
    model = add_class_offsets(onnx.load(path), len(NAMES))
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def old_path(tmp_path_factory):
    return make_tiny_generator(tmp_path_factory.mktemp("old") / "old.onnx", latent_dim=LATENT, shape=SHAPE,
                               class_names=NAMES)


@pytest.fixture(scope="module")
def blend_path(tmp_path_factory):
    return blendable(make_tiny_generator(tmp_path_factory.mktemp("blend") / "blend.onnx", latent_dim=LATENT,
                                         shape=SHAPE, class_names=NAMES))


@pytest.fixture(scope="module")
def blend(blend_path):
    return Sampler(blend_path, threads=1)


def expected_images(path, z, weights) -> np.ndarray:
    """The tiny model's images computed in numpy: tanh(z @ W + weights @ E)."""
    weights_of = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    h = z.astype(np.float64) @ weights_of["W"] + np.asarray(weights, np.float64) @ weights_of["E"]
    return np.tanh(h).reshape(len(z), *SHAPE)


# --- the graph -----------------------------------------------------------------------------------


def test_the_input_is_optional_and_without_it_the_model_is_unchanged_bit_for_bit(old_path, blend_path):
    old = ort.InferenceSession(str(old_path), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(blend_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in new.get_inputs()] == ["z", "labels"]  # what embedders must feed: as before
    (offsets,) = new.get_overridable_initializers()
    assert offsets.name == "class_offsets" and offsets.type == "tensor(float)" and offsets.shape[1] == 3
    z = np.random.default_rng(0).standard_normal((9, LATENT)).astype(np.float32)
    labels = np.arange(9, dtype=np.int64) % 3
    for a, b in zip(old.run(None, {"z": z, "labels": labels}), new.run(None, {"z": z, "labels": labels})):
        np.testing.assert_array_equal(a, b)
    # fed, the offsets move each image's class vector: one_hot(labels) + class_offsets
    offsets = np.eye(3, dtype=np.float32)[(labels + 1) % 3] - np.eye(3, dtype=np.float32)[labels]
    shifted = new.run(["images"], {"z": z, "labels": labels, "class_offsets": offsets})[0]
    np.testing.assert_array_equal(shifted, old.run(["images"], {"z": z, "labels": (labels + 1) % 3})[0])
    with pytest.raises(Exception):  # a label out of range is still an error, not a silent zero class
        new.run(None, {"z": z[:1], "labels": np.array([3])})


def test_the_pass_refuses_graphs_it_cannot_rewrite(tmp_path, blend_path):
    with pytest.raises(DcganError, match="already has a 'class_offsets' input"):
        add_class_offsets(onnx.load(blend_path), 3)
    with pytest.raises(DcganError, match=r"the class table is \[3, 256\].*expected float32 \[4, D\]"):
        add_class_offsets(onnx.load(make_tiny_generator(tmp_path / "c.onnx", latent_dim=4, shape=SHAPE,
                                                        class_names=NAMES)), 4)
    with pytest.raises(DcganError, match="does not read 'labels' as one Gather"):
        add_class_offsets(onnx.load(make_tiny_generator(tmp_path / "p.onnx", latent_dim=4, shape=SHAPE)), 3)


def test_split_class_weights_gives_the_top_class_and_zero_offsets_for_one_hots():
    labels, offsets = split_class_weights(np.array([[0, 1, 0], [0.25, 0, 0.75], [0.5, 0.5, 0]], np.float32))
    assert labels.tolist() == [1, 2, 0] and labels.dtype == np.int64
    np.testing.assert_array_equal(offsets, [[0, 0, 0], [0.25, 0, -0.25], [-0.5, 0.5, 0]])


# --- the Sampler ---------------------------------------------------------------------------------


def test_class_weights_blend_the_classes(blend, blend_path):
    z = blend.noise(6, seed=5)
    weights = np.array([[1, 0, 0], [0.5, 0.5, 0], [0, 0.25, 0.75], [0.2, 0.3, 0.5], [0, 0, 1], [0, 1, 0]])
    images = blend.generate(z, class_weights=weights)
    assert blend.can_blend
    np.testing.assert_allclose(images, expected_images(blend_path, z, weights), atol=1e-5)
    # one-hot rows are exactly their labels; one row [K] is every image's blend
    np.testing.assert_array_equal(blend.generate_pixels(z[[0, 4, 5]], class_weights=weights[[0, 4, 5]]),
                                  blend.generate_pixels(z[[0, 4, 5]], [0, 2, 1]))
    np.testing.assert_array_equal(blend.generate(z, class_weights=[0.5, 0.5, 0]),
                                  blend.generate(z, class_weights=np.tile([0.5, 0.5, 0], (6, 1))))
    both = blend.generate_with_pixels(z, class_weights=weights)
    np.testing.assert_array_equal(both[0], images)


def test_a_fixed_batch_model_feeds_offsets_in_its_chunks(tmp_path, blend):
    fixed = Sampler(blendable(make_tiny_generator(tmp_path / "fixed.onnx", latent_dim=LATENT, shape=SHAPE,
                                                  class_names=NAMES, batch=4)))
    z = blend.noise(7, seed=1)
    weights = np.random.default_rng(2).dirichlet(np.ones(3), 7)
    np.testing.assert_allclose(fixed.generate(z, class_weights=weights), blend.generate(z, class_weights=weights),
                               atol=1e-6)


@pytest.mark.parametrize("weights, message", [
    ([0.5, 0.5], "class weights must be [3] (for every image) or [4, 3] (one row per image)"),
    (np.ones((4, 3, 1)) / 3, "got shape [4, 3, 1]"),
    (np.ones((3, 3)) / 3, "got shape [3, 3]"),
    ([1.5, -0.5, 0], "finite and non-negative"),
    ([np.nan, 1, 0], "finite and non-negative"),
    ([0.5, 0.4, 0], "each row of class weights must sum to 1: row 0 sums to 0.9"),
    ([[1, 0, 0]] * 3 + [[0, 0, 0]], "row 3 sums to 0"),
    ("dog", "class weights must be numbers"),
    ([["a", "b", "c"]] * 4, "class weights must be numbers"),
])
def test_bad_class_weights_are_one_line_errors(blend, weights, message):
    with pytest.raises(DcganError) as info:
        blend.generate(blend.noise(4, seed=0), class_weights=weights)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_class_weights_need_a_conditional_blendable_model_and_no_labels(tmp_path, blend, old_path):
    z = blend.noise(2, seed=0)
    with pytest.raises(DcganError, match="give labels or class_weights, not both"):
        blend.generate(z, labels=0, class_weights=[1, 0, 0])
    plain = Sampler(make_tiny_generator(tmp_path / "plain.onnx", latent_dim=LATENT, shape=SHAPE))
    assert not plain.can_blend
    with pytest.raises(DcganError, match="not class-conditional: it takes no class weights"):
        plain.generate(z, class_weights=[1.0])
    old = Sampler(old_path)
    assert not old.can_blend
    with pytest.raises(DcganError, match=r"takes no blend of classes \(no 'class_offsets' input\): export it again"):
        old.generate(z, class_weights=[0.5, 0.5, 0])
    # a weight that is one class is still that class, on any conditional model
    np.testing.assert_array_equal(old.generate(z, class_weights=[0, 0, 1]), old.generate(z, 2))


# --- walks ---------------------------------------------------------------------------------------


def test_walk_class_weights_go_straight_from_one_hot_to_one_hot():
    weights = walk_class_weights([0, 2, 1], frames=4, num_classes=3)
    assert len(weights) == 9
    np.testing.assert_array_equal(weights[0], [1, 0, 0])
    np.testing.assert_array_equal(weights[2], [0.5, 0, 0.5])
    np.testing.assert_array_equal(weights[4], [0, 0, 1])
    np.testing.assert_array_equal(weights[8], [0, 1, 0])
    assert all(abs(w.sum() - 1) < 1e-6 and w.dtype == np.float32 for w in weights)


def frame(path, index) -> np.ndarray:
    gif = Image.open(path)
    gif.seek(index)
    return np.asarray(gif.convert("L")).astype(int)


def test_a_walk_goes_from_class_to_class(tmp_path, blend, blend_path, capsys):
    out = tmp_path / "walk.gif"
    code, stdout, err = dcgan("sample", "--model", str(blend_path), "--interpolate", "3,7", "--frames", "4", "--n", "2",
                              "--class", "cat,bird", "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "5 frames, 2 walks through seeds 3, 7, classes 'cat' -> 'bird'" in stdout, err
    assert Image.open(out).n_frames == 5 and Image.open(out).size == (2 * 18 + 2, 18 + 2)
    start, end = blend.noise(2, seed=3), blend.noise(2, seed=7)
    expected = {0: blend.generate_pixels(start, 0), 4: blend.generate_pixels(end, 2),
                2: blend.generate_pixels(slerp(start, end, 0.5), class_weights=[0.5, 0, 0.5])}
    for index, pixels in expected.items():  # GIF palettes are lossy: compare within a few levels
        assert np.abs(frame(out, index) - make_grid(pixels, nrow=2)).mean() < 3, index
    held = blend.generate_pixels(slerp(start, end, 0.5), 0)  # the middle is not still a cat
    assert np.abs(frame(out, 2) - make_grid(held, nrow=2)).mean() > 5

    # the same seed twice: the class alone changes; names and indices mix
    code, stdout, err = dcgan("sample", "--model", str(blend_path), "--interpolate", "3,3,3", "--frames", "2",
                              "--class", "0, dog,2", "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "classes 'cat' -> 'dog' -> 'bird'" in stdout, err
    assert Image.open(out).n_frames == 5
    z = blend.noise(1, seed=3)
    assert np.abs(frame(out, 2) - make_grid(blend.generate_pixels(z, 1), nrow=1)).mean() < 3


@pytest.mark.parametrize("model, args, message", [
    ("blend", ["--interpolate", "3,7", "--class", "cat,dog,bird"], "give one class per seed of --interpolate (2), got 3"),
    ("blend", ["--interpolate", "3,7", "--class", "cat,cow"], "unknown class 'cow'"),
    ("blend", ["--interpolate", "3,7", "--class", "cat,3"], "class 3 is out of range"),
    ("blend", ["--class", "cat,dog"], "a list of classes (one per seed) is for --interpolate walks"),
    ("old", ["--interpolate", "3,7", "--class", "cat,dog"], "takes no blend of classes (no 'class_offsets' input)"),
])
def test_bad_walk_classes_are_one_line_and_write_nothing(tmp_path, blend_path, old_path, capsys, model, args, message):
    out = tmp_path / ("w.gif" if "--interpolate" in args else "g.png")
    path = blend_path if model == "blend" else old_path
    code, stdout, err = dcgan("sample", "--model", str(path), *args, "--out", str(out), capsys=capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_class_name_with_a_comma_is_one_class(tmp_path, capsys):
    path = make_tiny_generator(tmp_path / "comma.onnx", latent_dim=4, shape=SHAPE, class_names=["a,b", "c", "d"])
    out = tmp_path / "w.gif"
    code, stdout, err = dcgan("sample", "--model", str(path), "--interpolate", "1,2", "--class", "a,b", "--frames", "2",
                              "--out", str(out), capsys=capsys)
    assert code == 0 and "class 'a,b'" in stdout, err


# --- upgrading a model exported before the input existed -----------------------------------------


def test_the_upgrade_script_adds_the_input_and_keeps_the_images(tmp_path, old_path):
    source = tmp_path / "m.onnx"
    source.write_bytes(old_path.read_bytes())
    script = [sys.executable, str(ROOT / "scripts" / "add_class_offsets.py")]
    done = subprocess.run([*script, str(source), "--out", str(tmp_path / "new.onnx")], capture_output=True, text=True)
    assert done.returncode == 0 and "images unchanged bit for bit" in done.stdout, done.stderr
    assert source.read_bytes() == old_path.read_bytes()
    new, old = Sampler(tmp_path / "new.onnx"), Sampler(old_path)
    assert new.can_blend and "class_offsets" in new.metadata["input"]
    np.testing.assert_array_equal(new.sample_pixels(9, seed=4), old.sample_pixels(9, seed=4))

    again = subprocess.run([*script, str(tmp_path / "new.onnx")], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.strip() == "Error: the model already has a 'class_offsets' input"
    plain = make_tiny_generator(tmp_path / "plain.onnx", latent_dim=4, shape=SHAPE)
    refused = subprocess.run([*script, str(plain)], capture_output=True, text=True)
    assert refused.returncode == 2 and "not a class-conditional generator" in refused.stderr

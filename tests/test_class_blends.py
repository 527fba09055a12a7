"""Blends of classes: the graph rewrite of ``class_blend.py``, the Sampler's ``class_weights``,
and walks from class to class (``dcgan sample --interpolate A,B --class 3,8``), on hand-built
conditional models (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from helpers import dcgan_in_process, make_tiny_generator
from dcgan_export import DcganError, Sampler
from dcgan_export.class_blend import add_class_offsets, blend_model_bytes
from dcgan_export.contract import split_class_weights
from dcgan_export.images import make_grid
from dcgan_export.interpolation import slerp, walk_class_weights

NAMES = ["cat", "dog", "bird"]
LATENT = 12
SHAPE = (16, 16, 1)
dcgan = dcgan_in_process


@pytest.fixture(scope="module")
def blend_path(tmp_path_factory):
    return make_tiny_generator(tmp_path_factory.mktemp("blend") / "blend.onnx", latent_dim=LATENT, shape=SHAPE,
                               class_names=NAMES)


@pytest.fixture(scope="module")
def blend(blend_path):
    return Sampler(blend_path, threads=1)


def expected_images(path, z, weights) -> np.ndarray:
    """The tiny model's images computed in numpy: tanh(z @ W + weights @ E)."""
    weights_of = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    h = z.astype(np.float64) @ weights_of["W"] + np.asarray(weights, np.float64) @ weights_of["E"]
    return np.tanh(h).reshape(len(z), *SHAPE)


def unusable_conditional_model(path):
    """A conditional model that reads its labels through a Cast first: no table Gather to rewrite."""
    model = onnx.load(make_tiny_generator(path, latent_dim=LATENT, shape=SHAPE, class_names=NAMES))
    gather = next(node for node in model.graph.node if node.op_type == "Gather")
    gather.input[1] = "labels_again"
    model.graph.node.insert(0, onnx.helper.make_node("Identity", ["labels"], ["labels_again"]))
    path.write_bytes(model.SerializeToString())
    return path


# --- the graph -----------------------------------------------------------------------------------


def test_the_rewrite_is_exact_for_one_hots_and_blends_for_offsets(blend_path):
    old = ort.InferenceSession(str(blend_path), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(blend_model_bytes(str(blend_path), 3), providers=["CPUExecutionProvider"])
    assert [i.name for i in new.get_inputs()] == ["z", "labels", "class_offsets"]
    z = np.random.default_rng(0).standard_normal((9, LATENT)).astype(np.float32)
    labels = np.arange(9, dtype=np.int64) % 3
    zero = np.zeros((9, 3), np.float32)
    for a, b in zip(old.run(None, {"z": z, "labels": labels}),
                    new.run(None, {"z": z, "labels": labels, "class_offsets": zero})):
        np.testing.assert_array_equal(a, b)  # bit for bit
    offsets = np.eye(3, dtype=np.float32)[(labels + 1) % 3] - np.eye(3, dtype=np.float32)[labels]
    shifted = new.run(["images"], {"z": z, "labels": labels, "class_offsets": offsets})[0]
    np.testing.assert_array_equal(shifted, old.run(["images"], {"z": z, "labels": (labels + 1) % 3})[0])
    with pytest.raises(Exception):  # a label out of range is still an error, not a silent zero class
        new.run(None, {"z": z[:1], "labels": np.array([3]), "class_offsets": zero[:1]})


def test_the_rewrite_refuses_graphs_it_cannot_rewrite(tmp_path, blend_path):
    rewritten = onnx.load_from_string(blend_model_bytes(str(blend_path), 3))
    with pytest.raises(DcganError, match="already has a 'class_offsets' input"):
        add_class_offsets(rewritten, 3)
    with pytest.raises(DcganError, match=r"its class table is \[3, 256\].*expected float32 \[4, D\]"):
        blend_model_bytes(str(blend_path), 4)
    with pytest.raises(DcganError, match="does not read 'labels' as one Gather"):
        blend_model_bytes(str(unusable_conditional_model(tmp_path / "u.onnx")), 3)
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
    assert blend.sample(3, seed=1, labels=1).shape == (3, *SHAPE)  # labels still run on the model as it is
    np.testing.assert_allclose(images, expected_images(blend_path, z, weights), atol=1e-5)
    # one-hot rows are exactly their labels; one row [K] is every image's blend
    np.testing.assert_array_equal(blend.generate_pixels(z[[0, 4, 5]], class_weights=weights[[0, 4, 5]]),
                                  blend.generate_pixels(z[[0, 4, 5]], [0, 2, 1]))
    np.testing.assert_array_equal(blend.generate(z, class_weights=[0.5, 0.5, 0]),
                                  blend.generate(z, class_weights=np.tile([0.5, 0.5, 0], (6, 1))))
    both = blend.generate_with_pixels(z, class_weights=weights)
    np.testing.assert_array_equal(both[0], images)


def test_a_fixed_batch_model_feeds_offsets_in_its_chunks(tmp_path, blend):
    fixed = Sampler(make_tiny_generator(tmp_path / "fixed.onnx", latent_dim=LATENT, shape=SHAPE, class_names=NAMES,
                                        batch=4))
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


def test_class_weights_need_a_conditional_model_whose_graph_can_blend_and_no_labels(tmp_path, blend):
    z = blend.noise(2, seed=0)
    with pytest.raises(DcganError, match="give labels or class_weights, not both"):
        blend.generate(z, labels=0, class_weights=[1, 0, 0])
    plain = Sampler(make_tiny_generator(tmp_path / "plain.onnx", latent_dim=LATENT, shape=SHAPE))
    assert not plain.can_blend
    with pytest.raises(DcganError, match="not class-conditional: it takes no class weights"):
        plain.generate(z, class_weights=[1.0])
    odd = Sampler(unusable_conditional_model(tmp_path / "odd.onnx"))
    assert not odd.can_blend
    with pytest.raises(DcganError) as info:
        odd.generate(z, class_weights=[0.5, 0.5, 0])
    assert str(info.value) == (f"{tmp_path / 'odd.onnx'}: its graph does not read 'labels' as one Gather from a "
                               "table of class rows, so it cannot blend classes")
    # a weight that is one class is that class, on any conditional model, without the rewrite
    np.testing.assert_array_equal(odd.generate(z, class_weights=[0, 0, 1]), odd.generate(z, 2))


def test_sampling_without_blends_never_imports_onnx(blend_path):
    import subprocess
    import sys

    code = ("import sys\nfrom dcgan_export import Sampler\n"
            f"s = Sampler({str(blend_path)!r})\n"
            "s.generate(s.noise(2, 0), class_weights=[[0, 1, 0], [1, 0, 0]]); s.sample(3, seed=0)\n"
            "print('onnx' in sys.modules)\n"
            "s.generate(s.noise(2, 0), class_weights=[0.5, 0.5, 0])\n"
            "print('onnx' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "True"] and done.stderr == "", done.stderr


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
    ("odd", ["--interpolate", "3,7", "--class", "cat,dog"], "so it cannot blend classes"),
])
def test_bad_walk_classes_are_one_line_and_write_nothing(tmp_path, blend_path, capsys, model, args, message):
    out = tmp_path / ("w.gif" if "--interpolate" in args else "g.png")
    path = blend_path if model == "blend" else unusable_conditional_model(tmp_path / "odd.onnx")
    code, stdout, err = dcgan("sample", "--model", str(path), *args, "--out", str(out), capsys=capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_class_name_with_a_comma_is_one_class(tmp_path, capsys):
    path = make_tiny_generator(tmp_path / "comma.onnx", latent_dim=4, shape=SHAPE, class_names=["a,b", "c", "d"])
    out = tmp_path / "w.gif"
    code, stdout, err = dcgan("sample", "--model", str(path), "--interpolate", "1,2", "--class", "a,b", "--frames", "2",
                              "--out", str(out), capsys=capsys)
    assert code == 0 and "class 'a,b'" in stdout, err

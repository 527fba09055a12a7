"""dcgan eval --features F.onnx --data DATA: FID for unlabelled data in any feature extractor's space."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dcgan_export.errors import DcganError
from dcgan_export.feature_fid import evaluate_with_features
from helpers import dcgan_in_process, make_tiny_generator


def make_extractor(path, shape=(16, 16, 3), dim=8):
    """images [N, *shape] -> a fixed random projection to ``dim`` features."""
    from onnx import TensorProto, helper, numpy_helper

    size = int(np.prod(shape))
    weight = (np.random.default_rng(0).standard_normal((size, dim)) / np.sqrt(size)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "flat"], ["x"]), helper.make_node("MatMul", ["x", "W"], ["features"])],
        "extractor", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(np.array([-1, size], np.int64), "flat"), numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "real").mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(100, 160, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "real" / f"{i}.png")
    return (make_tiny_generator(tmp_path / "g.onnx", shape=(16, 16, 3)), make_extractor(tmp_path / "f.onnx"),
            str(tmp_path / "real"))


def test_fid_against_real_images_in_the_extractors_space(setup):
    generator, extractor, real = setup
    report = evaluate_with_features(generator, extractor, real, n=60, seed=0, batch_size=7)
    again = evaluate_with_features(generator, extractor, real, n=60, seed=0, batch_size=60)
    assert report["fid"] == pytest.approx(again["fid"], rel=1e-9) and report["reference"].endswith("(40 images)")
    assert 0 <= report["fid_floor"] < report["fid"]  # tanh noise is far from mid-grey images


def test_the_cli_takes_features_with_data_only(setup, capsys):
    generator, extractor, real = setup
    code, out, err = dcgan_in_process("eval", str(generator), "--features", str(extractor), "--data", real,
                                      "--n", "20", "--json", capsys=capsys)
    assert code == 0, err
    assert set(json.loads(out)) >= {"fid", "fid_floor", "features", "reference"}
    for args, message in [(["--features", str(extractor)], "--features and --data go together"),
                          (["--features", str(extractor), "--data", real, "--classifier", str(extractor)],
                           "--classifier or --features, not both"),
                          (["--features", str(extractor), "--data", real, "--n", "0"], "--n must be >= 1")]:
        code, _, err = dcgan_in_process("eval", str(generator), *args, capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_shapes_must_agree(setup, tmp_path):
    generator, extractor, real = setup
    with pytest.raises(DcganError, match="takes 16x16x3 images; .* makes 28x28x1"):
        evaluate_with_features(make_tiny_generator(tmp_path / "d.onnx"), extractor, real, n=5)
    with pytest.raises(DcganError, match="no such file"):
        evaluate_with_features(generator, tmp_path / "missing.onnx", real, n=5)
    with pytest.raises(DcganError, match="--data mnist-8k holds 28x28x1 images; .* makes 32x32x1"):
        evaluate_with_features(make_tiny_generator(tmp_path / "e.onnx", shape=(32, 32, 1)),
                               make_extractor(tmp_path / "f32.onnx", (32, 32, 1)), "mnist-8k", n=5)
    # channels convert: grey digits against an RGB generator are compared in RGB
    report = evaluate_with_features(make_tiny_generator(tmp_path / "r.onnx", shape=(28, 28, 3)),
                                    make_extractor(tmp_path / "f28.onnx", (28, 28, 3)), "mnist-8k", n=5)
    assert report["reference"] == "mnist-8k/train (7000 images)"

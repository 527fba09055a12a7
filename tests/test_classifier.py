"""trainer.classifier: the network's contract, its augmentation, and one real train + export."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from helpers import ROOT
from dcgan_export.errors import DcganError
from dcgan_export.evaluate import Evaluator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
classifier = pytest.importorskip("trainer.classifier")


def test_classifier_shapes_and_size():
    model = classifier.build_classifier()
    logits, features = model(np.zeros((3, 28, 28, 1), np.float32), training=False)
    assert tuple(logits.shape) == (3, 10)
    assert tuple(features.shape) == (3, classifier.FEATURE_DIM)
    assert np.all(np.asarray(features) >= 0)  # ReLU features
    assert model.count_params() * 4 < 1_500_000  # ships well under 2 MB


def test_augmenter_fills_with_background_and_moves_digits():
    import keras

    keras.utils.set_random_seed(0)
    augment = classifier.build_augmenter()
    blank = np.full((8, 28, 28, 1), -1.0, np.float32)
    np.testing.assert_allclose(np.asarray(augment(blank, training=True)), -1.0, atol=1e-5)
    square = blank.copy()
    square[:, 10:18, 10:18] = 1.0
    moved = np.asarray(augment(square, training=True))
    assert np.abs(moved - square).max() > 0.5  # something moved
    np.testing.assert_array_equal(np.asarray(augment(square, training=False)), square)  # inference: identity


def test_train_classifier_rejects_bad_arguments(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DcganError, match="--epochs must be between 1 and 1,000,000, got 0"):
        classifier.train_classifier(tmp_path / "c.onnx", epochs=0)
    with pytest.raises(DcganError, match="--batch-size must be between 1 and"):
        classifier.train_classifier(tmp_path / "c.onnx", epochs=1, batch_size=0)
    with pytest.raises(DcganError, match="give an .onnx file name"):
        classifier.train_classifier(tmp_path / "c.keras", epochs=1)
    with pytest.raises(DcganError, match="is not a directory"):
        classifier.train_classifier(tmp_path / "a_file" / "c.onnx", epochs=1)
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", "classifier", "--out", str(tmp_path / "c.onnx"),
                             "--epochs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ") and "--epochs" in result.stderr and not (tmp_path / "c.onnx").exists()


@pytest.mark.slow
def test_one_epoch_trains_exports_and_evaluates(tmp_path):
    out = tmp_path / "models" / "clf.onnx"
    info = classifier.train_classifier(out, epochs=1, seed=0)
    assert info["accuracy"] > 0.7  # one epoch of 7,000 digits already classifies most
    assert info["parity"] < 1e-4
    assert out.stat().st_size == info["size_bytes"] < 2_000_000
    assert [p.name for p in out.parent.iterdir()] == ["clf.onnx"]  # no temp files left behind

    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert float(meta["heldout_accuracy"]) == pytest.approx(info["accuracy"], abs=1e-4)
    assert meta["eval_split"] == "mnist-8k/heldout"
    assert meta["feature_dim"] == str(classifier.FEATURE_DIM)
    assert len(meta["data_sha256"]) == 64
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["logits", "features"]

    evaluator = Evaluator(out)  # the exported file meets the evaluation contract
    assert evaluator.feature_dim == classifier.FEATURE_DIM
    figures = evaluator.score_images(np.full((4, 28, 28, 1), -1.0, np.float32))
    assert len(figures["class_shares"]) == 10


def test_labelled_splits_hold_out_a_fixed_tenth(tmp_path):
    from dcgan_export import datasets

    train, held = datasets.labelled_splits("mnist-8k")
    assert (len(train), len(held)) == (7000, 1000)
    images = np.random.default_rng(0).integers(0, 256, (200, 16, 16), dtype=np.uint8)
    labels = np.arange(200) % 4
    np.savez(tmp_path / "d.npz", x_train=images, y_train=labels)
    first = datasets.labelled_splits(str(tmp_path / "d.npz"))
    again = datasets.labelled_splits(str(tmp_path / "d.npz"))
    assert len(first[1]) == 20 and len(first[0]) == 180
    np.testing.assert_array_equal(first[1].images, again[1].images)  # the same tenth every time
    seen = {bytes(image) for image in first[0].images}
    assert not any(bytes(image) in seen for image in first[1].images)
    np.savez(tmp_path / "u.npz", x_train=images)
    with pytest.raises(DcganError, match="has no labels"):
        datasets.labelled_splits(str(tmp_path / "u.npz"))


def test_a_classifier_scales_with_the_image_and_its_classes():
    from trainer.classifier import build_classifier

    small, large = build_classifier((32, 32, 3), 3), build_classifier((64, 64, 3), 5)
    assert [tuple(o.shape) for o in small.outputs] == [(None, 3), (None, 64)]
    assert [tuple(o.shape) for o in large.outputs] == [(None, 5), (None, 64)]
    assert sum(layer.name.endswith("_pool") for layer in large.layers) == 3  # 64 -> 32 -> 16 -> 8


@pytest.mark.slow
def test_a_classifier_for_a_class_folder_scores_a_generator_of_that_data(tmp_path):
    from PIL import Image

    from dcgan_export.evaluate import evaluate_generator, format_report
    from helpers import make_tiny_generator, run_dcgan

    rng = np.random.default_rng(0)
    for name, channel in (("reds", 0), ("greens", 1), ("blues", 2)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(30):
            pixels = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(180, 256, (20, 20))
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    result = run_dcgan("classifier", "--data", str(tmp_path / "data"), "--image-size", "16", "--epochs", "3",
                       "--quiet", "--out", str(tmp_path / "c.onnx"))
    assert result.returncode == 0, result.stderr
    evaluator = Evaluator(tmp_path / "c.onnx")
    assert evaluator.image_shape == (16, 16, 3) and evaluator.num_classes == 3
    assert evaluator.class_names() == ["blues", "greens", "reds"]
    assert evaluator.metadata["eval_split"].endswith("/heldout") and evaluator.metadata["heldout_size"] == "9"
    generator = make_tiny_generator(tmp_path / "g.onnx", shape=(16, 16, 3))
    report = evaluate_generator(generator, n=200, classifier_path=tmp_path / "c.onnx")
    assert len(report["class_shares"]) == 3 and report["fid_floor"] < report["fid"]
    assert "blues" in format_report(report) and "(max 3)" in format_report(report)
    with pytest.raises(DcganError, match="makes 28x28x1 images; the classifier .* takes 16x16x3"):
        evaluate_generator(make_tiny_generator(tmp_path / "d.onnx"), n=10, classifier_path=tmp_path / "c.onnx")

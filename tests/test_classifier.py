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
    with pytest.raises(DcganError, match="epochs must be >= 1"):
        classifier.train_classifier(tmp_path / "c.onnx", epochs=0)
    with pytest.raises(DcganError, match="batch_size must be >= 1"):
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

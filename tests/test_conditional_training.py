"""Class-conditional training (``dcgan train --conditional``): the networks (trainer/models.py),
the step on labelled batches, exact resume, the export with a ``labels`` input through the parity
gate, and one-line errors for data without labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import FAST, dcgan, dcgan_in_process, loss_values
from dcgan_export import Sampler


def test_conditional_networks_add_a_class_embedding_to_the_recipe(monkeypatch):
    import keras

    from trainer.models import build_discriminator, build_generator

    g, d = build_generator(num_classes=10), build_discriminator(num_classes=10)
    # the recipe's networks plus K rows of the dense kernel (6,272 wide) and K projection rows
    assert g.count_params() == 865_281 + 10 * 6272
    assert d.count_params() == 212_865 + 10 * 6272
    assert build_generator().count_params() == 865_281  # unconditional: untouched
    z = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    labels = np.array([0, 3, 3, 9], np.int32)
    images = np.asarray(g([z, labels]))
    assert images.shape == (4, 28, 28, 1)
    # the label changes the image; the same (z, label) gives the same image
    assert not np.allclose(images[1], np.asarray(g([z[1:2], np.array([4], np.int32)]))[0])
    assert np.allclose(images[1], images[2]) == np.allclose(z[1], z[2])
    logits = np.asarray(d([keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)]))
    assert logits.shape == (4, 1)


def test_the_fused_forward_pass_matches_calling_the_conditional_generator():
    from keras import ops

    from trainer.models import build_generator
    from trainer.subpixel_forward import generator_forward

    g = build_generator(num_classes=3, image_shape=(16, 16, 3), width=0.25)
    z = ops.convert_to_tensor(np.random.default_rng(1).standard_normal((5, 100)).astype(np.float32))
    labels = ops.convert_to_tensor(np.array([0, 1, 2, 1, 0], np.int32))
    fused = np.asarray(generator_forward(g, z, training=False, labels=labels))
    assert np.allclose(fused, np.asarray(g([z, labels], training=False)), atol=1e-5)


def test_conditional_run_resumes_exactly_and_exports_with_labels(tmp_path, capsys):
    import onnxruntime as ort

    options = ["--conditional", *FAST, "--r1", "1", "--seed", "2"]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert dcgan("train", "--iterations", "12", *options, "--out", str(straight), capsys=capsys)[0] == 0
    assert dcgan("train", "--iterations", "6", *options, "--checkpoint-every", "6", "--no-export",
                 "--out", str(resumed), capsys=capsys)[0] == 0
    assert dcgan("train", "--resume", str(resumed), "--iterations", "12", "--quiet", capsys=capsys)[0] == 0
    assert loss_values(resumed) == loss_values(straight)

    assert dcgan("export", str(straight), "--out", str(straight / "generator.onnx"), capsys=capsys)[0] == 0
    record = json.loads((straight / "config.json").read_text())
    assert record["options"]["conditional"] is True
    assert record["data"]["class_names"] == [str(i) for i in range(10)]
    session = ort.InferenceSession(str(straight / "generator.onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)"), ("labels", "tensor(int64)")]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)] and meta["num_classes"] == "10"

    # ONNX and Keras agree for every class (the parity gate checked 1,026 vectors; here, by hand)
    import keras

    generator = keras.models.load_model(straight / "generator.keras")
    z = np.random.default_rng(5).standard_normal((20, 100)).astype(np.float32)
    labels = np.arange(20) % 10
    onnx_images = session.run(["images"], {"z": z, "labels": labels.astype(np.int64)})[0]
    keras_images = np.asarray(generator([z, labels.astype(np.int32)], training=False))
    assert np.abs(onnx_images - keras_images).max() < 1e-4
    per_class = [onnx_images[labels == k] for k in range(10)]
    assert not np.allclose(per_class[0], per_class[1])

    # blends of classes, in the graph the Sampler rewrites for them, optimised or not, match the Keras
    # trunk fed the blended class vector (the gate checked 257; here, by hand)
    assert session.get_overridable_initializers() == [] and meta["parity_blend_vectors"] == "257"
    weights = np.random.default_rng(6).dirichlet(np.full(10, 0.3), 20).astype(np.float32)
    trunk_images = np.asarray(generator.get_layer("trunk")(np.concatenate([z, weights], axis=1), training=False))
    plain_out = straight / "plain.onnx"
    assert dcgan("export", str(straight), "--no-optimize", "--out", str(plain_out), capsys=capsys)[0] == 0
    for path in (straight / "generator.onnx", plain_out):
        sampler = Sampler(path)
        assert sampler.can_blend
        assert np.abs(sampler.generate(z, class_weights=weights) - trunk_images).max() < 1e-4
        np.testing.assert_array_equal(sampler.generate(z, class_weights=np.eye(10, dtype=np.float32)[labels]),
                                      sampler.generate(z, labels))


def test_a_resume_cannot_switch_conditional(tmp_path, capsys):
    run = tmp_path / "run"
    assert dcgan("train", "--iterations", "2", *FAST, "--no-export", "--out", str(run), capsys=capsys)[0] == 0
    code, err = dcgan("train", "--resume", str(run), "--iterations", "4", "--conditional", capsys=capsys)
    assert code == 2 and "cannot change --conditional" in err and err.count("\n") == 1


@pytest.mark.parametrize("labels,message", [
    (None, "has none"),
    (np.zeros(40, np.int64), "needs 2 to 1000 classes"),
    (-np.ones(40, np.int64), "one label >= 0 per image"),
])
def test_conditional_needs_labelled_data(tmp_path, capsys, labels, message):
    arrays = {"x_train": np.random.default_rng(0).integers(0, 255, (40, 28, 28), dtype=np.uint8)}
    if labels is not None:
        arrays["y_train"] = labels
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    out = tmp_path / "run"
    code, stdout, err = dcgan_in_process("train", "--data", str(data), "--conditional", "--iterations", "2", *FAST,
                                         "--out", str(out), capsys=capsys)
    assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not out.exists()

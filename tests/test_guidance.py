"""``dcgan train --class-guidance``: the CatGAN term, its effect on G, the run's guide classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import FAST, dcgan, loss_values


def _numpy_guidance(logits):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    per_image = -(p * np.log(p)).sum(1).mean()
    marginal = p.mean(0)
    return per_image + (marginal * np.log(marginal)).sum()


def test_guidance_loss_is_catgans_generator_objective():
    from trainer.guidance import guidance_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (64, 10)).astype(np.float32)
    np.testing.assert_allclose(guidance_loss(logits).numpy(), _numpy_guidance(logits.astype(np.float64)), rtol=1e-5)
    certain_and_even = 30.0 * np.eye(10, dtype=np.float32)  # each image sure of its own digit
    certain_and_one = 30.0 * np.eye(10, dtype=np.float32)[[3] * 10]  # every image sure it is a 3
    unsure = np.zeros((10, 10), np.float32)
    assert guidance_loss(certain_and_even).numpy() == pytest.approx(-np.log(10), abs=1e-4)
    assert guidance_loss(certain_and_one).numpy() == pytest.approx(0, abs=1e-4)
    assert guidance_loss(unsure).numpy() == pytest.approx(0, abs=1e-5)


def _guided_gan(weight, tmp_path, seed=0):
    """A fresh DCGAN with a learning rate large enough for one update to show, and a random guide."""
    import keras

    from trainer.classifier import build_classifier
    from trainer.gan import DCGAN
    from trainer.guidance import load_guide
    from trainer.models import build_discriminator, build_generator

    keras.utils.set_random_seed(seed)
    path = tmp_path / f"guide{seed}.keras"
    classifier = build_classifier()
    logits = classifier.get_layer("logits")
    logits.kernel.assign(logits.kernel * 30.0)  # untrained logits are all near 0: no term to lower
    classifier.save(path)
    guide = load_guide(path)
    gan = DCGAN(build_generator(), build_discriminator(), seed=seed)
    gan.compile(keras.optimizers.Adam(1e-2, beta_1=0.5), keras.optimizers.Adam(1e-2, beta_1=0.5),
                guide=guide if weight else None, class_guidance=weight)
    return gan, guide


def test_guided_generator_updates_lower_the_guides_entropy_term_and_leave_the_guide_out(tmp_path):
    """Ten G updates from the same state, with and without the term: only the guided one moves G
    towards images the guide is sure of and that spread over the classes."""
    import tensorflow as tf

    from trainer.guidance import guidance_loss

    z = tf.random.stateless_normal((256, 100), seed=[7, 7])
    after = {}
    for weight in (0.0, 100.0):
        gan, guide = _guided_gan(weight, tmp_path)
        before = guidance_loss(guide(gan.generator(z, training=False))).numpy()
        for _ in range(10):
            gan.generator_step(64)
        after[weight] = guidance_loss(guide(gan.generator(z, training=False))).numpy()
    # frozen, and no part of the checkpointed state: the run directory's file is the guide
    assert guide.trainable_weights == []
    state = {id(v) for v in gan.state_variables()}
    assert not any(id(v) in state for v in guide.weights)
    guided, unguided = before - after[100.0], before - after[0.0]
    assert guided > 0.05 and guided > 5 * abs(unguided)


def test_class_guidance_trains_the_runs_guide_once_and_resumes_exactly(tmp_path, capsys, monkeypatch):
    import trainer.guidance

    monkeypatch.setattr(trainer.guidance, "EPOCHS", 1)
    plain, straight, resumed, late = (tmp_path / n for n in ("plain", "straight", "resumed", "late"))
    options = [*FAST, "--seed", "3", "--checkpoint-every", "4"]
    for out, iterations, extra in ((plain, 8, []), (straight, 8, ["--class-guidance", "1"]),
                                   (resumed, 4, ["--class-guidance", "1"]), (late, 4, [])):
        assert dcgan("train", "--iterations", str(iterations), *options, *extra, "--out", str(out),
                     capsys=capsys)[0] == 0
    assert not (plain / "guide_classifier.keras").exists()
    guide = resumed / "guide_classifier.keras"
    trained_at = guide.stat().st_mtime_ns
    code, _ = dcgan("train", "--resume", str(resumed), "--iterations", "8", "--quiet", capsys=capsys)
    assert code == 0 and guide.stat().st_mtime_ns == trained_at  # kept, not trained again
    assert loss_values(resumed) == loss_values(straight)

    # the guide is trained before the run's seed is set: the first iteration (one D update, and
    # G's loss before its first update) is the unguided run's; after that G has trained otherwise
    assert loss_values(straight)[0] == loss_values(plain)[0]
    assert loss_values(straight)[1:] != loss_values(plain)[1:]

    # switched on at a resume: trained then, and config.json records the change
    assert dcgan("train", "--resume", str(late), "--iterations", "8", "--class-guidance", "1", "--quiet",
                 capsys=capsys)[0] == 0
    assert (late / "guide_classifier.keras").exists()
    assert loss_values(late)[:4] == loss_values(plain)[:4] and loss_values(late)[4:] != loss_values(plain)[4:]
    record = json.loads((late / "config.json").read_text())
    assert record["options"]["class_guidance"] == 1.0
    assert record["resumed"] == [{"iteration": 4, "changed": {"iterations": [4, 8], "class_guidance": [0.0, 1.0]}}]


def test_class_guidance_under_mixed_precision(tmp_path, capsys, monkeypatch):
    """G's float16 images go through the float32 guide: the term steers training, and the run
    saves float32 weights."""
    import keras
    import trainer.guidance

    monkeypatch.setattr(trainer.guidance, "EPOCHS", 1)
    guided, plain = tmp_path / "guided", tmp_path / "plain"
    for out, extra in ((guided, ["--class-guidance", "1"]), (plain, [])):
        assert dcgan("train", "--iterations", "3", *FAST, "--mixed-precision", *extra, "--out", str(out),
                     capsys=capsys)[0] == 0
    rows = loss_values(guided)
    assert len(rows) == 3 and all(np.isfinite(float(v)) for row in rows for v in row)
    assert rows[0] == loss_values(plain)[0] and rows[1:] != loss_values(plain)[1:]
    generator = keras.models.load_model(guided / "generator.keras")
    assert all(w.dtype == "float32" for w in generator.weights)

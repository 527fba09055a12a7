"""DiffAugment operations: what each does to an image, that gradients pass, and the CLI option."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import dcgan_in_process  # noqa: E402

tf = pytest.importorskip("tensorflow")

from trainer.augment import augment, cutout, parse_policy, translate  # noqa: E402

FAST = ["--batch-size", "8", "--sample-every", "1000", "--checkpoint-every", "1000", "--quiet", "--no-export"]


def seeds(start):
    """A randint(shape, low, high): fresh seeded draws per call."""
    rng = np.random.default_rng(start)
    return lambda shape, low, high: tf.constant(rng.integers(low, high, shape), tf.int32)


def images(n=16, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32))


def test_parse_policy():
    assert parse_policy("none") == parse_policy("") == ()
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    for bad in ("flip", "translation,translation", "none,cutout"):
        with pytest.raises(ValueError, match="translation, cutout"):
            parse_policy(bad)


def test_translation_shifts_each_image_by_at_most_4_pixels_and_fills_with_background():
    x = images()
    out = translate(x, seeds(1)).numpy()
    padded = np.pad(x.numpy(), [(0, 0), (4, 4), (4, 4), (0, 0)], constant_values=-1.0)
    shifts = set()
    for i in range(len(out)):
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if np.array_equal(out[i], padded[i, dy:dy + 28, dx:dx + 28])]
        assert len(found) == 1, i
        shifts.add(found[0])
    assert len(shifts) > 4  # drawn per image, not once for the batch


def test_cutout_masks_one_square_of_half_the_side_per_image():
    x = tf.ones((32, 28, 28, 1))
    out = cutout(x, seeds(2)).numpy()[..., 0]
    assert set(np.unique(out)) <= {0.0, 1.0}
    for mask in out == 0:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert 1 <= len(rows) <= 14 and 1 <= len(cols) <= 14  # clipped at the border
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # a solid rectangle
        assert mask.sum() == len(rows) * len(cols)
    assert (out == 0).sum(axis=(1, 2)).max() == 14 * 14  # whole squares do occur


def test_gradients_flow_through_the_augmentations():
    x = tf.Variable(images(4))
    with tf.GradientTape() as tape:
        y = augment(x, ("translation", "cutout"), seeds(3))
        loss = tf.reduce_sum(y * y)
    grad = tape.gradient(loss, x).numpy()
    kept = np.abs(grad) > 0
    assert 0.3 < kept.mean() < 1.0  # pixels shifted out or cut out get none, the rest do
    np.testing.assert_allclose(grad[kept], 2 * x.numpy()[kept], rtol=1e-6)


def test_train_with_augment_records_it_and_rejects_unknown_operations(tmp_path, capsys):
    out = tmp_path / "aug"
    assert dcgan_in_process("train", "--iterations", "2", *FAST, "--augment", "translation,cutout",
                            "--out", str(out), capsys=capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["options"]["augment"] == "translation,cutout"
    plain = tmp_path / "plain"
    assert dcgan_in_process("train", "--iterations", "2", *FAST, "--out", str(plain), capsys=capsys)[0] == 0

    def d_losses(run):  # D's loss on the first real batch: the same images, augmented or not
        return (run / "losses.csv").read_text().splitlines()[1].split(",")[1]

    assert d_losses(out) != d_losses(plain)
    code, _, err = dcgan_in_process("train", "--iterations", "2", *FAST, "--augment", "flip",
                                    "--out", str(tmp_path / "bad"), capsys=capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--augment" in err and "flip" in err
    assert not (tmp_path / "bad").exists()


def test_d_sees_augmented_real_and_fake_in_both_updates(monkeypatch):
    import keras

    import trainer.gan
    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    seen = []

    def recording_augment(images, policy, randint):
        seen.append((int(images.shape[0]), policy))
        return images

    monkeypatch.setattr(trainer.gan, "augment", recording_augment)
    gan = DCGAN(build_generator(), build_discriminator(), seed=0, augment=("translation",))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    gan.discriminator_step(images(8))
    assert seen == [(8, ("translation",))] * 2  # real, then fake
    gan.generator_step(8)
    assert seen[2:] == [(8, ("translation",))]

"""The GAN's update step: the recipe's networks, what each update may change, R1, noise, the
learning-rate schedule and the moving average (trainer/gan.py, trainer/schedule.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import ROOT


def test_networks_match_the_recipe():
    from trainer.models import build_discriminator, build_generator

    g, d = build_generator(), build_discriminator()
    assert g.count_params() == 865_281
    assert sum(int(np.prod(w.shape)) for w in g.trainable_weights) == 852_609
    assert sum(int(np.prod(w.shape)) for w in g.non_trainable_weights) == 12_672
    assert d.count_params() == 212_865
    assert tuple(g.output_shape) == (None, 28, 28, 1) and tuple(d.output_shape) == (None, 1)


@pytest.mark.parametrize("shape, generator_layers, discriminator_convs", [
    ((16, 16, 1), ["dense", "up1", "conv1"], 1),
    ((32, 32, 3), ["dense", "up1", "conv1", "up2", "conv2"], 2),
    ((64, 64, 3), ["dense", "up1", "conv1", "up2", "conv2", "up3", "conv3"], 3),
    ((80, 80, 1), ["dense", "up1", "conv1", "up2", "conv2", "up3", "conv3", "up4", "conv4"], 4),
])
def test_networks_scale_the_recipe_to_other_sizes(shape, generator_layers, discriminator_convs):
    from trainer.models import build_discriminator, build_generator

    g, d = build_generator(100, shape), build_discriminator(shape)
    assert tuple(g.output_shape) == (None, *shape) and tuple(d.output_shape) == (None, 1)
    names = [layer.name for layer in g.layers if layer.name.startswith(("dense", "up", "conv"))]
    assert names == generator_layers
    assert g.layers[-1].activation.__name__ == "tanh" and g.get_layer("conv1").kernel.shape[:2] == (5, 5)
    assert [layer.strides for layer in d.layers if layer.name.startswith("conv")] == [(2, 2)] * discriminator_convs
    wide = build_generator(100, shape, width=2.0)
    assert wide.get_layer("dense").units == 2 * g.get_layer("dense").units


@pytest.mark.parametrize("shape, message", [((30, 30, 1), "--image-size must be one the networks can make"),
                                            ((28, 28, 2), "square with 1 or 3 channels"),
                                            ((32, 28, 3), "square with 1 or 3 channels")])
def test_networks_refuse_shapes_they_cannot_make(shape, message):
    from trainer.models import build_discriminator, build_generator

    for build in (lambda: build_generator(100, shape), lambda: build_discriminator(shape)):
        with pytest.raises(ValueError, match=message):
            build()


def test_a_discriminator_with_batchnorm_sees_real_and_fake_in_separate_passes():
    """With BatchNormalization, a pass over real and fake together would mix their batch
    statistics: D(real) in the step must be D's pass over real alone."""
    import keras
    import tensorflow as tf

    from trainer.gan import DCGAN
    from trainer.models import build_generator

    L = keras.layers
    d = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, strides=2), L.BatchNormalization(),
                          L.LeakyReLU(0.2), L.Flatten(), L.Dense(1)])
    gan = DCGAN(build_generator(), d, seed=0)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    real = tf.random.uniform((8, 28, 28, 1), -1, 1, seed=1)
    expected = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones((8, 1)), d(real, training=True)))
    loss_real = gan.discriminator_step(real)[0]
    np.testing.assert_allclose(float(loss_real), float(expected), rtol=1e-5)


def r1_weight_change(gamma, strategy=None, mixed_precision=False):
    """(what the R1 term changes in one SGD step of D, what it should change).

    D(x) = sum_i w_i x_i^2 + b has grad_x D = 2 w x, so the R1 term gamma/2 E_real ||2 w x||^2
    adds gamma * 4 w * E_real[x^2] to the gradient of w. Two runs from the same weights with the
    same noise differ by exactly -lr times that; fake images, drawn differently, must not enter
    it. Under a strategy the 8 real images are split across its replicas."""
    import keras
    import tensorflow as tf

    from trainer.gan import DCGAN
    from trainer.testing import random_generator

    L = keras.layers
    strategy = strategy or tf.distribute.get_strategy()
    real = tf.random.uniform((8, 28, 28, 1), -1, 1, seed=2)
    w0 = np.linspace(-1, 1, 784, dtype=np.float32)
    lr = 0.1
    weights = {}
    for r1 in (0.0, gamma):
        if mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            with strategy.scope():
                d = keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Lambda(tf.square), L.Dense(1, name="w")])
                d.set_weights([w0[:, None], np.zeros(1, np.float32)])
                gan = DCGAN(random_generator(0), d, seed=0)
                d_opt, g_opt = keras.optimizers.SGD(lr), keras.optimizers.SGD(lr)
                if mixed_precision:
                    d_opt, g_opt = keras.optimizers.LossScaleOptimizer(d_opt), keras.optimizers.LossScaleOptimizer(g_opt)
                gan.compile(d_opt, g_opt, r1_gamma=r1)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        replicas = strategy.num_replicas_in_sync
        if replicas > 1:
            k = 8 // replicas
            shards = strategy.experimental_distribute_values_from_function(
                lambda ctx: real[k * ctx.replica_id_in_sync_group:k * (ctx.replica_id_in_sync_group + 1)])
            tf.function(lambda batch: strategy.run(gan.discriminator_step, args=(batch,)))(shards)
        else:
            gan.discriminator_step(real)
        weights[r1] = d.get_layer("w").kernel.numpy()[:, 0]
    expected = -lr * gamma * 4 * w0 * np.mean(real.numpy().reshape(8, 784) ** 2, axis=0)
    assert np.abs(expected).max() > 1e-2  # large enough to be seen
    return weights[gamma] - weights[0.0], expected


def test_r1_adds_the_gradient_penalty_of_real_images_only():
    actual, expected = r1_weight_change(0.5)
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-6)


def test_r1_under_mixed_precision_is_the_same_penalty():
    """The double backprop runs through D's float16 layers under loss scaling."""
    actual, expected = r1_weight_change(0.5, mixed_precision=True)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-2 * np.abs(expected).max())


@pytest.mark.slow
def test_r1_under_mirrored_strategy_is_the_global_mean():
    """Each replica's penalty is divided by the replica count: the optimizer sums the replicas'
    gradients, so this is the mean over the global batch (summed, it would be twice as large)."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, "tests")
        from test_train_step import r1_weight_change
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        actual, expected = r1_weight_change(0.5, strategy=strategy)
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-6)
        print("R1 is the global mean")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "R1 is the global mean" in result.stdout


def test_single_device_noise_is_what_keras_random_draws():
    """Making noise distinct per replica must not change single-device runs (or the shipped model
    could no longer be reproduced from its command)."""
    import keras

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    gan = DCGAN(build_generator(), build_discriminator(), seed=5)
    reference = keras.random.SeedGenerator(5)
    for _ in range(3):
        np.testing.assert_array_equal(gan.normal(4).numpy(), keras.random.normal((4, 100), seed=reference).numpy())


def test_each_update_changes_only_its_own_network():
    import keras
    import tensorflow as tf

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    keras.utils.set_random_seed(0)
    gan = DCGAN(build_generator(), build_discriminator(), seed=0)
    gan.compile(keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-3, beta_1=0.5))
    real = tf.random.uniform((8, 28, 28, 1), -1, 1)

    def snapshot(model):
        return [w.numpy().copy() for w in model.weights]

    g0, d0 = snapshot(gan.generator), snapshot(gan.discriminator)
    gan.discriminator_step(real)
    g1, d1 = snapshot(gan.generator), snapshot(gan.discriminator)
    assert all(np.array_equal(a, b) for a, b in zip(g0, g1)), "a D update changed G (BatchNorm statistics included)"
    assert any(not np.array_equal(a, b) for a, b in zip(d0, d1)), "the D update did not change D"

    gan.generator_step(8)
    g2, d2 = snapshot(gan.generator), snapshot(gan.discriminator)
    assert all(np.array_equal(a, b) for a, b in zip(d1, d2)), "a G update changed D"
    changed = [not np.array_equal(a, b) for a, b in zip(g1, g2)]
    assert all(changed[i] for i, w in enumerate(gan.generator.weights) if w.trainable), "some G weight did not move"


def test_one_iteration_is_the_d_update_then_the_g_update_on_the_same_fakes():
    """The iteration's algorithm, checked against plain GradientTape math with SGD: D descends
    BCE(1, D(real)) + BCE(0, D(G(z))); G then descends BCE(1, D'(G(z))) through the updated D'
    at the same z (one forward pass of G serves both), and G's BatchNorm statistics move once."""
    import keras
    import tensorflow as tf

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    keras.utils.set_random_seed(3)
    g, d = build_generator(), build_discriminator()
    for layer in d.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # D deterministic, so the reference can recompute it
    g_ref, d_ref = keras.models.clone_model(g), keras.models.clone_model(d)
    initial = g.get_weights()
    g_ref.set_weights(initial)
    d_ref.set_weights(d.get_weights())
    lr = 0.05
    gan = DCGAN(g, d, seed=0)
    gan.compile(keras.optimizers.SGD(lr), keras.optimizers.SGD(lr))
    z = tf.random.normal((8, 100), seed=4)
    gan.normal = lambda n: z
    real = tf.random.uniform((8, 28, 28, 1), -1, 1, seed=5)
    gan.iterate(real)

    def bce(target, logits):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), target), logits))

    with tf.GradientTape() as tape:
        fake = g_ref(z, training=True)  # also moves g_ref's BatchNorm statistics, once
        d_loss = bce(1.0, d_ref(real)) + bce(0.0, d_ref(fake))
    for v, grad in zip(d_ref.trainable_variables, tape.gradient(d_loss, d_ref.trainable_variables)):
        v.assign_sub(lr * grad)
    for actual, expected in zip(d.trainable_variables, d_ref.trainable_variables):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), atol=2e-6, err_msg=actual.path)
    before = [v.numpy().copy() for v in g_ref.trainable_variables]
    with tf.GradientTape() as tape:
        g_loss = bce(1.0, d_ref(g_ref(z, training=True)))
    grads = tape.gradient(g_loss, g_ref.trainable_variables)
    moved = 0.0
    for actual, start, grad, v in zip(g.trainable_variables, before, grads, g_ref.trainable_variables):
        np.testing.assert_allclose(actual.numpy() - start, -lr * grad.numpy(), atol=2e-6, err_msg=v.path)
        moved = max(moved, float(np.abs(grad.numpy()).max()) * lr)
    assert moved > 1e-3  # the update was large enough for the comparison to mean something
    g_once = keras.models.clone_model(g)
    g_once.set_weights(initial)
    g_once(z, training=True)
    for actual, expected, start in zip(g.non_trainable_variables, g_once.non_trainable_variables,
                                       [w for w, v in zip(initial, g.weights) if not v.trainable]):
        assert not np.allclose(expected.numpy(), start)
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7, err_msg=actual.path)


def test_lr_decay_holds_then_falls_linearly_to_zero_counting_d_steps():
    from trainer.config import TrainConfig
    from trainer.train import make_optimizers

    config = TrainConfig(iterations=10, lr=1e-3, d_lr=2e-3, d_steps=2, lr_decay_start=4)
    d_opt, g_opt = make_optimizers(config)

    def rate(opt, updates):
        opt.iterations.assign(updates)
        return float(opt.learning_rate)

    # G: one update per iteration, so u updates applied = t iterations done; 1e-3 * min(1, (10 - t) / 6)
    np.testing.assert_allclose([rate(g_opt, u) for u in (0, 4, 7, 9, 10, 50)],
                               [1e-3, 1e-3, 5e-4, 1e-3 / 6, 0, 0], rtol=1e-6, atol=1e-12)
    # D: two updates per iteration, both at the rate of their iteration
    np.testing.assert_allclose([rate(d_opt, u) for u in (0, 8, 9, 14, 15, 18, 19, 20)],
                               [2e-3, 2e-3, 2e-3, 1e-3, 1e-3, 2e-3 / 6, 2e-3 / 6, 0], rtol=1e-6, atol=1e-12)
    constant = make_optimizers(TrainConfig(iterations=10, lr=1e-3))[1]
    assert rate(constant, 9) == pytest.approx(1e-3)

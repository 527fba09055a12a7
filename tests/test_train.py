"""The trainer: networks, the variable-isolation property, the run directory, resume and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, dcgan_in_process, run_dcgan
from dcgan_export.errors import DcganError

FAST = ["--batch-size", "8", "--sample-every", "5", "--quiet"]


def dcgan(*args, capsys):
    """Run the CLI in this process; return (exit code, stderr)."""
    code, _, err = dcgan_in_process(*args, capsys=capsys)
    return code, err


def loss_rows(run_dir):
    with open(run_dir / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


def loss_values(run_dir):
    """losses.csv without the timings: what must match between two runs that train alike."""
    return [[r[k] for k in r if k != "elapsed_s"] for r in loss_rows(run_dir)]


def press_ctrl_c_at(monkeypatch, iteration):
    """Make the next run in this process stop as Ctrl-C would at ``iteration``; returns the undo."""
    from trainer.callbacks import LossLog

    log_row = LossLog.on_iteration_end

    def interrupt(self, at, logs):
        if at == iteration:
            raise KeyboardInterrupt
        log_row(self, at, logs)

    monkeypatch.setattr(LossLog, "on_iteration_end", interrupt)
    return lambda: monkeypatch.setattr(LossLog, "on_iteration_end", log_row)


def test_networks_match_the_recipe():
    from trainer.models import build_discriminator, build_generator

    g, d = build_generator(), build_discriminator()
    assert g.count_params() == 865_281
    assert sum(int(np.prod(w.shape)) for w in g.trainable_weights) == 852_609
    assert sum(int(np.prod(w.shape)) for w in g.non_trainable_weights) == 12_672
    assert d.count_params() == 212_865
    assert tuple(g.output_shape) == (None, 28, 28, 1) and tuple(d.output_shape) == (None, 1)


def test_a_discriminator_with_batchnorm_sees_real_and_fake_in_separate_passes():
    """The joint real+fake D pass is only for a D without BatchNormalization: with it, batch
    statistics would mix the two, so D(real) in the step must be D's pass over real alone."""
    import keras
    import tensorflow as tf

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    L = keras.layers
    d = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, strides=2), L.BatchNormalization(),
                          L.LeakyReLU(0.2), L.Flatten(), L.Dense(1)])
    assert DCGAN(build_generator(), build_discriminator()).joint_d_pass
    gan = DCGAN(build_generator(), d, seed=0)
    assert not gan.joint_d_pass
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    real = tf.random.uniform((8, 28, 28, 1), -1, 1, seed=1)
    expected = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones((8, 1)), d(real, training=True)))
    loss_real = gan.discriminator_step(real)[0]
    np.testing.assert_allclose(float(loss_real), float(expected), rtol=1e-5)


def r1_weight_change(gamma, joint=True, strategy=None, mixed_precision=False):
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
                gan.joint_d_pass = joint
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


@pytest.mark.parametrize("joint", [True, False], ids=["joint-pass", "separate-passes"])
def test_r1_adds_the_gradient_penalty_of_real_images_only(joint):
    actual, expected = r1_weight_change(0.5, joint=joint)
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-6)


def test_r1_under_mixed_precision_is_the_same_penalty():
    """The double backprop runs through D's float16 layers under loss scaling."""
    actual, expected = r1_weight_change(0.5, mixed_precision=True)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-2 * np.abs(expected).max())


def test_single_device_noise_is_what_keras_random_draws():
    """Making noise distinct per replica must not change single-device runs (or the shipped model
    could no longer be reproduced from its command)."""
    import keras

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    gan = DCGAN(build_generator(), build_discriminator(), seed=5)
    reference = keras.random.SeedGenerator(5)
    for _ in range(3):
        np.testing.assert_array_equal(gan._noise(4).numpy(), keras.random.normal((4, 100), seed=reference).numpy())


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


def test_train_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = dcgan("train", "--iterations", "12", *FAST, "--checkpoint-every", "5", "--tensorboard",
                    "--out", str(out), capsys=capsys)
    assert code == 0
    rows = loss_rows(out)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 13))
    assert set(rows[0]) == {"iteration", "d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake", "elapsed_s"}
    assert all(0 < float(r["d_real"]) < 1 and np.isfinite(float(r["g_loss"])) for r in rows)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["iter_000005.png", "iter_000010.png"]
    assert Image.open(out / "samples" / "iter_000005.png").size == (5 * 30 + 2, 5 * 30 + 2)
    assert Image.open(out / "progress.gif").n_frames == 2
    for name in ("losses.png", "generator.keras", "discriminator.keras", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0, name
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["iterations"] == 12 and config["options"]["batch_size"] == 8
    assert config["data"]["sha256"] == "c7480abb2a021b36a448f21c3504154cac4b3a924ef8e22eace132a36148ebba"
    assert config["versions"]["keras"].startswith("3.")
    assert json.loads((out / "state.json").read_text()) == {"iteration": 12, "finished": True, "generator_iteration": 12}
    # the fixed-noise grids really come from the generator: two different checkpoints differ
    a, b = (np.asarray(Image.open(out / "samples" / n)) for n in ("iter_000005.png", "iter_000010.png"))
    assert not np.array_equal(a, b)


def test_d_lr_sets_only_the_discriminator_learning_rate(tmp_path, capsys):
    out = tmp_path / "ttur"
    assert dcgan("train", "--iterations", "2", *FAST, "--lr", "1e-4", "--d-lr", "4e-4", "--checkpoint-every", "2",
                 "--out", str(out), capsys=capsys)[0] == 0
    saved = np.load(out / "checkpoint.npz")
    # checkpoint variables are in DCGAN.state_variables() order: D's optimizer, then G's
    rates = [float(saved[f"v{i:04d}"]) for i, path in enumerate(saved["paths"]) if path.endswith("/learning_rate")]
    np.testing.assert_allclose(rates, [4e-4, 1e-4], rtol=1e-6)
    assert json.loads((out / "config.json").read_text())["options"]["d_lr"] == 4e-4


def test_lr_decay_holds_then_falls_linearly_to_zero_counting_d_steps():
    from trainer.train import TrainConfig, make_optimizers

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


def test_lr_decay_changes_training_only_after_its_start(tmp_path, capsys):
    runs = {}
    for name, extra in (("constant", []), ("decay", ["--lr-decay-start", "2"])):
        runs[name] = tmp_path / name
        assert dcgan("train", "--iterations", "6", *FAST, *extra, "--out", str(runs[name]), capsys=capsys)[0] == 0
    constant, decay = (loss_rows(runs[k]) for k in ("constant", "decay"))
    values = [k for k in constant[0] if k not in ("iteration", "elapsed_s")]
    # updates 1-3 of each network run at the full rate (update u at step u - 1 < 3), update 4 at a
    # reduced one. A row's D figures come before its iteration's D update, its g_loss after it.
    assert [[r[k] for k in values] for r in decay[:3]] == [[r[k] for k in values] for r in constant[:3]]
    assert [decay[3][k] for k in values if k != "g_loss"] == [constant[3][k] for k in values if k != "g_loss"]
    assert decay[3]["g_loss"] != constant[3]["g_loss"]


def test_state_json_says_which_iteration_generator_keras_holds(tmp_path, capsys, monkeypatch):
    import trainer.train

    out, seen = tmp_path / "run", []
    save_model = trainer.train._save_model

    def record_state(model, path, *args):
        seen.append((path.name, json.loads((out / "state.json").read_text())))
        save_model(model, path, *args)

    monkeypatch.setattr(trainer.train, "_save_model", record_state)
    for iterations in (4, 8):  # a run, then resumed
        seen.clear()
        args = ["--resume", str(out)] if iterations == 8 else [*FAST, "--checkpoint-every", "2", "--out", str(out)]
        assert dcgan("train", *args, "--iterations", str(iterations), "--quiet", capsys=capsys)[0] == 0
        # not finished while the files are written, and no claim about generator.keras while it is replaced
        assert seen == [("generator.keras", {"iteration": iterations, "finished": False}),
                        ("discriminator.keras", {"iteration": iterations, "finished": False,
                                                 "generator_iteration": iterations})]
        assert json.loads((out / "state.json").read_text()) == {"iteration": iterations, "finished": True,
                                                                "generator_iteration": iterations}


@pytest.mark.parametrize("before, carried", [
    ({"iteration": 4, "finished": True, "generator_iteration": 4}, 4),
    ({"iteration": 5, "finished": False, "generator_iteration": 4}, 4),
    ({"iteration": 4, "finished": True}, 4),  # written before generator_iteration existed
    ({"iteration": 4, "finished": False}, None),  # a first run, not finished: no generator.keras yet
], ids=["finished", "resumed", "finished-old-format", "unfinished"])
def test_a_resumed_runs_checkpoints_keep_the_iteration_generator_keras_holds(tmp_path, before, carried):
    from trainer import checkpoint

    (tmp_path / "state.json").write_text(json.dumps(before))
    checkpoint.save(tmp_path, [np.zeros(2, np.float32)], 6)
    expected = {"iteration": 6, "finished": False} | ({"generator_iteration": carried} if carried else {})
    assert json.loads((tmp_path / "state.json").read_text()) == expected


@pytest.mark.parametrize("loss_scaled", [False, True], ids=["adam", "loss-scale-optimizer"])
def test_restore_skips_a_saved_constant_rate_a_decaying_optimizer_has_no_variable_for(tmp_path, loss_scaled):
    import keras

    from trainer import checkpoint
    from trainer.schedule import HoldThenLinearDecay

    def optimizer(rate):
        weight = keras.Variable(np.ones(3, np.float32))
        opt = keras.optimizers.Adam(rate)
        opt = keras.optimizers.LossScaleOptimizer(opt) if loss_scaled else opt
        opt.build([weight])
        return opt

    constant, decaying = optimizer(1e-3), optimizer(HoldThenLinearDecay(1e-3, 2, 10, 1))
    assert len(constant.variables) == len(decaying.variables) + 1  # the inner Adam's learning_rate
    for i, v in enumerate(constant.variables):
        v.assign(np.full(v.shape, i + 2, v.dtype))
    checkpoint.save(tmp_path, constant.variables, 3)
    assert checkpoint.restore(tmp_path, decaying.variables) == 3
    inner = constant.inner_optimizer if loss_scaled else constant
    kept = [v for v in constant.variables if v.path != f"{inner.name}/learning_rate"]
    assert len(kept) == len(decaying.variables)
    for saved, v in zip(kept, decaying.variables):
        kind = (saved.path.split("/")[-1].split("_")[-1], v.path.split("/")[-1].split("_")[-1])
        assert kind[0] == kind[1]  # iteration, momentum, velocity; with loss scaling rate, counter, scale
        assert np.array_equal(v.numpy(), saved.numpy()), v.path
    # the other way round a variable would be left unset: refused
    checkpoint.save(tmp_path, decaying.variables, 3)
    with pytest.raises(DcganError, match="do not match"):
        checkpoint.restore(tmp_path, optimizer(1e-3).variables)


@pytest.mark.parametrize("options", [[], ["--augment", "translation,cutout"], ["--r1", "1"]],
                         ids=["plain", "augment", "r1"])
def test_same_seed_same_losses_and_resume_is_exact(tmp_path, capsys, options):
    straight, again, resumed = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out in (straight, again):
        assert dcgan("train", "--iterations", "30", *FAST, *options, "--seed", "3", "--out", str(out),
                     capsys=capsys)[0] == 0
    assert dcgan("train", "--iterations", "18", *FAST, *options, "--seed", "3", "--checkpoint-every", "6",
                 "--out", str(resumed), capsys=capsys)[0] == 0
    assert dcgan("train", "--resume", str(resumed), "--iterations", "30", "--quiet", capsys=capsys)[0] == 0

    assert loss_values(straight) == loss_values(again)  # determinism: all 30 rows identical
    assert loss_values(resumed) == loss_values(straight)  # resume continues exactly where it stopped


def test_interrupted_lr_decay_run_resumes_on_the_same_curve(tmp_path, capsys, monkeypatch):
    """The decay runs to --iterations, so the straight run and the interrupted one (Ctrl-C at
    iteration 17, resumed from its checkpoint at 12 with the same target) must log the same rows."""
    options = ["--iterations", "30", *FAST, "--lr-decay-start", "6", "--checkpoint-every", "6"]
    straight, interrupted = tmp_path / "a", tmp_path / "b"
    assert dcgan("train", *options, "--out", str(straight), capsys=capsys)[0] == 0

    undo_ctrl_c = press_ctrl_c_at(monkeypatch, 17)
    code, err = dcgan("train", *options, "--out", str(interrupted), capsys=capsys)
    assert code == 130 and "Aborted." in err  # click turns Ctrl-C into Abort
    assert json.loads((interrupted / "state.json").read_text())["iteration"] == 12
    undo_ctrl_c()
    # moving the target would bend the curve the run is part-way down: refused, nothing touched
    code, err = dcgan("train", "--resume", str(interrupted), "--iterations", "40", "--quiet", capsys=capsys)
    assert code == 2 and "cannot be resumed with a different --iterations" in err and err.count("\n") == 1
    assert json.loads((interrupted / "state.json").read_text())["iteration"] == 12
    assert dcgan("train", "--resume", str(interrupted), "--quiet", capsys=capsys)[0] == 0

    assert loss_values(interrupted) == loss_values(straight)


@pytest.mark.parametrize("precision", [[], ["--mixed-precision"]], ids=["float32", "mixed"])
def test_a_resumed_run_can_start_decaying_at_its_checkpoint(tmp_path, capsys, monkeypatch, precision):
    """Train at the full rates, then anneal: the same run as one started with that --lr-decay-start."""
    options = [*FAST, "--r1", "1", *precision]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert dcgan("train", "--iterations", "20", *options, "--lr-decay-start", "12", "--out", str(straight),
                 capsys=capsys)[0] == 0
    assert dcgan("train", "--iterations", "12", *options, "--checkpoint-every", "6", "--out", str(resumed),
                 capsys=capsys)[0] == 0
    code, err = dcgan("train", "--resume", str(resumed), "--iterations", "20", "--lr-decay-start", "6", "--quiet",
                      capsys=capsys)
    assert code == 2 and "--lr-decay-start 6 is before" in err and "(iteration 12)" in err and err.count("\n") == 1
    assert json.loads((resumed / "config.json").read_text())["options"]["lr_decay_start"] is None

    # a decay set on resume but not begun yet (stopped at 15, checkpoint 12) can still be moved
    undo_ctrl_c = press_ctrl_c_at(monkeypatch, 15)
    code, _ = dcgan("train", "--resume", str(resumed), "--iterations", "20", "--lr-decay-start", "16", "--quiet",
                    capsys=capsys)
    assert code == 130 and json.loads((resumed / "config.json").read_text())["options"]["lr_decay_start"] == 16
    undo_ctrl_c()
    assert dcgan("train", "--resume", str(resumed), "--lr-decay-start", "12", "--quiet", capsys=capsys)[0] == 0
    assert json.loads((resumed / "config.json").read_text())["options"]["lr_decay_start"] == 12

    assert loss_values(resumed) == loss_values(straight)
    # once decaying, the start is fixed like the target
    code, err = dcgan("train", "--resume", str(resumed), "--iterations", "20", "--lr-decay-start", "14", "--quiet",
                      capsys=capsys)
    assert code == 2 and "cannot be resumed with a different --lr-decay-start" in err and err.count("\n") == 1
    assert json.loads((resumed / "config.json").read_text())["options"]["lr_decay_start"] == 12
    assert loss_values(resumed) == loss_values(straight)  # nothing on disk touched by the refusal


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_leaves_consecutive_rows(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "dcgan_export.cli", "train", "--iterations", "400",
                             "--batch-size", "8", "--checkpoint-every", "7", "--sample-every", "5",
                             "--quiet", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "losses.csv").exists() and len((out / "losses.csv").read_text().splitlines()) > 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in out.rglob(".*.tmp")]
    saved = json.loads((out / "state.json").read_text())["iteration"]
    assert saved > 0 and saved % 7 == 0
    result = run_dcgan("train", "--resume", str(out), "--iterations", "60", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"at iteration {saved + 1}" in result.stdout
    assert [int(r["iteration"]) for r in loss_rows(out)] == list(range(1, 61))
    assert not [p for p in out.rglob(".*.tmp") if p.name not in leftovers]


def test_mixed_precision_trains_and_saves_float32(tmp_path, capsys):
    out = tmp_path / "mp"
    # --r1 too: its double backprop runs through D's float16 layers under loss scaling
    code, _ = dcgan("train", "--iterations", "3", *FAST, "--mixed-precision", "--r1", "1", "--out", str(out),
                    capsys=capsys)
    assert code == 0
    import keras

    g = keras.models.load_model(out / "generator.keras")
    assert all(w.dtype == "float32" for w in g.weights)
    assert all(np.isfinite(float(r[k])) for r in loss_rows(out) for k in ("g_loss", "d_loss_real"))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for whatever runs next


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from trainer.train import TrainConfig, train
        train(TrainConfig(out={str(tmp_path / 'm')!r}, iterations=4, batch_size=8, strategy="mirrored", quiet=True))
        import trainer.guidance
        trainer.guidance.EPOCHS = 1  # the guide is loaded into the strategy's scope and runs in each replica
        train(TrainConfig(out={str(tmp_path / 'g')!r}, iterations=2, batch_size=8, strategy="mirrored",
                          class_guidance=1.0, quiet=True))

        # every replica draws its own noise (not copies of the same batch)
        import keras
        from trainer.gan import DCGAN
        from trainer.models import build_discriminator, build_generator
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            gan = DCGAN(build_generator(), build_discriminator(), seed=0)
        per_replica = strategy.experimental_local_results(strategy.run(gan._noise, args=(4,)))
        assert len(per_replica) == 2 and not (per_replica[0].numpy() == per_replica[1].numpy()).any()
        print("replicas draw distinct noise")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 devices" in result.stdout
    assert "replicas draw distinct noise" in result.stdout
    assert [int(r["iteration"]) for r in loss_rows(tmp_path / "m")] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["g_loss"])) for r in loss_rows(tmp_path / "g"))


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
        from test_train import r1_weight_change
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        actual, expected = r1_weight_change(0.5, strategy=strategy)
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-6)
        print("R1 is the global mean")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "R1 is the global mean" in result.stdout


# --- bad input: one line, exit 2, nothing on disk lost ----------------------------------------

def _idx_dir(tmp_path, magic=2051, truncate=0):
    import struct

    d = tmp_path / "idx"
    d.mkdir()
    data = struct.pack(">IIII", magic, 10, 28, 28) + bytes(10 * 784 - truncate)
    (d / "train-images-idx3-ubyte").write_bytes(data)
    return str(d)


def _npz(tmp_path, labels):
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=np.zeros((len(labels), 28, 28), np.uint8), y_train=np.array(labels))
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["--data", "cifar10"], "unknown data set 'cifar10'"),
    (["--data", "/no/such/dir"], "data path not found"),
    (["--data", "IDX_BAD_MAGIC"], "wrong IDX magic number"),
    (["--data", "IDX_TRUNCATED"], "truncated IDX file"),
    (["--batch-size", "8000"], "larger than the data set"),
    (["--iterations", "0"], "--iterations must be > 0"),
    (["--iterations", "-5"], "--iterations must be > 0"),
    (["--d-lr", "0"], "--d-lr must be a finite number > 0"),
    (["--lr", "inf"], "--lr must be a finite number > 0"),
    (["--d-lr", "nan"], "--d-lr must be a finite number > 0"),
    (["--r1", "-1"], "--r1 must be a finite number >= 0"),
    (["--lr-decay-start", "-1"], "--lr-decay-start must be in [0, --iterations)"),
    (["--iterations", "30", "--lr-decay-start", "30"], "--lr-decay-start must be in [0, --iterations)"),
    (["--r1", "nan"], "--r1 must be a finite number >= 0"),
    (["--class-guidance", "-1"], "--class-guidance must be a finite number >= 0"),
    (["--class-guidance", "1", "--data", "IDX_UNLABELLED"], "trains a classifier on the data's labels, and"),
    (["--class-guidance", "1", "--data", "NPZ_LABEL_12"], "--class-guidance needs labels 0-9;"),
    (["--class-guidance", "1", "--data", "NPZ_ONE_HOT"], "--class-guidance needs one integer label per image;"),
    (["--class-guidance", "1", "--data", "NPZ_TEXT_LABELS"], "--class-guidance needs one integer label per image;"),
    (["--out", "A_FILE/run"], "cannot write to --out"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "a_file").write_text("keep me")
    substitutions = {"IDX_BAD_MAGIC": lambda: _idx_dir(tmp_path, magic=2049),
                     "IDX_TRUNCATED": lambda: _idx_dir(tmp_path, truncate=50),
                     "IDX_UNLABELLED": lambda: _idx_dir(tmp_path),
                     "NPZ_LABEL_12": lambda: _npz(tmp_path, labels=[12] + [0] * 99),
                     "NPZ_ONE_HOT": lambda: _npz(tmp_path, labels=np.eye(10, dtype=np.int64)[[0] * 100]),
                     "NPZ_TEXT_LABELS": lambda: _npz(tmp_path, labels=["seven"] * 100),
                     "A_FILE/run": lambda: str(tmp_path / "a_file" / "run")}
    args = [substitutions[a]() if a in substitutions else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    code, err = dcgan("train", *args, "--quiet", capsys=capsys)
    assert code == 2
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1
    assert (tmp_path / "a_file").read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_existing_run_is_refused_without_force_and_kept(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "losses.csv").write_text("precious\n")
    (out / "config.json").write_text('{"options": {}}')  # an earlier run's
    (out / "notes.txt").write_text("mine\n")
    (out / "guide_classifier.keras").write_text("an earlier run's --class-guidance classifier")
    code, err = dcgan("train", "--out", str(out), capsys=capsys)
    assert code == 2 and "already exists" in err and "--force" in err and err.count("\n") == 1
    assert (out / "losses.csv").read_text() == "precious\n"
    code, _ = dcgan("train", "--out", str(out), "--iterations", "2", *FAST, "--force", capsys=capsys)
    assert code == 0 and (out / "notes.txt").read_text() == "mine\n"  # --force clears only run artifacts
    assert not (out / "guide_classifier.keras").exists()  # a later resume must not guide with it
    assert len(loss_rows(out)) == 2


def test_resume_needs_a_checkpoint_and_keeps_settings(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = dcgan("train", "--resume", str(empty), capsys=capsys)
    assert code == 2 and "has no checkpoint.npz" in err and err.count("\n") == 1
    code, err = dcgan("train", "--resume", str(tmp_path / "missing"), capsys=capsys)
    assert code == 2 and "no such directory" in err
    code, err = dcgan("train", "--resume", str(empty), "--batch-size", "4", capsys=capsys)
    assert code == 2 and "cannot change --batch-size" in err


def test_ema_generator_is_the_warmed_up_average_and_is_what_gets_saved(tmp_path, capsys):
    import keras

    from trainer.gan import DCGAN
    from trainer.models import build_discriminator, build_generator

    keras.utils.set_random_seed(0)
    gan = DCGAN(build_generator(), build_discriminator(), seed=0, ema_decay=0.999)
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in gan.ema_generator.weights]
    gan.generator_step(8)
    decay = min(0.999, 2 / 11)  # warm-up after the first generator update
    for ema, old, weight in zip(gan.ema_generator.weights, before, gan.generator.weights):
        expected = decay * old + (1 - decay) * weight.numpy() if weight.trainable else weight.numpy()
        np.testing.assert_allclose(ema.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(e.numpy(), w.numpy()) for e, w in zip(gan.ema_generator.weights, gan.generator.weights))

    out = tmp_path / "ema"
    assert dcgan("train", "--iterations", "4", *FAST, "--ema", "0.99", "--out", str(out), capsys=capsys)[0] == 0
    saved = keras.models.load_model(out / "generator.keras")
    ckpt = np.load(out / "checkpoint.npz")
    ema_values = [ckpt[f"v{i:04d}"] for i, p in enumerate(ckpt["paths"]) if "generator" in p][-len(saved.weights):]
    for weight, value in zip(saved.weights, ema_values):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_a_resumed_run_can_change_its_averaging_decay_and_config_json_says_when(tmp_path, capsys):
    """The average carries on from the checkpoint's with the new decay; training is unchanged."""
    import keras

    straight, resumed = tmp_path / "a", tmp_path / "b"
    options = [*FAST, "--ema", "0.9"]
    assert dcgan("train", "--iterations", "7", *options, "--out", str(straight), capsys=capsys)[0] == 0
    assert dcgan("train", "--iterations", "6", *options, "--out", str(resumed), capsys=capsys)[0] == 0
    before = np.load(resumed / "checkpoint.npz")
    before = [before[f"v{i:04d}"] for i in range(len(before["paths"]))]
    assert dcgan("train", "--resume", str(resumed), "--iterations", "7", "--ema", "0.3", "--quiet",
                 capsys=capsys)[0] == 0

    assert loss_values(resumed) == loss_values(straight)
    saved = keras.models.load_model(resumed / "generator.keras")
    after = np.load(resumed / "checkpoint.npz")
    after = [after[f"v{i:04d}"] for i in range(len(after["paths"]))]
    n = len(saved.weights)  # state order: G's variables first, the average's last
    decay = min(0.3, 7 / 16)  # the warm-up (1 + t) / (10 + t) after 6 updates is 0.4375: 0.3 rules
    for weight, live, ema_before, ema_after in zip(saved.weights, after[:n], before[-n:], after[-n:]):
        expected = decay * ema_before + (1 - decay) * live if weight.trainable else live
        np.testing.assert_allclose(ema_after, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(weight.numpy(), ema_after)
    record = json.loads((resumed / "config.json").read_text())
    assert record["options"]["ema"] == 0.3
    assert record["resumed"] == [{"iteration": 6, "changed": {"iterations": [6, 7], "ema": [0.9, 0.3]}}]
    assert "resumed" not in json.loads((straight / "config.json").read_text())

    # the average cannot be switched off, or on for a run without one; nothing is touched
    plain = tmp_path / "plain"
    assert dcgan("train", "--iterations", "2", *FAST, "--out", str(plain), capsys=capsys)[0] == 0
    for run, ema, word in ((resumed, "0", "off"), (plain, "0.9", "on")):
        config = (run / "config.json").read_text()
        code, err = dcgan("train", "--resume", str(run), "--iterations", "9", "--ema", ema, capsys=capsys)
        assert code == 2 and f"--ema cannot be switched {word} on resume" in err and err.count("\n") == 1
        assert (run / "config.json").read_text() == config
    # each later resume adds its own entry, without options that change only what the run reports
    assert dcgan("train", "--resume", str(resumed), "--iterations", "8", capsys=capsys)[0] == 0
    assert dcgan("train", "--resume", str(resumed), "--iterations", "9", "--tensorboard", "--eval-every", "50",
                 capsys=capsys)[0] == 0
    assert json.loads((resumed / "config.json").read_text())["resumed"][1:] == [
        {"iteration": 7, "changed": {"iterations": [7, 8]}}, {"iteration": 8, "changed": {"iterations": [8, 9]}}]


def test_force_never_clears_a_directory_that_is_not_a_run(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "samples").mkdir(parents=True)
    (project / "samples" / "mine.png").write_bytes(b"not ours")
    code, err = dcgan("train", "--out", str(project), "--force", capsys=capsys)
    assert code == 2 and "not a dcgan run directory" in err
    assert (project / "samples" / "mine.png").read_bytes() == b"not ours"


def test_eval_every_needs_digits_and_light_install_needs_train_extra(tmp_path, capsys, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "faces.npz", x_train=images)
    code, err = dcgan("train", "--data", str(tmp_path / "faces.npz"), "--eval-every", "10",
                      "--out", str(tmp_path / "r"), capsys=capsys)
    assert code == 2 and "digit classifier" in err and not (tmp_path / "r").exists()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    for command in (["train", "--out", str(tmp_path / "r2")], ["export", str(tmp_path), "--out", "g.onnx"]):
        code, err = dcgan(*command, capsys=capsys)
        assert code == 2 and "needs the [train] extra" in err and err.count("\n") == 1
    assert not (tmp_path / "r2").exists()


def test_eval_every_logs_quality_and_warns_on_collapse(tmp_path, capsys):
    out = tmp_path / "ev"
    code, _, err = dcgan_in_process("train", "--iterations", "10", *FAST, "--eval-every", "5", "--eval-samples", "200",
                                    "--tensorboard", "--out", str(out), capsys=capsys)
    assert code == 0
    with open(out / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [5, 10]
    assert all(abs(sum(float(r[f"share_{d}"]) for d in range(10)) - 1) < 1e-3 for r in rows)
    assert all(float(r["fid"]) > float(r["fid_floor"]) > 0 for r in rows)
    # after 10 iterations the samples are noise the classifier files under one or two digits
    assert "MODE COLLAPSE?" in err and "WARNING (iteration 5)" in err
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(out / "tb")).Reload().Tags()
    assert {"eval/fid", "eval/min_class_share", "g_loss"} <= set(tags.get("tensors", []) + tags.get("scalars", []))


@pytest.mark.parametrize("interactive", [True, False])
def test_progress_bar_redraws_on_a_terminal_and_writes_tenths_elsewhere(interactive):
    import io

    from trainer.callbacks import ProgressBar

    class Stream(io.StringIO):
        def isatty(self):
            return interactive

    stream = Stream()
    bar = ProgressBar(start=20, total=120, stream=stream, min_interval=0)
    bar.on_train_begin()
    logs = {"d_loss_real": 0.5, "d_loss_fake": 0.6, "g_loss": 0.7}
    for iteration in range(21, 121):
        bar.on_iteration_end(iteration, logs)
    bar.on_train_end()
    text = stream.getvalue()
    assert "120/120" in text and "d_real 0.500 d_fake 0.600 g 0.700" in text
    if interactive:
        assert text.count("\r") == 100 and text.count("\n") == 1
    else:  # resumed at 20 of 120: tenths 2..10 -> one line at 24, 36, ..., 120
        lines = text.splitlines()
        assert "\r" not in text and len(lines) == 9
        assert [int(line.split()[1].split("/")[0]) for line in lines] == [24, 36, 48, 60, 72, 84, 96, 108, 120]

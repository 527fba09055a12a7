"""``dcgan train`` end to end: what a run writes, the options that shape it, hardware options,
and bad input (one line, exit 2, nothing on disk lost)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from helpers import FAST, ROOT, dcgan, dcgan_in_process, loss_rows


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
        from trainer.config import TrainConfig
        from trainer.train import start_run
        start_run(TrainConfig(out={str(tmp_path / 'm')!r}, iterations=4, batch_size=8, distribute=True,
                              quiet=True, export=False))
        import trainer.guidance
        trainer.guidance.EPOCHS = 1  # the guide is loaded into the strategy's scope and runs in each replica
        start_run(TrainConfig(out={str(tmp_path / 'g')!r}, iterations=2, batch_size=8, distribute=True,
                              class_guidance=1.0, quiet=True, export=False))

        # every replica draws its own noise (not copies of the same batch)
        import keras
        from trainer.gan import DCGAN
        from trainer.models import build_discriminator, build_generator
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            gan = DCGAN(build_generator(), build_discriminator(), seed=0)
        per_replica = strategy.experimental_local_results(strategy.run(gan.normal, args=(4,)))
        assert len(per_replica) == 2 and not (per_replica[0].numpy() == per_replica[1].numpy()).any()
        print("replicas draw distinct noise")

        # and their dropout masks are their rows of the global batch's mask
        from trainer.dropout import dropout
        with strategy.scope():
            seed = keras.random.SeedGenerator(3)
        masks = strategy.experimental_local_results(strategy.run(lambda: dropout(tf.ones((4, 50)), 0.5, seed)))
        whole = dropout(tf.ones((8, 50)), 0.5, keras.random.SeedGenerator(3)).numpy()
        assert 0.3 < (whole == 0).mean() < 0.7
        assert (tf.concat(masks, 0).numpy() == whole).all()
        print("replicas take their rows of the dropout mask")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 devices" in result.stdout
    assert "replicas draw distinct noise" in result.stdout
    assert "replicas take their rows of the dropout mask" in result.stdout
    assert [int(r["iteration"]) for r in loss_rows(tmp_path / "m")] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["g_loss"])) for r in loss_rows(tmp_path / "g"))


def test_eval_every_needs_digits_and_light_install_needs_train_extra(tmp_path, capsys, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "faces.npz", x_train=images)
    code, err = dcgan("train", "--data", str(tmp_path / "faces.npz"), "--eval-every", "10",
                      "--out", str(tmp_path / "r"), capsys=capsys)
    assert code == 2 and "digit classifier" in err and not (tmp_path / "r").exists()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorflow", "jax") else real(name, *a))
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
    (["--iterations", "0"], "--iterations must be between 1 and 1,000,000,000, got 0"),
    (["--iterations", str(10**9 + 1)], "--iterations must be between 1 and"),
    (["--seed", str(2**32)], "--seed must be between 0 and 4,294,967,295"),
    (["--latent-dim", str(2**62)], "--latent-dim must be between 1 and 4,096"),
    (["--iterations", "-5"], "--iterations must be between 1 and"),
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


def test_force_never_clears_a_directory_that_is_not_a_run(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "samples").mkdir(parents=True)
    (project / "samples" / "mine.png").write_bytes(b"not ours")
    code, err = dcgan("train", "--out", str(project), "--force", capsys=capsys)
    assert code == 2 and "not a dcgan run directory" in err
    assert (project / "samples" / "mine.png").read_bytes() == b"not ours"

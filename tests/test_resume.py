"""Resuming a run (trainer/resume.py, trainer/checkpoint.py): exactly where it stopped, after
Ctrl-C or SIGKILL, with only the options a resume may change, and state.json always true."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir
from helpers import FAST, ROOT, dcgan, loss_rows, loss_values, press_ctrl_c_at, run_dcgan


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


def test_resume_needs_a_checkpoint_and_keeps_settings(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = dcgan("train", "--resume", str(empty), capsys=capsys)
    assert code == 2 and "is not a dcgan run directory (no config.json)" in err and err.count("\n") == 1
    assert not list(empty.iterdir())
    code, err = dcgan("train", "--resume", str(tmp_path / "missing"), capsys=capsys)
    assert code == 2 and "no such directory" in err
    code, err = dcgan("train", "--resume", str(empty), "--batch-size", "4", capsys=capsys)
    assert code == 2 and "cannot change --batch-size" in err


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
    checkpoint.save(RunDir(tmp_path), [np.zeros(2, np.float32)], 6)
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
    checkpoint.save(RunDir(tmp_path), constant.variables, 3)
    assert checkpoint.restore(RunDir(tmp_path), decaying.variables) == 3
    inner = constant.inner_optimizer if loss_scaled else constant
    kept = [v for v in constant.variables if v.path != f"{inner.name}/learning_rate"]
    assert len(kept) == len(decaying.variables)
    for saved, v in zip(kept, decaying.variables):
        kind = (saved.path.split("/")[-1].split("_")[-1], v.path.split("/")[-1].split("_")[-1])
        assert kind[0] == kind[1]  # iteration, momentum, velocity; with loss scaling rate, counter, scale
        assert np.array_equal(v.numpy(), saved.numpy()), v.path
    # the other way round a variable would be left unset: refused
    checkpoint.save(RunDir(tmp_path), decaying.variables, 3)
    with pytest.raises(DcganError, match="do not match"):
        checkpoint.restore(RunDir(tmp_path), optimizer(1e-3).variables)


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

"""The trainer on JAX besides TensorFlow (trainer/gradients.py, jax_step.py, hardware.py, data.py):
both backends compute the same step, a JAX run needs no TensorFlow, runs are deterministic and
resume across backends, and --distribute over two devices is the one-device run.

Keras picks its backend once per process, so every JAX run here is a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import FAST, ROOT, loss_rows, loss_values, run_dcgan
from trainer.data import IterationBatches

pytest.importorskip("jax")

JAX = {"KERAS_BACKEND": "jax"}
TWO_CPUS = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def step_run(tmp_path, backend: str, case: str) -> dict:
    out = tmp_path / f"{case}_{backend}.npz"
    result = subprocess.run([sys.executable, "tests/backend/step_run.py", str(out), case], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain", "every_option", "mixed_precision"])
def test_tensorflow_and_jax_compute_the_same_iterations(tmp_path, case):
    """Same initial weights, batches and noise (a fixed table: each backend's random generator is its
    own) and seed states (so the same Dropout masks); every_option has 2 D steps, label smoothing,
    R1, EMA, DiffAugment, class guidance and lr decay. Tolerance: logged losses within 2e-3, and each network's and optimizer's
    change over the 4 iterations within 5% (relative L2 norm) of TensorFlow's: float32 arithmetic
    in another order (oneDNN vs XLA) drifts that far; a missing term moves them by far more."""
    tf_run, jax_run = step_run(tmp_path, "tensorflow", case), step_run(tmp_path, "jax", case)
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], atol=2e-3)
    assert list(tf_run["paths"]) == list(jax_run["paths"])  # the same state, in the same order
    moved, differ = {}, {}
    for i, path in enumerate(tf_run["paths"]):
        before = tf_run[f"before{i:04d}"]
        np.testing.assert_array_equal(before, jax_run[f"before{i:04d}"])
        if "seed_generator" in str(path):  # random states advance alike, exactly
            np.testing.assert_array_equal(jax_run[f"after{i:04d}"], tf_run[f"after{i:04d}"], err_msg=str(path))
            continue
        group = str(path).split("/")[0]
        change_tf, change_jax = tf_run[f"after{i:04d}"] - before, jax_run[f"after{i:04d}"] - before
        moved[group] = moved.get(group, 0.0) + float(np.sum(change_tf ** 2))
        differ[group] = differ.get(group, 0.0) + float(np.sum((change_tf - change_jax) ** 2))
    for group in ("generator", "discriminator"):
        assert moved[group] > 0.01, group  # training happened
    for group in moved:
        if moved[group] > 0:
            assert np.sqrt(differ[group] / moved[group]) < 0.05, (group, np.sqrt(differ[group] / moved[group]))


def test_batches_are_the_same_on_resume_and_split_into_process_shards():
    images = np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2)
    whole = IterationBatches(images, 4, 2, seed=3, start=0, steps=20)
    later = IterationBatches(images, 4, 2, seed=3, start=13, steps=7)
    for i in range(7):
        np.testing.assert_array_equal(later[i], whole[13 + i])
    shards = [IterationBatches(images, 4, 2, seed=3, start=0, steps=20, shard=(k, 4)) for k in range(4)]
    for i in (0, 6, 19):  # 6 and 19 cross an epoch boundary (50 images, 8 per iteration)
        np.testing.assert_array_equal(np.concatenate([s[i] for s in shards]), whole[i])
    seen = np.concatenate([whole[i] for i in range(6)])[:48, 0, 0, 0]
    assert len(np.unique(seen)) == 48  # an epoch visits each image once
    with pytest.raises(ValueError, match="equal shards"):
        IterationBatches(images, 4, 2, seed=3, start=0, steps=1, shard=(0, 3))


@pytest.mark.slow
def test_jax_run_is_deterministic_and_resumes_on_tensorflow_and_back(tmp_path):
    common = ["--iterations", "6", *FAST, "--seed", "4", "--augment", "translation", "--r1", "1", "--ema", "0.9"]
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        result = run_dcgan("train", "--backend", "jax", *common, "--out", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        assert "with JAX" in result.stdout
    assert loss_values(runs[0]) == loss_values(runs[1])
    assert json.loads((runs[0] / "config.json").read_text())["options"]["backend"] == "jax"
    # a generator trained on JAX exports through TensorFlow, whatever $KERAS_BACKEND says
    exported = run_dcgan("export", str(runs[0]), "--out", str(tmp_path / "g.onnx"), env=JAX)
    assert exported.returncode == 0 and "PASSED" in exported.stdout, exported.stderr[-2000:]

    # JAX to 3, TensorFlow to 6, JAX to 8: each resume restores the other backend's checkpoint
    mixed = tmp_path / "mixed"
    assert run_dcgan("train", "--backend", "jax", *common, "--iterations", "3", "--out", str(mixed)).returncode == 0
    result = run_dcgan("train", "--resume", str(mixed), "--backend", "tensorflow", "--iterations", "6", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resuming" in result.stdout and "iteration 4 of 6" in result.stdout
    result = run_dcgan("train", "--resume", str(mixed), "--backend", "jax", "--iterations", "8", "--quiet",
                       env=JAX)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((mixed / "config.json").read_text())
    assert record["options"]["backend"] == "jax"
    assert [r["changed"].get("backend") for r in record["resumed"]] == [["jax", "tensorflow"], ["tensorflow", "jax"]]
    assert [int(r["iteration"]) for r in loss_rows(mixed)] == list(range(1, 9))
    # the first 3 iterations are the JAX run's own; the optimizers counted every update across backends
    assert loss_values(mixed)[:3] == loss_values(runs[0])[:3]
    with np.load(mixed / "checkpoint.npz") as ckpt:
        paths = [str(p) for p in ckpt["paths"]]
        counts = {p: int(ckpt[f"v{i:04d}"]) for i, p in enumerate(paths) if p.endswith("/iteration")}
    assert sorted(counts.values()) == [8, 8], counts


@pytest.mark.slow
def test_jax_trains_where_tensorflow_cannot_be_imported(tmp_path):
    out = tmp_path / "notf"
    script = f"""
import sys
for name in ("tensorflow", "tf2onnx", "tensorboard"):
    sys.modules[name] = None  # not installed: find_spec says None, import raises
from dcgan_export.cli import main
try:
    main(["train", "--backend", "jax", "--iterations", "3", "--batch-size", "8", "--sample-every", "2",
          "--quiet", "--out", {str(out)!r}])
finally:
    print("tensorflow loaded:", sys.modules.get("tensorflow") is not None)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tensorflow loaded: False" in result.stdout
    assert "Not exported: dcgan export needs tensorflow, tf2onnx" in result.stdout
    for name in ("generator.keras", "losses.csv", "checkpoint.npz", "losses.png", "samples/iter_000002.png"):
        assert (out / name).is_file(), name
    bad = subprocess.run([sys.executable, "-c", script.replace('"--quiet"', '"--quiet", "--tensorboard"')],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--tensorboard" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_distribute_over_two_devices_is_the_one_device_run(tmp_path):
    """DataParallel shards one program's global batch over the devices: the same arithmetic, up
    to the order of the cross-device sums."""
    runs = {}
    for name, extra in (("one", []), ("two", ["--distribute"])):
        runs[name] = tmp_path / name
        result = run_dcgan("train", "--backend", "jax", "--iterations", "4", *FAST, "--batch-size", "16",
                           "--r1", "1", *extra, "--out", str(runs[name]), env=TWO_CPUS)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "DataParallel over 2 devices" in result.stdout
    one, two = (np.array(loss_values(runs[k]), dtype=float) for k in ("one", "two"))
    np.testing.assert_allclose(two, one, atol=1e-4)
    with np.load(runs["one"] / "checkpoint.npz") as a, np.load(runs["two"] / "checkpoint.npz") as b:
        for key in a.files:
            if a[key].dtype.kind == "f":
                np.testing.assert_allclose(b[key], a[key], atol=1e-4, err_msg=key)
    odd = run_dcgan("train", "--backend", "jax", "--iterations", "1", *FAST, "--batch-size", "9", "--distribute",
                    "--out", str(tmp_path / "odd"), env=TWO_CPUS)
    assert odd.returncode == 2 and "divisible by the 2 devices" in odd.stderr


def _launch(tmp_path, port: int, process_id: int, *args: str, timeout: int = 30) -> subprocess.Popen:
    env = dict(os.environ, DCGAN_JOIN_TIMEOUT=str(timeout), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "dcgan_export.cli", "train", *args, "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", "2", "--process-id", str(process_id)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: killed as a machine would die


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_run_survive_a_kill_and_resume(tmp_path):
    run = tmp_path / "mp"
    args = ["--backend", "jax", "--batch-size", "8", "--sample-every", "50", "--checkpoint-every", "3", "--quiet",
            "--no-export", "--out", str(run)]
    port = _free_port()
    processes = [_launch(tmp_path, port, i, *args, "--iterations", "6") for i in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    fingerprints = [line.split()[-1] for out, _ in outputs for line in out.splitlines() if "fingerprint" in line]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # both hold the same weights
    assert "DataParallel over 2 devices of 2 processes" in outputs[0][0]
    assert [int(r["iteration"]) for r in loss_rows(run)] == list(range(1, 7))
    single = tmp_path / "single"  # one process, the same global batch: the same run
    assert run_dcgan("train", *args[:-1], str(single), "--iterations", "6", env=JAX).returncode == 0
    np.testing.assert_allclose(np.array(loss_values(run), float), np.array(loss_values(single), float), atol=1e-4)

    # process 1 dies mid-run: process 0 stops with one line; both resume and finish the run
    port = _free_port()
    processes = [_launch(tmp_path, port, i, *args, "--iterations", "200", "--force") for i in (0, 1)]
    deadline = time.monotonic() + 240
    while (not (run / "losses.csv").exists() or len(loss_rows(run)) < 12) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(processes[1].pid, signal.SIGKILL)
    _, err = processes[0].communicate(timeout=120)
    processes[1].wait()
    assert processes[0].returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: process 0 of the run stopped: another process"), err[-2000:]
    port = _free_port()
    processes = [_launch(tmp_path, port, i, "--resume", str(run), "--quiet") for i in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "Resuming" in outputs[0][0] and "Resuming" in outputs[1][0]
    assert [int(r["iteration"]) for r in loss_rows(run)] == list(range(1, 201))
    assert json.loads((run / "state.json").read_text())["finished"] is True


@pytest.mark.slow
def test_a_process_whose_peers_never_join_stops_with_one_line(tmp_path):
    started = time.monotonic()
    alone = _launch(tmp_path, _free_port(), 0, "--backend", "jax", "--iterations", "2", "--quiet", "--no-export",
                    "--out", str(tmp_path / "alone"), timeout=5)
    _, err = alone.communicate(timeout=120)
    assert alone.returncode == 1 and time.monotonic() - started < 60
    assert err.strip().count("\n") == 0 and "process 0 could not join the run at 127.0.0.1:" in err


def test_multi_process_options_are_checked_before_any_work(tmp_path, capsys):
    from helpers import dcgan

    base = ["train", "--out", str(tmp_path / "r"), "--num-processes", "2", "--dry-run"]
    for extra, message in ((["--backend", "tensorflow", "--coordinator", "h:1"], "trains on JAX"),
                           (["--backend", "jax"], "--coordinator must be HOST:PORT"),
                           (["--backend", "jax", "--coordinator", "h:1", "--process-id", "2"], "below --num-processes"),
                           (["--backend", "jax", "--coordinator", "h:1", "--batch-size", "7"], "divisible by"),
                           (["--backend", "jax", "--coordinator", "h:x"], "HOST:PORT")):
        code, err = dcgan(*base, *extra, capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (extra, err)
    code, err = dcgan("train", "--out", str(tmp_path / "r"), "--process-id", "1", "--dry-run", capsys=capsys)
    assert code == 2 and "--num-processes 2 or more" in err
    assert not (tmp_path / "r").exists()


def test_backend_is_chosen_before_keras_loads(monkeypatch):
    import importlib.util

    from dcgan_export.errors import DcganError
    from trainer.hardware import activate, resolve_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert resolve_backend(None) == "tensorflow" and resolve_backend("jax") == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert resolve_backend(None) == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(DcganError, match=r"\$KERAS_BACKEND must be one of tensorflow, jax"):
        resolve_backend(None)
    monkeypatch.delenv("KERAS_BACKEND")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert resolve_backend(None) == "jax"  # the [jax] extra alone
    with pytest.raises(DcganError, match=r"needs the \[train\] extra \(tensorflow not installed\)"):
        resolve_backend("tensorflow")
    import keras

    assert keras.backend.backend() == "tensorflow"  # this test process's
    with pytest.raises(DcganError, match="already runs Keras on tensorflow"):
        activate("jax")

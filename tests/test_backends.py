"""The trainer on JAX besides TensorFlow (trainer/gradients.py, jax_step.py, hardware.py, data.py):
both backends compute the same step, a JAX run needs no TensorFlow, runs are deterministic and
resume across backends, and --distribute over two devices is the one-device run.

Keras picks its backend once per process, so every JAX run here is a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    own), Dropout off; every_option has 2 D steps, label smoothing, R1, EMA, DiffAugment, class
    guidance and lr decay. Tolerance: logged losses within 2e-3, and each network's and optimizer's
    change over the 4 iterations within 5% (relative L2 norm) of TensorFlow's: float32 arithmetic
    in another order (oneDNN vs XLA) drifts that far; a missing term moves them by far more."""
    tf_run, jax_run = step_run(tmp_path, "tensorflow", case), step_run(tmp_path, "jax", case)
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], atol=2e-3)
    assert list(tf_run["paths"]) == list(jax_run["paths"])  # the same state, in the same order
    moved, differ = {}, {}
    for i, path in enumerate(tf_run["paths"]):
        before = tf_run[f"before{i:04d}"]
        np.testing.assert_array_equal(before, jax_run[f"before{i:04d}"])
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

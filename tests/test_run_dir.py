"""The two things every part shares: the run directory's owner (RunDir) and the ONNX contract.
No TensorFlow here: both must stay importable without it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dcgan_export.contract import check_float_array, to_images, to_pixels
from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir, trim_log
from helpers import ROOT


def test_planning_and_training_modules_load_neither_onnxruntime_nor_tensorflow():
    """Checking a run's options, planning a resume and reading a run directory cost no heavy import;
    the trainer's entry module loads TensorFlow only once a run starts, and onnxruntime never."""
    script = ("import sys\n"
              "import dcgan_export.cli, dcgan_export.contract, dcgan_export.run_dir, dcgan_export.paths\n"
              "import dcgan_export.inference_graph, dcgan_export.export\n"
              "import trainer.cli, trainer.config, trainer.resume, trainer.train\n"
              "print(sorted(m for m in ('onnxruntime', 'tensorflow', 'keras') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pixels_and_images_are_inverse_on_every_byte():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    images = to_images(pixels)
    assert images.shape == (1, 16, 16, 1) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
    np.testing.assert_array_equal(to_pixels(images), pixels)
    # out-of-range values clip; nearest byte otherwise
    edge = np.array([-1.5, 1.5, -0.999, 0.999, 0.0], np.float32).reshape(1, 1, 5, 1)
    np.testing.assert_array_equal(to_pixels(edge)[0, 0], [0, 255, 0, 255, 128])


@pytest.mark.parametrize("value, message", [
    (np.zeros((0, 4)), r"must have shape \(n, 4\) with n >= 1, got \(0, 4\)"),
    (np.zeros((2, 5)), r"got \(2, 5\)"),
    (np.zeros(4), r"got \(4,\)"),
    (np.array([["a"] * 4]), "must be a real numeric array"),
    (np.array([[1, 2, np.nan, 4]]), "NaN or infinite"),
    ([[1, 2, 3, object()]], "must be a real numeric array"),
])
def test_check_float_array_says_what_was_expected(value, message):
    with pytest.raises(DcganError, match=message):
        check_float_array(value, "z", (4,))


def test_check_float_array_gives_contiguous_float32():
    out = check_float_array(np.arange(8, dtype=np.int64).reshape(4, 2).T, "z", (4,))
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (2, 4)


def test_a_run_directory_is_told_from_other_directories(tmp_path):
    assert not RunDir.holds(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert not RunDir.holds(tmp_path)  # a config.json, but not ours
    (tmp_path / "config.json").write_text(json.dumps({"options": {"seed": 0}}))
    assert RunDir.holds(tmp_path) and not RunDir.holds(tmp_path / "config.json")
    run = RunDir(tmp_path)
    with pytest.raises(DcganError, match=r"has no generator.onnx yet: train it$"):
        run.model(RunDir.GENERATOR_ONNX, "train it")
    (tmp_path / "generator.onnx").write_bytes(b"x")
    assert run.model(RunDir.GENERATOR_ONNX, "train it") == tmp_path / "generator.onnx"


@pytest.mark.parametrize("text, message", [
    (None, "is not a dcgan run directory"),
    ("{not json", "unreadable"),
    ("[1, 2]", "not a dcgan run record"),
    ('{"options": 3}', "not a dcgan run record"),
])
def test_read_config_refuses_what_is_not_a_run_record(tmp_path, text, message):
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    with pytest.raises(DcganError, match=message):
        RunDir(tmp_path).read_config()
    assert RunDir(tmp_path).read_config_or_none() is None


def test_state_records_what_generator_keras_holds_through_a_finish(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_state() == {} and run.generator_iteration() is None
    run.record_checkpoint(500)
    assert run.generator_iteration() is None  # nothing finished yet
    run.record_generator(1000, None)  # about to replace generator.keras: no claim
    assert run.read_state() == {"iteration": 1000, "finished": False}
    run.mark_finished(1000)
    assert run.read_state() == {"iteration": 1000, "finished": True, "generator_iteration": 1000}
    run.record_checkpoint(1500)  # resumed: the generator is still the one from 1000
    assert run.generator_iteration() == 1000 and run.read_state()["finished"] is False
    (tmp_path / "state.json").write_text('{"iteration": true, "finished": true}')
    assert run.generator_iteration() is None  # a bool is not an iteration


def test_claim_makes_clears_or_refuses(tmp_path):
    fresh = RunDir(tmp_path / "a" / "b")
    fresh.claim(force=False, dry_run=True)
    assert not (tmp_path / "a").exists()  # a dry run makes nothing
    fresh.claim(force=False)
    assert fresh.path.is_dir() and [p.name for p in fresh.path.iterdir()] == [RunDir.LOCK]  # held by this process
    fresh.unlock()

    old = tmp_path / "old"
    (old / "samples").mkdir(parents=True)
    (old / "samples" / "iter_000005.png").write_bytes(b"png")
    (old / "config.json").write_text(json.dumps({"options": {}}))
    (old / "notes.txt").write_text("mine")
    with pytest.raises(DcganError, match="use --resume .* or --force"):
        RunDir(old).claim(force=False)
    RunDir(old).claim(force=True, dry_run=True)
    assert (old / "config.json").exists()
    (old / ".checkpoint.npz.x1y2z3w4.tmp").write_bytes(b"left by a crash")
    RunDir(old).claim(force=True)
    assert sorted(p.name for p in old.iterdir()) == [RunDir.LOCK, "notes.txt"]
    RunDir(old).unlock()

    (tmp_path / "file").write_text("")
    with pytest.raises(DcganError, match="exists and is not a directory"):
        RunDir(tmp_path / "file").claim(force=True)


def test_trim_log_keeps_whole_rows_up_to_the_checkpoint(tmp_path):
    log = tmp_path / "losses.csv"
    log.write_text("iteration,a\n1,0.5\n2,0.4\nnot,a row\n3,0.3,extra\n3,0.3\n4,0.2\n5,0.")
    assert trim_log(log, ["iteration", "a"], 3) == [["1", "0.5"], ["2", "0.4"], ["3", "0.3"]]
    assert log.read_text().splitlines() == ["iteration,a", "1,0.5", "2,0.4", "3,0.3"]
    assert trim_log(tmp_path / "missing.csv", ["iteration"], 3) == []


def test_trim_log_drops_garbage_an_edit_or_a_crash_left(tmp_path):
    log = tmp_path / "losses.csv"
    garbage = ["1,0.5", "2,abc", "2,0.4", "\x00\x01junk", "1,0.9", "x" * 200_000, "٣,0.1", "3,nan", "4,0.2"]
    log.write_text("iteration,a\n" + "\n".join(garbage) + "\n", errors="surrogateescape")
    assert trim_log(log, ["iteration", "a"], 3) == [["1", "0.5"], ["2", "0.4"], ["3", "nan"]]
    assert log.read_text().splitlines() == ["iteration,a", "1,0.5", "2,0.4", "3,nan"]


def test_a_failed_write_keeps_the_old_file_leaves_no_temp_and_names_its_file(tmp_path):
    import errno

    from dcgan_export.atomic import atomic_open

    target = tmp_path / "state.json"
    target.write_text("previous")
    with pytest.raises(OSError) as failure:
        with atomic_open(target, "w") as f:
            f.write("half of the new")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk raises mid-write
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(target)
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_only_the_call_that_took_the_lock_releases_it(tmp_path):
    run = RunDir(tmp_path)
    assert run.lock() is True and run.lock() is False  # the second call: already held here
    script = f"from dcgan_export.run_dir import RunDir\ntry:\n    RunDir({str(tmp_path)!r}).lock()\nexcept Exception as e:\n    print(e)"
    other = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert "is in use by another dcgan train" in other.stdout
    run.unlock()
    other = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert other.stdout == ""

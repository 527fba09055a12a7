"""A run directory damaged by hand or by a crash: every resume either carries on from the last
good state or says in one line which file is wrong and how; nothing a user has is lost."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir
from helpers import ROOT, loss_rows, run_dcgan
from trainer import checkpoint
from trainer.resume import plan_resume

TINY = ["--batch-size", "8", "--checkpoint-every", "2", "--sample-every", "2", "--quiet", "--no-export"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run trained to iteration 4: checkpoint.npz at 4, checkpoint.prev.npz at 2."""
    run = tmp_path_factory.mktemp("base") / "run"
    result = run_dcgan("train", "--iterations", "4", *TINY, "--out", str(run))
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    (copy / RunDir.LOCK).unlink(missing_ok=True)
    return copy


def dry_run(run, *args) -> dict:
    result = run_dcgan("train", "--resume", str(run), "--iterations", "6", *args, "--dry-run")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(run, *args) -> str:
    result = run_dcgan("train", "--resume", str(run), *args)
    # TensorFlow's C++ start-up may log before it (absl ignores TF_CPP_MIN_LOG_LEVEL): the error is
    # the one line of ours, the last, and there is no traceback
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def files(run) -> dict:
    """Every file of the run but its lock file, with its bytes."""
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != RunDir.LOCK}


def rewrite_checkpoint(path, edit) -> None:
    with np.load(path) as ckpt:
        arrays = {name: ckpt[name] for name in ckpt.files}
    edit(arrays)
    np.savez(path, **arrays)


def flip_a_byte_inside(path, member="v0000.npy") -> None:
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo(member)
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 500] ^= 0xFF
    path.write_bytes(raw)


DAMAGE = {
    "flipped byte": (lambda p: flip_a_byte_inside(p), "Bad CRC-32 for file 'v0000.npy'"),
    "member missing": (lambda p: rewrite_checkpoint(p, lambda a: a.pop("v0003")), "member v0003 (generator/bn1/beta) is missing"),
    "iteration missing": (lambda p: rewrite_checkpoint(p, lambda a: a.pop("iteration")), "'iteration' member is missing"),
    "negative iteration": (lambda p: rewrite_checkpoint(p, lambda a: a.update(iteration=np.int64(-5))), "says iteration -5, outside the run's 0..4"),
    "iteration past the run": (lambda p: rewrite_checkpoint(p, lambda a: a.update(iteration=np.int64(10**9))), "says iteration 1000000000, outside"),
    "object member": (lambda p: rewrite_checkpoint(p, lambda a: a.update(v0001=np.array(["x"]))), "v0001 (generator/dense/bias) has dtype <U1"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:100_000]), "is damaged: not an .npz (zip) archive"),
    "not a zip": (lambda p: p.write_bytes(b"garbage" * 100), "is damaged: not an .npz (zip) archive"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(run, damage):
    edit, how = DAMAGE[damage]
    edit(run / RunDir.CHECKPOINT)
    plan = dry_run(run)
    assert plan["start_iteration"] == 2
    assert len(plan["notes"]) == 1 and how in plan["notes"][0] and "previous checkpoint, iteration 2" in plan["notes"][0]
    # both damaged: one line naming both, nothing changed
    shutil.copy(run / RunDir.CHECKPOINT, run / RunDir.PREVIOUS_CHECKPOINT)
    before = files(run)
    message = refused(run, "--iterations", "6")
    assert f"{run / RunDir.CHECKPOINT} is damaged" in message and how in message
    assert f"and so is the previous one: {run / RunDir.PREVIOUS_CHECKPOINT} is damaged" in message
    assert files(run) == before


def test_falling_back_sets_the_damaged_file_aside_and_trains_on_from_the_previous(run):
    flip_a_byte_inside(run / RunDir.CHECKPOINT)
    damaged = (run / RunDir.CHECKPOINT).read_bytes()
    result = run_dcgan("train", "--resume", str(run), "--iterations", "6", "--quiet", "--no-export")
    assert result.returncode == 0, result.stderr
    assert "resuming from the previous checkpoint, iteration 2" in result.stdout
    assert "Resuming" in result.stdout and "at iteration 3 of 6" in result.stdout
    assert (run / RunDir.DAMAGED_CHECKPOINT).read_bytes() == damaged
    assert checkpoint.check(run / RunDir.CHECKPOINT) == 6 and checkpoint.check(run / RunDir.PREVIOUS_CHECKPOINT) == 4
    assert [int(r["iteration"]) for r in loss_rows(run)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(v0003=a["v0003"].astype(np.float64)), "generator/bn1/beta has dtype float64, expected float32"),
    (lambda a: a.update(v0003=a["v0003"][:3]), r"generator/bn1/beta has shape (3,), expected (6272,)"),
], ids=["dtype", "shape"])
def test_a_member_of_the_wrong_dtype_or_shape_is_one_line(run, edit, message):
    rewrite_checkpoint(run / RunDir.CHECKPOINT, edit)
    assert message in refused(run, "--iterations", "6", "--quiet", "--no-export")


@pytest.mark.parametrize("options, message", [
    ({"batch_size": "8"}, "config.json: batch_size must be int, got '8'"),
    ({"lr": None}, "config.json: lr must be float, got None"),
    ({"batch_size": -3}, "config.json: --batch-size must be between 1 and"),
    ({"seed": 2**40}, "config.json: --seed must be between 0 and 4,294,967,295"),
    ({"augment": 7}, "config.json: augment must be str, got 7"),
    ({"data": "no-such-data"}, "(data 'no-such-data', from config.json): unknown data set"),
])
def test_a_config_json_with_wrong_values_is_named_in_one_line(run, options, message):
    record = json.loads((run / RunDir.CONFIG).read_text())
    record["options"].update(options)
    (run / RunDir.CONFIG).write_text(json.dumps(record))
    before = files(run)
    assert message in refused(run, "--iterations", "6", "--dry-run")
    assert message in refused(run, "--iterations", "6")
    assert files(run) == before


def test_a_run_killed_between_its_last_checkpoint_and_its_final_files_is_finished_by_a_resume(run):
    (run / RunDir.GENERATOR).unlink()
    (run / RunDir.STATE).write_text(json.dumps({"iteration": 4, "finished": False}))
    rows = loss_rows(run)
    result = run_dcgan("train", "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert "stopped before writing its final files: writing them" in result.stdout
    assert json.loads((run / RunDir.STATE).read_text()) == {"iteration": 4, "finished": True, "generator_iteration": 4}
    assert (run / RunDir.GENERATOR).is_file() and loss_rows(run) == rows
    # finished now: a plain resume has nothing left to do
    assert "already at iteration 4" in refused(run)


def test_a_run_killed_before_its_first_checkpoint_starts_over_with_its_options(run):
    for name in (RunDir.CHECKPOINT, RunDir.PREVIOUS_CHECKPOINT, RunDir.STATE, RunDir.LOSSES):
        (run / name).unlink()
    plan = dry_run(run)
    assert plan["start_iteration"] == 0 and "stopped before its first checkpoint" in plan["notes"][0]
    assert plan["options"]["batch_size"] == 8
    # a run whose state.json says it got further has lost its checkpoint: not silently retrained
    (run / RunDir.STATE).write_text(json.dumps({"iteration": 4, "finished": True}))
    assert "checkpoint.npz is missing (state.json says the run reached iteration 4)" in refused(run, "--iterations", "6")


def test_a_resume_removes_the_temporary_files_crashed_writes_left(run):
    stale = [run / ".checkpoint.npz.k2j3h4x_.tmp", run / ".generator.keras.a1b2c3d4.keras",
             run / "samples" / ".iter_000002.png.zz9_8y7x.tmp"]
    kept = [run / ".hidden-user-file", run / "notes.txt", run / "samples" / ".other", run / ".config.json.swp",
            run / ".notes.txt.abcdefgh.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    plan = plan_resume(run, {"iterations": 6})
    try:
        assert "removed 3 temporary files left by an interrupted write" in plan.notes
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    finally:
        plan.run.unlock()


def test_one_run_directory_trains_in_one_process_at_a_time(run):
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from dcgan_export.run_dir import RunDir
RunDir({str(run)!r}).lock()
print("locked", flush=True)
time.sleep(60)
"""], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = refused(run, "--iterations", "6")
        assert f"is in use by another dcgan train (pid {holder.pid})" in message
        result = run_dcgan("train", "--out", str(run), "--force", "--iterations", "2")
        assert result.returncode == 2 and "is in use by another dcgan train" in result.stderr
        assert (run / RunDir.CHECKPOINT).exists() and (run / RunDir.GENERATOR).exists()  # --force cleared nothing
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(DcganError, match="already at iteration 4"):
        plan_resume(run)  # the lock died with its process


def _file_size_limit(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_good_one(run):
    """RLIMIT_FSIZE makes every write past 5 MB fail (EFBIG), as a full disk does (ENOSPC): the
    12 MB checkpoint cannot be written."""
    before = (run / RunDir.CHECKPOINT).read_bytes()
    result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", "train", "--resume", str(run),
                             "--iterations", "6", "--quiet", "--no-export"], cwd=ROOT, capture_output=True,
                            text=True, preexec_fn=_file_size_limit(5_000_000),
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: File too large: {run / RunDir.CHECKPOINT}"
    assert (run / RunDir.CHECKPOINT).read_bytes() == before
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint")]
    result = run_dcgan("train", "--resume", str(run), "--quiet", "--no-export")  # space again: it carries on
    assert result.returncode == 0 and checkpoint.check(run / RunDir.CHECKPOINT) == 6, result.stderr

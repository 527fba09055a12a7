"""``dcgan train`` as a command: grouped help, --config files and recipes with resume stages,
--dry-run, the export that ends a run, and commands that take a run directory as --model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from dcgan_export.paths import shipped_file
from helpers import FAST, ROOT, dcgan, dcgan_in_process, loss_values, press_ctrl_c_at
from trainer.config import FIELDS, SECTIONS


def test_help_groups_the_options_under_headings_with_examples(capsys):
    code, out, _ = dcgan_in_process("train", "--help", capsys=capsys)
    assert code == 0
    headings = [line[:-1] for line in out.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert headings[headings.index("Run"):] == ["Run", *(s.capitalize() for s in SECTIONS), "Examples"]
    for name in FIELDS:
        assert f"--{name.replace('_', '-')}" in out, name
    # one sentence each: the theory is in docs/
    for name, field in FIELDS.items():
        text = field.metadata["help"]
        assert text.endswith(".") and text.count(". ") == 0 and len(text) <= 110, name


def write_recipe(path, text: str):
    path.write_text(text)
    return str(path)


def test_dry_run_resolves_file_and_command_line_and_writes_nothing(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", 'iterations = 40\nbatch_size = 16\nlr = 5e-4\nema = 0.9\nquiet = true\n'
                                               '[[resume]]\niterations = 60\nema = 0.5\n')
    out = tmp_path / "run"
    code, text, _ = dcgan_in_process("train", "--config", recipe, "--batch-size", "8", "--out", str(out), "--dry-run",
                                     capsys=capsys)
    assert code == 0 and not out.exists()
    plan = json.loads(text)
    assert plan["options"]["iterations"] == 40 and plan["options"]["lr"] == 5e-4
    assert plan["options"]["batch_size"] == 8  # the command line wins over the file
    assert plan["given_on_command_line"] == ["batch_size", "out"]
    assert plan["resume_stages_ahead"] == [{"iterations": 60, "ema": 0.5}]
    # the same file as JSON says the same
    as_json = write_recipe(tmp_path / "r.json", json.dumps({"iterations": 40, "batch_size": 16, "lr": 5e-4, "ema": 0.9,
                                                            "quiet": True, "resume": [{"iterations": 60, "ema": 0.5}]}))
    code, text2, _ = dcgan_in_process("train", "--config", as_json, "--batch-size", "8", "--out", str(out),
                                      "--dry-run", capsys=capsys)
    assert code == 0 and json.loads(text2) == plan


@pytest.mark.parametrize("text, message", [
    ("iterations = 10\nbogus = 1\n", "unknown option 'bogus'"),
    ('batch_size = "64"\n', "batch_size must be int, got '64'"),
    ("lr = true\n", "lr must be float"),
    ("iterations = [\n", "not valid TOML"),
    ("iterations = 10\n[[resume]]\niterations = 20\nbatch_size = 8\n", "resume 1 .* cannot change --batch-size"),
    ("iterations = 10\n[[resume]]\niterations = 10\n", "resume 1 must set iterations above 10"),
    ("iterations = 10\nresume = 3\n", "'resume' must be a list of tables"),
    ("iterations = 10\n[[resume]]\niterations = 20\nema = 0.9\n", "resume 1 cannot switch --ema on"),
])
def test_a_bad_config_file_is_one_line_and_writes_nothing(tmp_path, capsys, text, message):
    recipe = write_recipe(tmp_path / "bad.toml", text)
    code, err = dcgan("train", "--config", recipe, "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "run").exists()


def test_contradictory_run_options_are_refused(tmp_path, capsys):
    for args, message in ((["--resume", str(tmp_path), "--config", "recipe"], "give one of them"),
                          (["--resume", str(tmp_path), "--force"], "give one of them"),
                          (["--config", str(tmp_path / "missing.toml")], "no such file (shipped recipes:")):
        code, err = dcgan("train", *args, capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_recipe_runs_its_stages_and_a_plain_resume_carries_it_on(tmp_path, capsys, monkeypatch):
    """A recipe's resumes run one after the other in the same command; stopped half-way, a plain
    --resume finishes them, with the losses of the uninterrupted run."""
    recipe = write_recipe(tmp_path / "staged.toml", "iterations = 6\nema = 0.9\nseed = 2\ncheckpoint_every = 3\n"
                                                    "[[resume]]\niterations = 9\nema = 0.5\n"
                                                    "[[resume]]\niterations = 12\nlr_decay_start = 9\n")
    straight, stopped = tmp_path / "a", tmp_path / "b"
    assert dcgan("train", "--config", recipe, *FAST, "--out", str(straight), capsys=capsys)[0] == 0
    record = json.loads((straight / "config.json").read_text())
    assert record["options"]["iterations"] == 12 and record["options"]["ema"] == 0.5
    assert record["options"]["lr_decay_start"] == 9
    assert record["resumed"] == [{"iteration": 6, "changed": {"iterations": [6, 9], "ema": [0.9, 0.5]}},
                                 {"iteration": 9, "changed": {"iterations": [9, 12], "lr_decay_start": [None, 9]}}]
    assert json.loads((straight / "state.json").read_text())["finished"] is True

    undo = press_ctrl_c_at(monkeypatch, 8)  # in the first resume stage; its last checkpoint is at 6
    code, _ = dcgan("train", "--config", recipe, *FAST, "--out", str(stopped), capsys=capsys)
    assert code == 130
    undo()
    code, err = dcgan("train", "--resume", str(stopped), "--dry-run", capsys=capsys)
    assert code == 0
    assert dcgan("train", "--resume", str(stopped), "--quiet", capsys=capsys)[0] == 0
    assert loss_values(stopped) == loss_values(straight)
    assert json.loads((stopped / "config.json").read_text())["resumed"] == record["resumed"]


def test_the_shipped_recipe_file_is_the_shipped_models_recipe(tmp_path, capsys):
    """models/recipe.toml is what trained models/generator.onnx: its stages end where the model's
    metadata says training ended."""
    code, text, _ = dcgan_in_process("train", "--config", "recipe", "--out", str(tmp_path / "r"), "--dry-run",
                                     capsys=capsys)
    assert code == 0
    plan = json.loads(text)
    meta = {p.key: p.value for p in onnx.load(str(shipped_file("generator.onnx"))).metadata_props}
    assert plan["resume_stages_ahead"][-1]["iterations"] == int(meta["training_iterations"])
    assert plan["options"]["data"] == "mnist-8k" and plan["options"]["r1"] == 1.0
    assert any(stage.get("class_guidance") for stage in plan["resume_stages_ahead"])


@pytest.mark.slow
def test_train_ends_with_a_parity_checked_onnx_and_never_loads_onnxruntime(tmp_path):
    """The run exports RUN/generator.onnx in a separate process; the training process itself
    loads no onnxruntime. sample, eval and serve then take the run directory as the model."""
    out = tmp_path / "run"
    script = ("import sys\n"
              "from dcgan_export.cli import main\n"
              "try:\n"
              f"    main(['train', '--iterations', '4', '--batch-size', '8', '--quiet', '--out', {str(out)!r}])\n"
              "except SystemExit as exc:\n"
              "    assert not exc.code, exc.code\n"
              "print('onnxruntime loaded:', 'onnxruntime' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "onnxruntime loaded: False" in result.stdout
    assert "PASSED, written" in result.stdout
    meta = {p.key: p.value for p in onnx.load(str(out / "generator.onnx")).metadata_props}
    assert meta["training_iterations"] == "4" and meta["dataset"] == "mnist-8k/train"

    from dcgan_export import Sampler

    np.testing.assert_array_equal(Sampler(out).sample(3, seed=1), Sampler(out / "generator.onnx").sample(3, seed=1))
    grid = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", "sample", "--model", str(out), "--n", "4",
                             "--seed", "0", "--out", str(grid)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and grid.stat().st_size > 0, result.stderr


def test_a_run_without_its_onnx_says_how_to_make_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert dcgan("train", "--iterations", "2", *FAST, "--out", str(out), capsys=capsys)[0] == 0
    assert not (out / "generator.onnx").exists()
    for command in (["sample", "--model", str(out), "--out", str(tmp_path / "g.png")], ["eval", str(out)]):
        code, err = dcgan(*command, capsys=capsys)
        assert code == 2 and "has no generator.onnx yet" in err and "dcgan export" in err and err.count("\n") == 1

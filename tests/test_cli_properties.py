"""Every command's options, fed random values of their click type (valid, boundary and hostile
ones): the exit code is 0 or 2 (1 only for a refused export), no output holds a traceback, a
failure is one ``Error: `` line on stderr, and no file outside the example's fresh temp directory
changes.

The options come from the click commands themselves (``cli.commands[name].params``), so a new
option is covered as soon as it exists. Each example runs in a fresh temp directory that is also
the working directory, so relative defaults (``runs/<timestamp>``) land there; every path drawn
for an option that writes stays inside it, and only read-only inputs (the shipped models,
/dev/null) live elsewhere.

Costs: the fast properties run in this process and stop each command where its slow work would
begin (``--dry-run`` for train; for export, classifier and serve, the call that would load the
Keras model, train, or start uvicorn raises ``ReachedWork``), so they check every validation
that runs on user input. The ``slow`` ones run a few examples for real: tiny training runs, a
real export through the parity gate, and a real server in a subprocess.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pytest
from helpers import ROOT, make_tiny_generator
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from dcgan_export.cli import cli, main

COMMANDS = ("train", "export", "sample", "eval", "serve", "classifier")
# The codes each command may exit with: 0 done, 2 refused input; export's parity gate exits 1.
ALLOWED_CODES = {name: {0, 2} for name in COMMANDS} | {"export": {0, 1, 2}}
# Options that write where they point: only ever given paths inside the example's temp directory.
WRITES = {"out", "out_dir", "resume", "triton_repo"}


def settings_for(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


# --- paths: made on demand inside each example's temp directory -----------------------------------


_SHARED: dict[str, Path] = {}
_SHARED_DIR = tempfile.TemporaryDirectory(prefix="dcgan-cli-props-")


def _tiny(latent_dim: int = 100) -> Path:
    key = f"tiny{latent_dim}"
    if key not in _SHARED:
        _SHARED[key] = make_tiny_generator(Path(_SHARED_DIR.name) / f"{key}.onnx", latent_dim=latent_dim)
    return _SHARED[key]


def _trained_run() -> Path:
    """A real two-iteration run (checkpoint, generator.keras, config.json), trained once."""
    if "run" not in _SHARED:
        run = Path(_SHARED_DIR.name) / "run"
        result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", "train", "--out", str(run),
                                 "--iterations", "2", "--batch-size", "8", "--no-export", "--quiet",
                                 "--checkpoint-every", "1", "--sample-every", "1"],
                                cwd=_SHARED_DIR.name, capture_output=True, text=True, timeout=300, check=False,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert result.returncode == 0, result.stderr
        _SHARED["run"] = run
    return _SHARED["run"]


def _write(name: str, data: bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / name).write_bytes(data)
        return name
    return make


def _copy(source: Callable[[], Path], name: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        src = source()
        if src.is_dir():
            shutil.copytree(src, tmp / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, tmp / name)
        return name
    return make


def _npy(name: str, array) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        np.save(tmp / name, array)
        return name
    return make


def _mkdir(name: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        return name
    return make


def _tiny_run_dir(tmp: Path) -> str:
    (tmp / "tinyrun").mkdir(exist_ok=True)
    shutil.copy2(_tiny(), tmp / "tinyrun" / "generator.onnx")
    return "tinyrun"


def _npz(tmp: Path) -> str:
    rng = np.random.default_rng(0)
    np.savez(tmp / "data.npz", x_train=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 64, dtype=np.uint8))
    return "data.npz"


def _pngs(name: str, size: int, junk: bool = False) -> Callable[[Path], str]:
    """A folder of a few grey PNGs (``dcgan train --data FOLDER``), one of them junk if ``junk``."""
    def make(tmp: Path) -> str:
        from PIL import Image

        (tmp / name).mkdir(exist_ok=True)
        for i in range(4):
            Image.fromarray(np.full((size, size), 60 * i, np.uint8)).save(tmp / name / f"{i}.png")
        if junk:
            (tmp / name / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        return name
    return make


@dataclasses.dataclass(frozen=True)
class Place:
    """A path drawn for an option: ``make(tmp)`` creates what it names (if anything) and returns it."""

    name: str
    make: Callable[[Path], str] = dataclasses.field(compare=False)

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _plain(text: str) -> Place:
    return Place(text, lambda tmp: text)


# Paths inside the temp directory, for any option (writers included): usable ones...
INSIDE_USABLE = [
    Place("tiny.onnx", _copy(_tiny, "tiny.onnx")),
    Place("tinyrun/ (generator.onnx)", _tiny_run_dir),
    Place("z.npy (5 x 100 float32)", _npy("z.npy", np.random.default_rng(1).standard_normal((5, 100)).astype(np.float32))),
    Place("data.npz (64 images)", _npz),
    Place("pngs64/ (4 PNGs)", _pngs("pngs64", 64)),
    Place("c.toml", _write("c.toml", b"iterations = 3\nbatch_size = 8\n")),
    _plain("out.png"), _plain("out.npy"), _plain("out.onnx"), _plain("new/"), _plain("runs/new"),
]
# ... and hostile ones.
INSIDE_HOSTILE = [
    _plain("missing.onnx"),
    Place("abs-missing.png", lambda tmp: str(tmp / "missing.png")),
    _plain("no/such/dir/out.png"),
    _plain("."),
    Place("adir", _mkdir("adir")),
    Place("adir/", lambda tmp: _mkdir("adir")(tmp) + "/"),
    Place("junk.onnx", _write("junk.onnx", b"\x00\xffnot an onnx model\n" * 64)),
    Place("empty.npy", _write("empty.npy", b"")),
    Place("tiny-latent64.onnx", _copy(lambda: _tiny(64), "tiny64.onnx")),
    Place("pngs28/ (4 small PNGs)", _pngs("pngs28", 28)),
    Place("badpngs/ (one PNG is junk)", _pngs("badpngs", 64, junk=True)),
    Place("zbad.npy (nan, 3 x 7)", _npy("zbad.npy", np.full((3, 7), np.nan))),
    Place("bad.toml", _write("bad.toml", b"= = =\n[[resume]]\n")),
    Place("c.json", _write("c.json", b'{"latent_dim": 0, "resume": [{"iterations": 1}]}')),
    _plain("out.keras"), _plain("out.PNG"), _plain("out.jpeg"), _plain("OUT"),
    _plain("\u00fc \u00f1.png"),
    _plain("\udcff.png"),  # the byte 0xff in argv (not UTF-8) reaches Python as this surrogate
    _plain("x" * 300 + ".png"),  # longer than a file name may be
    _plain("-"),
]
# A real trained run, copied into the temp directory (29 MB, made once per session on first use).
RUN = Place("run/ (trained 2 iterations)", _copy(_trained_run, "run"))
# Read-only inputs outside the temp directory: never for an option that writes.
OUTSIDE_USABLE = [_plain(str(ROOT / "models" / name))
                  for name in ("generator.onnx", "generator.keras", "mnist_classifier.onnx")]
OUTSIDE_HOSTILE = [_plain(str(ROOT / "models")), _plain("/dev/null")]


def places(param: click.Parameter, with_run: bool, usable: bool) -> st.SearchStrategy:
    writes = param.name in WRITES
    if usable:
        pool = INSIDE_USABLE + ([RUN] if with_run else []) + ([] if writes else OUTSIDE_USABLE)
    else:
        pool = INSIDE_HOSTILE + ([] if writes else OUTSIDE_HOSTILE)
    return st.sampled_from(pool)


# --- values of each click type ----------------------------------------------------------------------


HUGE_INTS = [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**31),
             -(2**63) - 1, 10**30]
NOT_INTS = ["", " ", "1.5", "1e3", "abc", "0x10", "+5", "-0", "1_000", "\u0663", "nan", "inf"]
SPECIAL_FLOATS = ["nan", "-nan", "inf", "-inf", "1e308", "1e309", "-1e308", "-0.0", "5e-324", "1e-300",
                  "-1", "0.999999", "1_0", "NaN", "Infinity", "abc", "", "1e"]
USABLE_WORDS = ["mnist-8k", "none", "translation", "cutout", "translation,cutout", "quickstart", "recipe",
                "localhost", "127.0.0.1", "::1", "0.0.0.0"]
HOSTILE_WORDS = ["", " ", "mnist", "fashion-mnist", "translation,,cutout", "1.2.3.4", "a" * 64, "a..b", "~",
                 "~/nothing-here", "\u00e9\u00e8", "\u2603" * 40, "x" * 5000, "-", "--", "\t\n"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


# Options whose large valid values cost minutes rather than being wrong: onnxruntime takes ~15-60 s
# to start 1,024 threads on two cores. Examples stay at or below these (values above the option's
# own maximum are still drawn: they are refused at once).
COSTLY = {"threads": 16}


def _ints(low: int | None, high: int | None, usable: bool, cap: int | None = None) -> st.SearchStrategy:
    lo = 0 if low is None else low
    hi = min(64 if high is None else high, lo + 64)
    inside = sorted({b for b in (low, high, lo, lo + 1) if b is not None and lo <= b <= (high or b)})
    outside = sorted({b + d for b in (low, high) if b is not None for d in (-1, 1)} - set(inside))
    pool = [str(v) for v in inside] if usable else [str(v) for v in outside + HUGE_INTS + [-1, 0]] + NOT_INTS

    def affordable(text: str) -> bool:
        try:
            value = int(text)  # what click's INT does
        except ValueError:
            return True
        return cap is None or not cap < value <= (high if high is not None else value)

    pool = [v for v in pool if affordable(v)]
    if usable:
        return st.one_of(st.integers(lo, min(hi, cap or hi)).map(str), st.sampled_from(pool))
    return st.sampled_from(pool)


def _floats(usable: bool) -> st.SearchStrategy:
    if usable:
        return st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0.0, 1e-4, 0.5, 1.0, 2.0])).map(repr)
    return st.one_of(st.floats().map(repr), st.sampled_from(SPECIAL_FLOATS))


def value_strategy(param: click.Parameter, with_run: bool, usable: bool) -> st.SearchStrategy:
    """Values for one option or argument (argv strings or Places): ``usable`` ones of its type (which
    the command may still refuse for what they mean; its default is one), or hostile ones."""
    typed = _typed_values(param, with_run, usable)
    if usable and param.default is not None and not callable(param.default):
        return st.one_of(st.just(str(param.default)), typed)
    return typed


def _typed_values(param: click.Parameter, with_run: bool, usable: bool) -> st.SearchStrategy:
    kind = param.type
    if isinstance(kind, click.Choice):
        if usable:
            return st.sampled_from(list(kind.choices))
        return st.sampled_from([c.upper() for c in kind.choices] + ["", "x", "png ", "PNG"])
    if isinstance(kind, click.IntRange) or kind is click.INT:
        return _ints(getattr(kind, "min", None), getattr(kind, "max", None), usable, COSTLY.get(param.name))
    if isinstance(kind, click.FloatRange) or kind is click.FLOAT:
        return _floats(usable)
    if isinstance(kind, click.Path):
        return places(param, with_run, usable)
    if kind is click.BOOL:
        return st.sampled_from(["true", "false", "1", "0"] if usable else ["yes", "no", "maybe", ""])
    if usable:
        return st.one_of(st.sampled_from(USABLE_WORDS), places(param, with_run, True))
    return st.one_of(st.sampled_from(HOSTILE_WORDS), TEXT, places(param, with_run, False))


def command_line(name: str, *, exclude=(), always=(), with_run=True,
                 moods=("usable", "one hostile", "any"), sparse: bool = False) -> st.SearchStrategy:
    """argv for ``dcgan NAME`` (Places still to be made), its parameters drawn from click's own.

    Each example gives every option with probability 3/8 (an argument 3/4, and those in ``always``
    always), and is drawn in one of three moods: every value usable, exactly one hostile, or each
    value either; so most examples get past the first check."""
    params = [p for p in cli.commands[name].params if p.name not in exclude]
    usable = {p.name: value_strategy(p, with_run, True) for p in params if not getattr(p, "is_flag", False)}
    hostile = {p.name: value_strategy(p, with_run, False) for p in params if not getattr(p, "is_flag", False)}

    @st.composite
    def build(draw):
        mood = draw(st.sampled_from(moods))
        given = []
        for p in params:
            odds = draw(st.integers(0, 3))
            if sparse and not isinstance(p, click.Argument) and p.name not in always:
                odds = 1 + draw(st.integers(0, 3)) if odds == 0 else odds  # 1 in 8 rather than 3 in 8
            if p.name in always or (odds > 0 if isinstance(p, click.Argument) else odds == 0 or
                                    (odds == 1 and draw(st.booleans()))):
                given.append(p)
        valued = [p for p in given if not getattr(p, "is_flag", False)]
        bad = draw(st.sampled_from(valued)) if mood == "one hostile" and valued else None
        args, opts = [], []
        for p in given:
            if getattr(p, "is_flag", False):
                opts.append([draw(st.sampled_from([p.opts[0], *p.secondary_opts]))])
                continue
            nasty = p is bad or (mood == "any" and draw(st.booleans()))
            value = draw(hostile[p.name] if nasty else usable[p.name])
            (args.append([value]) if isinstance(p, click.Argument) else opts.append([p.opts[0], value]))
        order = draw(st.permutations(opts)) if len(opts) > 1 else opts
        return [name] + [tok for frag in [*args, *order] for tok in frag]

    return build()


# --- running an example and checking what it did -----------------------------------------------


class ReachedWork(BaseException):
    """Raised where a command would start its slow work: the input was accepted."""


def _stop(*_args, **_kwargs):
    raise ReachedWork


SKIP_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules"}
# The repository's git-ignored scratch (training runs, made data sets): not in a clean clone.
SCRATCH_DIRS = {"runs", "data", "build", "dist"}


def snapshot() -> dict[str, tuple]:
    """(size, mtime) of every file of the repository, of ~/.keras (Keras's data set cache) and of
    dcgan's image-folder cache, and which directories exist: what an example must leave as it was."""
    seen: dict[str, tuple] = {}
    home = Path.home()
    caches = [os.environ.get("DCGAN_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME")]
    roots = [ROOT, home / ".keras", home / ".cache" / "dcgan", *(Path(c) for c in caches if c)]
    for root in roots:
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (top == str(ROOT) and d in SCRATCH_DIRS)]
            seen[top] = ("dir",)
            for f in files:
                path = os.path.join(top, f)
                try:
                    st_ = os.lstat(path)
                except FileNotFoundError:
                    continue
                seen[path] = (st_.st_size, st_.st_mtime_ns)
    with os.scandir(home) as entries:
        for entry in entries:
            seen.setdefault(entry.path, ("entry",))
    return seen


def _diff(before: dict, after: dict) -> list[str]:
    return sorted({f"{'+' if k not in before else '-' if k not in after else '~'} {k}"
                   for k in before.keys() | after.keys() if before.get(k) != after.get(k)})


@dataclasses.dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    changed: list[str]

    def shown(self) -> str:
        return (f"$ dcgan {shlex.join(self.argv)}\n  (in a fresh temp directory)\nexit {self.code}\n"
                f"--- stdout (end) ---\n{self.out[-1500:]}\n--- stderr (end) ---\n{self.err[-3000:]}\n"
                f"--- changed outside the temp directory ---\n" + "\n".join(self.changed))


def materialize(tokens: list, tmp: Path) -> list[str]:
    return [tok.make(tmp) if isinstance(tok, Place) else tok for tok in tokens]


def _terminal_streams():
    """stdout and stderr as Python opens them on a Linux terminal in a UTF-8 locale (en_US.UTF-8):
    stdout strict, stderr backslashreplace (capsys would make both strict)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", newline="", write_through=True)
    return out, err


def run_in_process(tokens: list) -> Outcome:
    """``dcgan`` in this process, in a fresh temp directory that is also the working directory."""
    with tempfile.TemporaryDirectory(prefix="dcgan-example-") as tmp:
        argv = materialize(tokens, Path(tmp))
        note(f"dcgan {shlex.join(argv)}")
        before = snapshot()
        cwd = os.getcwd()
        out, err = _terminal_streams()
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
        except ReachedWork:
            code = 0
        finally:
            os.chdir(cwd)
        after = snapshot()
    text = [stream.buffer.getvalue().decode("utf-8", "backslashreplace") for stream in (out, err)]
    return Outcome(argv, code, *text, _diff(before, after))


def check(outcome: Outcome) -> None:
    name = outcome.argv[0]
    text = outcome.out + outcome.err
    assert "Traceback" not in text, outcome.shown()
    assert outcome.code in ALLOWED_CODES[name], outcome.shown()
    if outcome.code != 0:
        lines = outcome.err.rstrip("\n").split("\n")  # as a terminal shows it
        assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.shown()
        assert "internal error" not in lines[0], outcome.shown()
        if outcome.code == 1:  # only the export's parity gate
            assert "parity gate failed" in lines[0], outcome.shown()
    assert not outcome.changed, outcome.shown()


@pytest.fixture
def quiet_env(monkeypatch):
    """No debugging switch that turns errors into tracebacks, no server limits from the caller."""
    for key in list(os.environ):
        if key == "DCGAN_DEBUG" or key.startswith("DCGAN_SERVE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


# --- the fast properties: every validation, no slow work ------------------------------------------

# Examples that once failed (or that random draws reach too rarely), run first every time.
LONG = "x" * 300  # longer than a file name may be: ENAMETOOLONG


@settings_for(150)
@given(tokens=command_line("sample"))
@example(tokens=["sample", "--out-dir", LONG])
@example(tokens=["sample", "--out", LONG + ".png"])
@example(tokens=["sample", "--model", LONG + ".onnx", "--out", "a.png"])
@example(tokens=["sample", "--out", "\udcff.png", "--n", "1"])
def test_sample_options(tokens, quiet_env):
    check(run_in_process(tokens))


@pytest.fixture
def reference_digits_once(monkeypatch):
    """Classify the held-out and train digits (8,000 images, ~4 s) once per classifier file, not
    in every example: the classifier is deterministic, so every example sees the same arrays."""
    from dcgan_export.evaluate import Evaluator

    classify, cache = Evaluator.classify, {}

    def once(self, images):
        images = np.asarray(images)
        if len(images) < 1000:  # generated samples: cheap, and different every time
            return classify(self, images)
        stat = Path(self.classifier_path).stat()
        key = (str(Path(self.classifier_path).resolve()), stat.st_size, stat.st_mtime_ns, images.shape,
               hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest())
        if key not in cache:
            cache[key] = classify(self, images)
        return tuple(a.copy() for a in cache[key])

    monkeypatch.setattr(Evaluator, "classify", once)


@settings_for(50)
@given(tokens=command_line("eval", always={"n"}))  # --n always given: the default 10,000 takes seconds
@example(tokens=["eval", LONG + ".onnx", "--n", "1"])
@example(tokens=["eval", str(ROOT / "models" / "generator.onnx"), "--n", "1", "--classifier", LONG + ".onnx"])
def test_eval_options(tokens, quiet_env, reference_digits_once):
    check(run_in_process(tokens))


@settings_for(200)
@given(tokens=command_line("train"))
@example(tokens=["train", "--data", "mnist"])  # Keras's download must not create ~/.keras/datasets
@example(tokens=["train", "--out", LONG])
@example(tokens=["train", "--data", LONG + ".npz"])
@example(tokens=["train", "--config", LONG + ".toml"])
@example(tokens=["train", "--resume", LONG])
@example(tokens=["train", "--config", "a\nb"])
def test_train_options_dry_run(tokens, quiet_env):
    check(run_in_process([*tokens, "--dry-run"]))


@settings_for(60)
@given(tokens=command_line("export"))
@example(tokens=["export", LONG + ".keras", "--out", "g.onnx"])
@example(tokens=["export", str(ROOT / "models" / "generator.keras"), "--out", LONG + ".onnx"])
def test_export_options(tokens, quiet_env, monkeypatch):
    from dcgan_export import export

    monkeypatch.setattr(export, "load_generator", _stop)  # where Keras and the parity gate would start
    check(run_in_process(tokens))


@settings_for(60)
@given(tokens=command_line("classifier"))
@example(tokens=["classifier", "--out", LONG + ".onnx"])
def test_classifier_options(tokens, quiet_env, monkeypatch):
    trainer_classifier = pytest.importorskip("trainer.classifier")
    monkeypatch.setattr(trainer_classifier, "fit_classifier", _stop)  # where the training would start
    check(run_in_process(tokens))


@settings_for(80)
@given(tokens=command_line("serve"))
@example(tokens=["serve", "--host", "a" * 64, "--port", "0"])  # an IDNA label over 63 characters
@example(tokens=["serve", "--host", "\u00e9\x9b", "--port", "0"])
@example(tokens=["serve", "--host", "a\nb", "--port", "0"])
@example(tokens=["serve", "--model", LONG + ".onnx", "--port", "0"])
def test_serve_options(tokens, quiet_env, monkeypatch):
    pytest.importorskip("uvicorn")
    import dcgan_export.serve as service

    def stop(sampler, sock, **_kwargs):  # where uvicorn would start serving: the socket is bound
        sock.close()
        raise ReachedWork

    monkeypatch.setattr(service, "run", stop)
    check(run_in_process(tokens))


# --- the slow properties: a few examples that do the real work ------------------------------------


TINY_TRAINING = ["--iterations", "3", "--batch-size", "8", "--no-export", "--quiet", "--checkpoint-every", "1",
                 "--sample-every", "1", "--eval-samples", "16"]


@pytest.mark.slow
@settings_for(5)
@given(tokens=command_line("train", moods=("usable",), sparse=True,
                           exclude={"config_file", "dry_run", "iterations", "batch_size", "export", "quiet",
                                    "checkpoint_every", "sample_every", "eval_samples",
                                    "class_guidance", "mixed_precision", "backend", "coordinator",
                                    "num_processes", "process_id"}))
def test_train_options_for_real(tokens, quiet_env):
    """Real training with usable values, forced tiny (options given last win); the shipped recipes
    are left out (their resume stages would train for minutes), and so are the options that cost
    minutes whatever the iterations (--class-guidance first trains its classifier; float16 on a CPU
    crawls): tests/test_guidance.py and test_train_run.py run them for real. So are the backend
    (this process runs Keras on TensorFlow) and the multi-process options (a process waits for
    its peers): tests/test_backends.py runs them in processes of their own."""
    pytest.importorskip("tensorflow")
    check(run_in_process([*tokens, *TINY_TRAINING]))


@pytest.mark.slow
@settings_for(3)
@given(src=st.sampled_from([RUN, OUTSIDE_USABLE[1]]),
       tokens=command_line("export", exclude={"src", "out"}, moods=("usable", "any")))
def test_export_options_for_real(src, tokens, quiet_env):
    """A real export of a trained generator through the parity gate, with the other options drawn."""
    pytest.importorskip("tf2onnx")
    check(run_in_process([tokens[0], src, "--out", "g.onnx", *tokens[1:]]))


@pytest.mark.slow
@settings_for(5)
@given(tokens=command_line("serve"))
def test_serve_options_in_a_subprocess(tokens, quiet_env):
    """A real server: still running after a few seconds without a traceback counts as success."""
    pytest.importorskip("uvicorn")
    with tempfile.TemporaryDirectory(prefix="dcgan-example-") as tmp:
        argv = materialize(tokens, Path(tmp))
        note(f"dcgan {shlex.join(argv)}")
        before = snapshot()
        proc = subprocess.Popen([sys.executable, "-m", "dcgan_export.cli", *argv], cwd=tmp, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        try:
            out, err = proc.communicate(timeout=6)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C would: uvicorn shuts down cleanly
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            code = 0
        after = snapshot()
    check(Outcome(argv, code, out, err, _diff(before, after)))

"""A training run's options: one table that the CLI, config files and config.json all read.

Every option is a field of ``TrainConfig`` whose metadata gives its ``--flag`` section and its
one-sentence help; ``dcgan train`` builds its options from this table (``trainer/cli.py``), a
``--config`` file (TOML or JSON) uses the same names, and config.json records them. Nothing here
imports TensorFlow: every check that can fail on user input runs before it loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import platform
import sys
from pathlib import Path

from dcgan_export import datasets
from dcgan_export.contract import DIGIT_DATASETS, IMAGE_SHAPE, check_image_size
from dcgan_export.errors import DcganError
from dcgan_export.limits import (MAX_BATCH_SIZE, MAX_EVAL_SAMPLES, MAX_ITERATIONS, MAX_LATENT_DIM,
                                 MAX_PROCESSES, MAX_TRAINING_SEED, check_int)
from dcgan_export.run_dir import RunDir

SECTIONS = ("data", "model", "optimisation", "regularisation", "averaging", "output", "hardware")


def option(default, section: str, help: str, **click):
    """A TrainConfig field: its default, the --help section it is listed under, one sentence of help,
    and anything click needs besides (a type, a choice)."""
    return dataclasses.field(default=default, metadata={"section": section, "help": help, "click": click})


@dataclasses.dataclass
class TrainConfig:
    data: str = option("mnist-8k", "data", "mnist-8k (embedded), mnist, fashion-mnist, a folder of images, "
                                           "an IDX directory or an .npz.")
    image_size: int | None = option(None, "data", "Side of the square images made from a folder, 16 to 128, "
                                                  "such as 32 or 64 [default: 64].")
    channels: int | None = option(None, "data", "1 (grey) or 3 (RGB) [default: 1 if every image is grey].")
    background: str = option("black", "data", "Colour transparent pixels are composited onto: black, white or "
                                              "#rrggbb.")
    skip_bad: bool = option(False, "data", "Leave out unreadable or too small image files (and count them) "
                                           "instead of stopping.")
    latent_dim: int = option(100, "model", "Length of the noise vector z.")
    width_multiplier: float = option(1.0, "model", "Scales every layer's width (1: the recipe's).")
    conditional: bool = option(False, "model", "Class-conditional networks trained on the data's labels, so "
                                               "that a class can be asked for when sampling.")
    iterations: int = option(5000, "optimisation", "Generator updates to train for (the run's target).")
    batch_size: int = option(64, "optimisation", "Images per discriminator and generator update.")
    lr: float = option(2e-4, "optimisation", "Adam learning rate of G (and of D unless --d-lr).")
    d_lr: float | None = option(None, "optimisation", "Adam learning rate of D [default: --lr].")
    beta1: float = option(0.5, "optimisation", "Adam beta_1.")
    d_steps: int = option(1, "optimisation", "Discriminator updates per iteration.")
    lr_decay_start: int | None = option(None, "optimisation", "Hold the rates until this iteration, then decay "
                                                              "them linearly to 0 at --iterations.")
    seed: int = option(0, "optimisation", "Seed of weights, noise and data order: same seed, same run.",
                       type="seed")
    label_smoothing: float = option(0.0, "regularisation", "D's target for real images is 1 minus this.")
    r1: float = option(0.0, "regularisation", "Weight of the R1 gradient penalty on real images; 0 = off.")
    augment: str = option("none", "regularisation", "DiffAugment of every image D sees: translation, cutout, "
                                                    "both (comma-separated) or none.")
    class_guidance: float = option(0.0, "regularisation", "Weight of a digit classifier's CatGAN term in G's "
                                                          "loss; needs labels; 0 = off.")
    ema: float = option(0.0, "averaging", "Decay of an exponential moving average of G's weights, which is "
                                          "then sampled and saved; 0 = off.")
    out: str | None = option(None, "output", "Run directory [default: runs/<timestamp>].", type="path")
    sample_every: int = option(200, "output", "Write a fixed-noise sample grid every N iterations.")
    checkpoint_every: int = option(500, "output", "Checkpoint every N iterations.")
    eval_every: int = option(0, "output", "Log classifier FID and class shares every N iterations; 0 = never.")
    eval_samples: int = option(2000, "output", "Images per --eval-every evaluation.")
    tensorboard: bool = option(False, "output", "Write TensorBoard scalars and images under RUN/tb.")
    export: bool = option(True, "output", "Export RUN/generator.onnx through the parity gate at the end.",
                          flag="--export/--no-export")
    quiet: bool = option(False, "output", "No progress bar.")
    mixed_precision: bool = option(False, "hardware", "Train in mixed_float16 with loss scaling.")
    backend: str | None = option(None, "hardware", "Keras backend: tensorflow or jax [default: $KERAS_BACKEND, "
                                                   "else tensorflow if installed, else jax].",
                                 choices=("tensorflow", "jax"))
    distribute: bool = option(False, "hardware", "Spread each step over every local device (JAX: over the "
                                                 "devices of every process).")
    coordinator: str | None = option(None, "hardware", "HOST:PORT where process 0 of a multi-process run (JAX) "
                                                       "listens.")
    num_processes: int = option(1, "hardware", "Processes in a multi-process run, each started with the same "
                                               "command and its own --process-id.")
    process_id: int = option(0, "hardware", "This process's index, 0 to --num-processes - 1; process 0 writes "
                                            "the run directory.")

    def validate(self) -> None:
        from . import augment

        for name, (low, high) in INT_RANGES.items():
            setattr(self, name, check_int(getattr(self, name), flag(name), low, high))
        for name in ("lr", "d_lr"):
            rate = getattr(self, name)
            if rate is not None and not 0 < rate < math.inf:
                raise DcganError(f"{flag(name)} must be a finite number > 0, got {rate}")
        for name in ("beta1", "ema", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise DcganError(f"{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        for name in ("r1", "class_guidance"):
            if not 0 <= getattr(self, name) < math.inf:
                raise DcganError(f"{flag(name)} must be a finite number >= 0, got {getattr(self, name)}")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start < self.iterations:
            raise DcganError(f"--lr-decay-start must be in [0, --iterations), got {self.lr_decay_start} "
                             f"with --iterations {self.iterations}")
        try:
            augment.parse_policy(self.augment)
        except ValueError as exc:
            raise DcganError(f"--augment: {exc}") from None
        if self.image_size is not None:
            check_image_size(self.image_size)
        if self.channels not in (None, 1, 3):
            raise DcganError(f"--channels must be 1 or 3, got {self.channels}")
        parse_colour(self.background)
        if not 0 < self.width_multiplier <= 8:
            raise DcganError(f"--width-multiplier must be in (0, 8], got {self.width_multiplier}")
        from .hardware import check_launch, resolve_backend

        self.backend = resolve_backend(self.backend)
        check_launch(self)
        if self.tensorboard and importlib.util.find_spec("tensorflow") is None:
            raise DcganError("--tensorboard writes through TensorFlow's tf.summary, which is not installed "
                             "(pip install 'dcgan[train]')")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Every integer option's range (dcgan_export/limits.py says why each bound is where it is).
INT_RANGES = {
    "iterations": (1, MAX_ITERATIONS), "batch_size": (1, MAX_BATCH_SIZE), "d_steps": (1, MAX_BATCH_SIZE),
    "latent_dim": (1, MAX_LATENT_DIM), "seed": (0, MAX_TRAINING_SEED), "sample_every": (1, MAX_ITERATIONS),
    "checkpoint_every": (1, MAX_ITERATIONS), "eval_every": (0, MAX_ITERATIONS), "eval_samples": (1, MAX_EVAL_SAMPLES),
    "num_processes": (1, MAX_PROCESSES), "process_id": (0, MAX_PROCESSES - 1),
}
# Options that change only what a run reports or writes at its end, never what it trains:
# config.json's resume history skips them.
REPORTING = frozenset({"quiet", "tensorboard", "eval_every", "eval_samples", "export"})
# How this one process joins a multi-process run: given to every process's command (the same
# but for --process-id), never recorded in config.json.
LAUNCH = frozenset({"coordinator", "num_processes", "process_id"})
# Options that change where a run computes, not what: a resume may change them (checkpoints are
# the same on every backend), and config.json's resume history records them.
HARDWARE = frozenset({"backend", "distribute"}) | LAUNCH


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_types(options: dict, where: str) -> dict:
    """Options read from a file, with names checked and values of the field's type (ints for ints;
    ints accepted for floats), or a one-line DcganError naming ``where``."""
    checked = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise DcganError(f"{where}: unknown option {key!r}")
        kind = str(FIELDS[name].type)
        optional = "None" in kind
        if value is None and optional:
            checked[name] = None
            continue
        ok = (isinstance(value, bool) if kind == "bool"
              else isinstance(value, int) and not isinstance(value, bool) if kind.startswith("int")
              else isinstance(value, (int, float)) and not isinstance(value, bool) if kind.startswith("float")
              else isinstance(value, str))
        if not ok:
            raise DcganError(f"{where}: {key} must be {kind.replace(' | None', ' or null')}, got {value!r}")
        checked[name] = float(value) if kind.startswith("float") else value
    return checked


# -- recipe files (--config) ---------------------------------------------------------------------


@dataclasses.dataclass
class Recipe:
    """A --config file: options for the start of a run, and the resumes that follow it, each a
    set of changes (what ``--resume RUN`` may change) ending at a later ``iterations``."""

    options: dict
    stages: list[dict]


def shipped_recipes() -> dict[str, Path]:
    """Recipes that ship with dcgan, by name (``--config quickstart``)."""
    from dcgan_export.paths import shipped_dir

    return {p.stem: p for p in sorted(shipped_dir().glob("*.toml"))}


def load_recipe(spec: str) -> Recipe:
    """A TOML or JSON file, or the name of a shipped recipe; top-level keys are options, and an
    optional list ``resume`` holds the stages that follow."""
    from .resume import check_stage_changes

    path = Path(spec)
    if not path.is_file():
        named = shipped_recipes().get(spec)
        if named is None:
            raise DcganError(f"--config {spec}: no such file (shipped recipes: {', '.join(shipped_recipes()) or 'none'})")
        path = named
    try:
        text = path.read_text()
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            doc = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DcganError(f"--config {path}: unreadable ({exc})") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise DcganError(f"--config {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} "
                         f"({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise DcganError(f"--config {path}: expected a table of options at the top")
    stages = doc.pop("resume", [])
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise DcganError(f"--config {path}: 'resume' must be a list of tables of options")
    options = check_types(doc, f"--config {path}")
    if "out" in options and options["out"] is not None:
        options["out"] = str(options["out"])
    checked = [check_types(stage, f"--config {path}: resume {i + 1}") for i, stage in enumerate(stages)]
    start = options.get("iterations", FIELDS["iterations"].default)
    check_stage_changes(checked, start, f"--config {path}", options.get("ema", FIELDS["ema"].default))
    return Recipe(options, checked)


# -- the data a run trains on --------------------------------------------------------------------


def parse_colour(text: str) -> tuple[int, int, int]:
    """black, white or #rrggbb as an RGB triple, or a one-line DcganError."""
    named = {"black": (0, 0, 0), "white": (255, 255, 255)}
    value = str(text).strip().lower()
    if value in named:
        return named[value]
    if len(value) == 7 and value[0] == "#" and all(c in "0123456789abcdef" for c in value[1:]):
        return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
    raise DcganError(f"--background must be black, white or #rrggbb, got {text!r}")


def load_data(config: TrainConfig, dry_run: bool = False) -> datasets.Dataset:
    """The run's data, checked against the options that depend on it. A folder's decoding and
    cache are reported on stderr (stdout may be --dry-run's JSON); a dry run downloads nothing."""
    from .guidance import check_labels

    options = datasets.ImageOptions(config.image_size, config.channels, parse_colour(config.background),
                                    config.skip_bad, echo=lambda line: print(line, file=sys.stderr, flush=True),
                                    dry_run=dry_run)
    data = datasets.load(config.data, options=options)
    if config.class_guidance:
        if data.image_shape != IMAGE_SHAPE:
            raise DcganError(f"--class-guidance uses a digit classifier of 28x28x1 images; {data.name} holds "
                             f"{'x'.join(map(str, data.image_shape))}")
        check_labels(data.labels, len(data), data.name)
    if config.conditional:
        conditional_classes(data)
    if config.eval_every and data.name not in DIGIT_DATASETS:
        raise DcganError("--eval-every scores samples with a digit classifier: it is for --data mnist-8k "
                         f"or mnist, not {config.data!r}")
    per_iteration = config.batch_size * config.d_steps
    if per_iteration > len(data):
        raise DcganError(f"--batch-size {config.batch_size} x --d-steps {config.d_steps} = {per_iteration} "
                         f"is larger than the data set ({len(data)} images)")
    return data


MAX_CLASSES = 1000


def conditional_classes(data: datasets.Dataset) -> tuple[str, ...]:
    """The class names a --conditional run trains on: the data's own, else the labels' numbers
    ("0" .. "9" for digits); a one-line DcganError for data a conditional run cannot use."""
    import numpy as np

    if data.labels is None:
        raise DcganError(f"--conditional trains on labels, and {data.name} has none (a folder needs one "
                         "sub-folder per class; an .npz, y_train; an IDX directory, its labels file)")
    labels = np.asarray(data.labels)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DcganError(f"--conditional needs one label >= 0 per image; {data.name} has {labels.dtype} labels "
                         f"of shape {labels.shape}")
    count = len(data.class_names) if data.class_names else int(labels.max()) + 1
    if labels.max() >= count:
        raise DcganError(f"{data.name}: label {int(labels.max())} but only {count} class names")
    if not 2 <= count <= MAX_CLASSES:
        raise DcganError(f"--conditional needs 2 to {MAX_CLASSES} classes; {data.name} has {count}")
    return tuple(data.class_names) if data.class_names else tuple(str(i) for i in range(count))


# -- config.json ---------------------------------------------------------------------------------


def config_from_record(record: dict, where: str) -> TrainConfig:
    """The TrainConfig that config.json's ``options`` describe (unknown keys are ignored: a newer
    dcgan may have written them)."""
    known = {k: v for k, v in record["options"].items() if k in FIELDS}
    try:
        return TrainConfig(**check_types(known, where))
    except DcganError as exc:
        raise DcganError(f"cannot resume: {exc}") from None


def write_record(run: RunDir, config: TrainConfig, data: datasets.Dataset, history: list,
                 stages: list[dict]) -> None:
    """config.json: ``options`` in force now; ``resumed`` lists, per resume that changed what the
    run trains, its iteration and each changed option as [before, after]; ``stages`` the resumes a
    recipe planned (a plain ``--resume`` carries on through those still ahead)."""
    from importlib import metadata

    import numpy as np

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    launch_defaults = {name: FIELDS[name].default for name in LAUNCH}
    class_names = conditional_classes(data) if config.conditional else data.class_names
    record = {
        "options": {**dataclasses.asdict(config), **launch_defaults},
        "data": {"name": data.name, "spec": config.data, "sha256": data.sha256, "images": len(data),
                 "image_shape": list(data.image_shape),
                 **({"class_names": list(class_names)} if class_names else {})},
        "versions": {
            "dcgan": version("dcgan"),
            "tensorflow": version("tensorflow") or version("tensorflow-cpu"),
            "keras": version("keras"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if history:
        record["resumed"] = history
    if stages:
        record["stages"] = stages
    run.write_config(record)


@dataclasses.dataclass
class RunPlan:
    """A run checked and ready to train: what ``start_run`` and ``resume_run`` hand the trainer."""

    config: TrainConfig
    run: RunDir
    data: datasets.Dataset
    start: int  # the iteration the checkpoint holds (0 for a new run)
    stages: list[dict]  # the recipe's resumes, as config.json records them
    notes: list[str] = dataclasses.field(default_factory=list)  # what the trainer tells the user first

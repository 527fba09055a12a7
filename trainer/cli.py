"""``dcgan train``: its options come from ``TrainConfig``'s table, listed under headings.

Imports click and the TF-free planning modules only, so ``dcgan --help`` stays fast; TensorFlow
loads once a run has passed every check.
"""

from __future__ import annotations

import dataclasses
import json

import click

from dcgan_export.errors import DcganError, require_training_extra
from dcgan_export.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_TRAINING_SEED

from .config import FIELDS, SECTIONS, Recipe, TrainConfig, flag, load_recipe

RUN_SECTION = "run"

EXAMPLES = [
    ("dcgan train --config quickstart --out runs/quick", "readable digits in a few minutes on a CPU"),
    ("dcgan train --out runs/mnist", "5,000 iterations on the embedded digits"),
    ("dcgan train --config recipe --out runs/shipped", "the shipped model's recipe, every stage"),
    ("dcgan train --resume runs/mnist --iterations 8000", "continue exactly where it stopped"),
    ("dcgan train --config my.toml --r1 1 --dry-run", "print the resolved options, write nothing"),
]
NOTES = ("--config takes a TOML or JSON file of these options (names as in config.json) or the name of a "
         "shipped recipe (quickstart, recipe); options given on the command line win over the file's. "
         "Theory and rules (R1, EMA, guidance, DiffAugment, what a resume may change): docs/training.md.")


class SectionedCommand(click.Command):
    """Lists options under their headings (``param.section``) rather than in one flat list."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "section", RUN_SECTION), []).append(record)
        for section in (RUN_SECTION, *SECTIONS):
            if section in groups:
                with formatter.section(section.capitalize()):
                    formatter.write_dl(groups[section])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Examples"):
            formatter.write_dl(EXAMPLES)
        formatter.write_paragraph()
        formatter.write_text(NOTES)


def _click_type(field: dataclasses.Field):
    extra = field.metadata["click"]
    if "choices" in extra:
        return click.Choice(extra["choices"])
    if extra.get("type") == "path":
        return click.Path()
    kind = str(field.type)
    return int if kind.startswith("int") else float if kind.startswith("float") else str


def _option(field: dataclasses.Field) -> click.Option:
    meta = field.metadata
    if str(field.type) == "bool":
        declaration = meta["click"].get("flag", flag(field.name))
        opt = click.Option([declaration, field.name], is_flag=True, default=field.default, help=meta["help"],
                           show_default="/" in declaration)
    else:
        opt = click.Option([flag(field.name), field.name], type=_click_type(field), default=field.default,
                           help=meta["help"], show_default=field.default is not None)
    opt.section = meta["section"]
    return opt


def _run_options() -> list[click.Option]:
    options = [
        click.Option(["--config", "config_file"], default=None, metavar="FILE|NAME",
                     help="Options (and a recipe's resumes) from a TOML/JSON file or a shipped recipe."),
        click.Option(["--resume"], type=click.Path(), default=None, metavar="RUN",
                     help="Continue the run in this directory from its checkpoint."),
        click.Option(["--force"], is_flag=True, help="Start over in an existing --out run directory."),
        click.Option(["--dry-run"], is_flag=True, help="Check everything, print the resolved options, write nothing."),
    ]
    for opt in options:
        opt.section = RUN_SECTION
    return options


@click.pass_context
def _train(ctx: click.Context, config_file: str | None, resume: str | None, force: bool, dry_run: bool,
           **options) -> None:
    """Train the DCGAN: losses, sample grids and checkpoints go to the run directory, then
    generator.keras and (exported through the parity gate) generator.onnx."""
    given = {k: v for k, v in options.items()
             if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    if options["num_processes"] > 1 and not dry_run:
        from .supervise import is_worker, leave, supervise

        if not is_worker():
            supervise(ctx.obj["argv"], options["process_id"], resume or options["out"] or "RUN", options["coordinator"])
            return
        try:
            return _train_or_resume(config_file, resume, force, dry_run, given)
        except DcganError as exc:
            leave(str(exc).replace("\n", "\\n"), exc.exit_code)
    _train_or_resume(config_file, resume, force, dry_run, given)


def _train_or_resume(config_file: str | None, resume: str | None, force: bool, dry_run: bool, given: dict) -> None:
    if resume is not None:
        from .resume import check_changes, plan_resume

        if config_file is not None:
            raise DcganError("--config starts a run; --resume continues one with its recorded options "
                             "(and its recipe's stages): give one of them")
        if force:
            raise DcganError("--resume continues a run and --force starts one over: give one of them")
        check_changes(given)
        if dry_run:
            plan = plan_resume(resume, given, dry_run=True)
            click.echo(_describe(plan, given))
            return
        from .train import resume_run

        resume_run(resume, given, echo=click.echo)
        return
    recipe = load_recipe(config_file) if config_file is not None else Recipe({}, [])
    config = TrainConfig(**{**recipe.options, **given})
    if dry_run:
        from .train import plan_start

        click.echo(_describe(plan_start(config, force, recipe.stages, dry_run=True), given))
        return
    from .train import start_run

    start_run(config, force, recipe.stages, echo=click.echo)


def _describe(plan, given: dict) -> str:
    """What --dry-run prints: the run, where it starts, every option in force and the stages ahead."""
    ahead = [s for s in plan.stages if s["iterations"] > plan.config.iterations]
    return json.dumps({
        "run": str(plan.run),
        "start_iteration": plan.start,
        "data": {"name": plan.data.name, "images": len(plan.data)},
        "options": dataclasses.asdict(plan.config),
        "given_on_command_line": sorted(given),
        "resume_stages_ahead": ahead,
        "notes": plan.notes,
    }, indent=2)


train = SectionedCommand(
    "train",
    callback=_train,
    params=[*_run_options(), *(_option(f) for f in FIELDS.values())],
    help=_train.__doc__,
    short_help="Train the DCGAN on digits or a folder of your own images.",
)


@click.command("classifier", short_help="Train the classifier dcgan eval scores samples with.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="ONNX file to write (the shipped one is models/mnist_classifier.onnx).")
@click.option("--data", default="mnist-8k", show_default=True,
              help="Labelled data: mnist-8k, fashion-mnist, a folder of class sub-folders, IDX, .npz.")
@click.option("--image-size", type=int, default=None, help="For a folder: as dcgan train's [default: 64].")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="As dcgan train's.")
@click.option("--background", default="black", show_default=True, help="As dcgan train's.")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=18, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_TRAINING_SEED), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=64, show_default=True)
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
def classifier(out: str, data: str, image_size: int | None, channels: str | None, background: str, epochs: int,
               seed: int, batch_size: int, quiet: bool) -> None:
    """Train a classifier on a labelled data set's train split (the embedded digits by default;
    any other: nine tenths of it) and export it to ONNX, checked against Keras before it is
    written; prints its held-out accuracy as JSON. `dcgan eval --classifier FILE` then scores a
    generator trained on that data."""
    import sys

    from dcgan_export.contract import check_image_size
    from dcgan_export.datasets import ImageOptions
    from dcgan_export.onnx_convert import use_tensorflow_backend

    from .config import parse_colour

    if image_size is not None:
        check_image_size(image_size)
    options = ImageOptions(image_size, None if channels is None else int(channels), parse_colour(background),
                           echo=lambda line: print(line, file=sys.stderr, flush=True))
    require_training_extra("classifier")
    use_tensorflow_backend()  # it exports through tf2onnx
    from .classifier import train_classifier

    info = train_classifier(out, epochs=epochs, seed=seed, batch_size=batch_size, verbose=0 if quiet else 2,
                            data=data, options=options)
    click.echo(json.dumps(info))

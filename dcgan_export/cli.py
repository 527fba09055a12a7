"""The ``dcgan`` command: train, export, sample, eval, serve.

Each command imports its heavy machinery inside the function, so ``dcgan --help`` and
``dcgan sample`` never load TensorFlow (a test checks ``sys.modules``).
Bad input raises ``DcganError``; ``main`` prints it as one line and exits non-zero.
"""

from __future__ import annotations

import sys

import click

from .errors import DcganError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dcgan")
def cli() -> None:
    """Train a DCGAN on digits, export its generator to ONNX, sample from it anywhere."""


# --- train (trainer/, TensorFlow) -------------------------------------------------------------


def _require_training_extra(command: str) -> None:
    """The light install has no TensorFlow: say so before any work, not with a traceback after."""
    from importlib.util import find_spec

    missing = [m for m in ("tensorflow", "keras", "tf2onnx", "onnx") if find_spec(m) is None]
    if missing:
        raise DcganError(f"dcgan {command} needs the [train] extra ({', '.join(missing)} not installed): "
                         "pip install 'dcgan[train]'")


# Options a resumed run may change; every other one is fixed by the run's config.json.
_RESUMABLE = {"iterations", "lr_decay_start", "ema", "class_guidance", "quiet", "tensorboard", "eval_every", "eval_samples"}


@cli.command()
@click.option("--data", default="mnist-8k", show_default=True,
              help="mnist-8k (embedded), mnist, fashion-mnist, a directory of IDX files, or an .npz with x_train.")
@click.option("--out", type=click.Path(), default=None, help="Run directory [default: runs/<timestamp>].")
@click.option("--iterations", type=int, default=5000, show_default=True, help="Generator updates.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True,
              help="Adam learning rate (the generator's; the discriminator's too unless --d-lr).")
@click.option("--d-lr", type=float, default=None,
              help="The discriminator's Adam learning rate [default: --lr]; a larger one is the two "
                   "time-scale update rule (TTUR, Heusel et al., 2017).")
@click.option("--lr-decay-start", type=int, default=None,
              help="Hold the learning rates through this iteration, then decay them linearly towards 0 "
                   "at --iterations (the last iteration runs at lr / (iterations - this)). A resumed run may "
                   "start decaying at or after its checkpoint; once decaying it keeps this and --iterations "
                   "[default: no decay].")
@click.option("--beta1", type=float, default=0.5, show_default=True, help="Adam beta_1.")
@click.option("--d-steps", type=int, default=1, show_default=True, help="Discriminator updates per iteration.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True,
              help="One-sided: D's target for real images is 1 - this.")
@click.option("--r1", type=float, default=0.0, show_default=True,
              help="R1 penalty weight gamma: D's loss gains gamma/2 x the mean, over real images, of "
                   "the squared norm of the gradient of D's logit with respect to the image "
                   "(Mescheder et al., 2018); 0 = off.")
@click.option("--augment", default="none", show_default=True,
              help="Differentiable augmentation of every image D sees, real and fake (DiffAugment): "
                   "'translation', 'cutout', 'translation,cutout' or 'none'. For small data sets.")
@click.option("--ema", type=float, default=0.0, show_default=True,
              help="Keep an exponential moving average of G's weights with this decay (e.g. 0.999) "
                   "and sample, evaluate and save that; 0 = off. A resumed run may change the decay "
                   "(the average carries on from its checkpoint's).")
@click.option("--class-guidance", type=float, default=0.0, show_default=True,
              help="Weight W of a term in G's loss that asks a digit classifier to be sure of each image "
                   "while the batch covers every class (CatGAN's generator objective), against samples "
                   "halfway between two digits; needs labelled data. The classifier is trained on the "
                   "run's data when first needed (about 2 min on a CPU for mnist-8k) and kept in the run directory. "
                   "A resumed run may change W; 0 = off. Under --strategy mirrored the batch is each "
                   "replica's own.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sample-every", type=int, default=200, show_default=True, help="Fixed-noise grid every N iterations.")
@click.option("--checkpoint-every", type=int, default=500, show_default=True)
@click.option("--eval-every", type=int, default=0, show_default=True,
              help="Log sample quality (classifier FID, class coverage) every N iterations; 0 = never.")
@click.option("--eval-samples", type=int, default=2000, show_default=True, help="Images per --eval-every evaluation.")
@click.option("--tensorboard", is_flag=True, help="Write TensorBoard scalars and images under RUN/tb.")
@click.option("--mixed-precision", is_flag=True, help="mixed_float16 with loss scaling.")
@click.option("--strategy", type=click.Choice(["default", "mirrored"]), default="default", show_default=True,
              help="mirrored: tf.distribute.MirroredStrategy over all visible devices.")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--force", is_flag=True, help="Start over in an existing --out directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx: click.Context, resume: str | None, force: bool, **options) -> None:
    """Train the DCGAN; writes losses, sample grids, checkpoints and generator.keras to the run directory."""
    _require_training_extra("train")
    from trainer.train import TrainConfig, train as run_training

    given = {k for k in options if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    overrides = None
    if resume is not None:
        fixed = sorted(given - _RESUMABLE)
        if fixed:
            raise DcganError(f"--resume continues a run with its own settings; it cannot change "
                             f"{', '.join('--' + k.replace('_', '-') for k in fixed)}")
        overrides = {k: options[k] for k in given}
    run_training(TrainConfig(**options), resume=resume, force=force, overrides=overrides, echo=click.echo)


# --- export (dcgan_export/export.py, TensorFlow + tf2onnx) --------------------------------------


@cli.command("export")
@click.argument("src", type=click.Path())
@click.option("--out", type=click.Path(), required=True, help="ONNX file to write (e.g. models/generator.onnx).")
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Fold BatchNorm and turn upsample+conv into sub-pixel convolutions; "
                   "--no-optimize exports the Keras graph as it is.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Parity gate: largest allowed |ONNX - Keras| on any pixel.")
def export_command(src: str, out: str, optimize: bool, atol: float) -> None:
    """Export a trained generator (run directory or .keras file) to ONNX.

    The ONNX model is checked against the Keras generator in onnxruntime (1,026 noise vectors,
    batch sizes 1 and 257) before it is written; on a mismatch nothing is written and the exit
    code is 1.
    """
    _require_training_extra("export")
    from .export import export_generator

    export_generator(src, out, optimize=optimize, atol=atol, echo=click.echo)


# --- sample (dcgan_export/runtime.py, onnxruntime only) -----------------------------------------


@cli.command()
@click.option("--n", "n", type=int, default=None, help="Number of images [default: 25, or the rows of --noise].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file: a grid .png, or .npy (uint8 [n, 28, 28]).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, help="Write one PNG per image here instead.")
@click.option("--model", type=click.Path(dir_okay=False), default=None, help="ONNX generator [default: the shipped one].")
@click.option("--seed", type=int, default=None, help="Image i is made from default_rng([seed, i]) [default: random].")
@click.option("--noise", type=click.Path(dir_okay=False), default=None, help="A .npy of noise vectors [n, latent] to use.")
@click.option("--nrow", type=int, default=None, help="Images per grid row [default: a square-ish grid].")
@click.option("--format", "fmt", type=click.Choice(["png", "npy"]), default=None,
              help="png grid or npy array [default: from --out's suffix, else png].")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--threads", type=int, default=None, help="onnxruntime threads [default: physical cores].")
def sample(n, out, out_dir, model, seed, noise, nrow, fmt, batch_size, threads) -> None:
    """Sample images from an ONNX generator (no TensorFlow): a grid PNG, a .npy, or one PNG each."""
    from .sampling import SampleRequest, run_sample

    click.echo(run_sample(SampleRequest(n=n, out=out, out_dir=out_dir, model=model, seed=seed, noise=noise,
                                        nrow=nrow, fmt=fmt, batch_size=batch_size, threads=threads)))


# --- eval (dcgan_export/evaluate.py, onnxruntime only) ------------------------------------------


@cli.command("eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=int, default=10000, show_default=True, help="Images to generate and score.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed (image i uses default_rng([seed, i])).")
@click.option("--classifier", type=click.Path(dir_okay=False), default=None,
              help="Digit classifier ONNX [default: the shipped models/mnist_classifier.onnx].")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def eval_command(model: str, n: int, seed: int, classifier: str | None, batch_size: int, as_json: bool) -> None:
    """Score MODEL's samples in a digit classifier's feature space: FID against held-out digits,
    class balance, confidence, classifier score. Warns on stderr when classes collapse."""
    import json

    from .evaluate import evaluate_generator, format_report

    report = evaluate_generator(model, n=n, seed=seed, classifier_path=classifier, batch_size=batch_size)
    click.echo(json.dumps(report) if as_json else format_report(report))
    for warning in report["warnings"]:
        click.echo(f"WARNING: {warning}", err=True)


# --- serve (dcgan_export/serve.py, onnxruntime + starlette) -------------------------------------


@cli.command()
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="ONNX generator to serve (default: the shipped models/generator.onnx).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 to accept connections from other machines).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="onnxruntime threads per request; concurrent requests already use the other cores.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="uvicorn log level; below info, no access log.")
def serve(model, host, port, threads, log_level) -> None:
    """Serve the generator over HTTP: /healthz, /v1/model, /v1/sample, /v1/generate."""
    try:
        from . import serve as service
    except ImportError as exc:
        raise DcganError(f"dcgan serve needs the [serve] extra (pip install 'dcgan[serve]'): {exc}") from None
    from .runtime import Sampler

    service.run(Sampler(model, threads=threads), host=host, port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="dcgan", standalone_mode=False)
    except DcganError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, read-only file system, ...: files already written are intact
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

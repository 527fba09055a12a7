"""The ``dcgan`` command group: export, sample, eval and serve here; train and classifier come
from ``trainer/cli.py``.

Each command imports its heavy machinery inside the function, so ``dcgan --help``, ``dcgan
sample``, ``eval`` and ``serve`` never load TensorFlow (a test checks ``sys.modules``); ``train``,
``export`` and ``classifier`` need the [train] extra. Bad input raises ``DcganError``; ``main``
prints it as one line and exits non-zero.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from .errors import DcganError, first_line, require_training_extra
from .limits import MAX_SEED, MAX_THREADS

SEED = click.IntRange(0, MAX_SEED)
THREADS = click.IntRange(1, MAX_THREADS)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dcgan")
def cli() -> None:
    """Train a DCGAN on digits or your own images, export its generator to ONNX, sample from it anywhere."""


def _register_training_commands() -> None:
    from trainer.cli import classifier, train  # click and the TF-free config only: --help stays fast

    cli.add_command(train)
    cli.add_command(classifier)


# --- export (dcgan_export/export.py, TensorFlow + tf2onnx) --------------------------------------


@cli.command("export")
@click.argument("src", type=click.Path())
@click.option("--out", type=click.Path(), required=True, help="ONNX file to write (e.g. models/generator.onnx).")
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Fold BatchNorm and turn upsample+conv into sub-pixel convolutions; "
                   "--no-optimize exports the Keras graph as it is.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Parity gate: largest allowed |ONNX - Keras| on any pixel.")
@click.option("--triton-repo", type=click.Path(), default=None, metavar="DIR",
              help="Also write a Triton model repository: DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx.")
@click.option("--name", default=None, help="The model's name in --triton-repo [default: dcgan].")
def export_command(src: str, out: str, optimize: bool, atol: float, triton_repo: str | None,
                   name: str | None) -> None:
    """Export a trained generator (run directory or .keras file) to ONNX.

    The ONNX model is checked against the Keras generator in onnxruntime (1,026 noise vectors,
    batch sizes 1 and 257) before it is written; on a mismatch nothing is written and the exit
    code is 1. With --triton-repo, the written model also goes into a Triton model repository
    (onnxruntime backend, dynamic batching, CPU; docs/serving.md), which must not hold NAME yet.
    """
    require_training_extra("export")
    from .export import export_generator
    from .triton import MODEL_NAME, check_repository, write_repository

    if name is not None and triton_repo is None:
        raise DcganError("--name names the model in --triton-repo; give --triton-repo too")
    name = MODEL_NAME if name is None else name
    if triton_repo is not None:
        check_repository(triton_repo, name)  # before the slow work: a bad name or path costs nothing
    export_generator(src, out, optimize=optimize, atol=atol, echo=click.echo)
    if triton_repo is not None:
        click.echo(f"triton model repository: {write_repository(out, triton_repo, name)} (config.pbtxt, 1/model.onnx)")


# --- sample (dcgan_export/runtime.py, onnxruntime only) -----------------------------------------


@cli.command()
@click.option("--n", "n", type=int, default=None, help="Number of images [default: 25, or the rows of --noise].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file: a grid .png, a .npy (uint8 [n, H, W] or [n, H, W, 3]), or a .gif (or .mp4, with ffmpeg) walk.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None, help="Write one PNG per image here instead.")
@click.option("--model", type=click.Path(), default=None,
              help="ONNX generator, or a run directory [default: the shipped generator].")
@click.option("--seed", type=SEED, default=None, help="Image i of a seed is always the same image (docs/noise.md) [default: random].")
@click.option("--noise", type=click.Path(dir_okay=False), default=None, help="A .npy of noise vectors [n, latent] to use.")
@click.option("--nrow", type=int, default=None, help="Images per grid row [default: a square-ish grid].")
@click.option("--format", "fmt", type=click.Choice(["png", "npy"]), default=None,
              help="png grid or npy array [default: from --out's suffix, else png].")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--threads", type=THREADS, default=None, help="onnxruntime threads [default: physical cores].")
@click.option("--scale", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Enlarge PNGs (grids, single images, GIF frames) this many times, nearest neighbour.")
@click.option("--truncation", type=float, default=None, metavar="PSI",
              help="Redraw noise components beyond +-PSI (e.g. 0.7): plainer, surer images.")
@click.option("--interpolate", default=None, metavar="SEED_A,SEED_B[,...]",
              help="Write an animated GIF (or MP4) walking between the seeds' noise (--n walks side by side).")
@click.option("--frames", type=int, default=16, show_default=True, help="Frames from one seed to the next.")
@click.option("--class", "label", default=None, metavar="K|NAME|all",
              help="Class-conditional models: one class (an index or a name), 'all' for one row of --n "
                   "[default 10] per class, or with --interpolate one class per seed (3,8: a 3 morphing into "
                   "an 8) [default: image i is class i % K].")
def sample(n, out, out_dir, model, seed, noise, nrow, fmt, batch_size, threads, scale, truncation, interpolate,
           frames, label) -> None:
    """Sample images from an ONNX generator (no TensorFlow): a grid PNG, a .npy, one PNG each, or
    an animated walk between seeds."""
    from .sampling import SampleRequest, run_sample

    click.echo(run_sample(SampleRequest(n=n, out=out, out_dir=out_dir, model=model, seed=seed, noise=noise,
                                        nrow=nrow, fmt=fmt, batch_size=batch_size, threads=threads, scale=scale,
                                        truncation=truncation, interpolate=interpolate, frames=frames,
                                        label=label)))


# --- eval (dcgan_export/evaluate.py, onnxruntime only) ------------------------------------------


@cli.command("eval")
@click.argument("model", type=click.Path())
@click.option("--n", "n", type=int, default=10000, show_default=True, help="Images to generate and score.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Noise seed (image i of a seed is always the same image).")
@click.option("--classifier", type=click.Path(dir_okay=False), default=None,
              help="Classifier ONNX (dcgan classifier) [default: the shipped digit classifier].")
@click.option("--features", type=click.Path(dir_okay=False), default=None,
              help="Any feature extractor ONNX (images [N,H,W,C] -> [N,D]), for unlabelled data; needs --data.")
@click.option("--data", default=None, help="With --features: the real images to compare with (as dcgan train's).")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--any-data", is_flag=True, help="Score a model trained on other data than the classifier's anyway.")
def eval_command(model: str, n: int, seed: int, classifier: str | None, features: str | None, data: str | None,
                 batch_size: int, as_json: bool, any_data: bool) -> None:
    """Score MODEL's samples in a classifier's feature space (FID against held-out images, class
    balance, confidence, classifier score; warns on stderr when classes collapse), or with
    --features and --data, the FID in any feature extractor's space against real images."""
    import json

    if (features is None) != (data is None):
        raise DcganError("--features and --data go together: a feature extractor, and the real images to compare with")
    if features is not None:
        if classifier is not None:
            raise DcganError("give --classifier or --features, not both")
        from .evaluate import check_counts
        from .feature_fid import evaluate_with_features, format_report

        check_counts(n, batch_size)
        report = evaluate_with_features(model, features, data, n=n, seed=seed, batch_size=batch_size, progress=True)
    else:
        from .evaluate import evaluate_generator, format_report

        report = evaluate_generator(model, n=n, seed=seed, classifier_path=classifier, batch_size=batch_size,
                                    any_data=any_data, progress=True)
    click.echo(json.dumps(report) if as_json else format_report(report))
    for warning in report["warnings"]:
        click.echo(f"WARNING: {warning}", err=True)


# --- serve (dcgan_export/serve.py, onnxruntime + starlette) -------------------------------------


@cli.command()
@click.option("--model", type=click.Path(), default=None,
              help="ONNX generator, or a run directory [default: the shipped generator].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 to accept connections from other machines).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--threads", type=THREADS, default=1, show_default=True,
              help="onnxruntime threads per request; concurrent requests already use the other cores.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="uvicorn log level; below info, no access log.")
@click.option("--name", default="dcgan", show_default=True,
              help="The model's name in the v2 API (/v2/models/NAME), as in a Triton repository.")
def serve(model, host, port, threads, log_level, name) -> None:
    """Serve the generator over HTTP: /healthz, /v1/model, /v1/sample, /v1/generate, and the Open
    Inference Protocol (KServe v2, as Triton speaks it) under /v2."""
    try:
        from . import serve as service
    except ImportError as exc:
        raise DcganError(f"dcgan serve needs the [serve] extra (pip install 'dcgan[serve]'): {exc}") from None
    from .runtime import Sampler
    from .triton import check_model_name

    check_model_name(name)
    limits = service.Limits.from_env()  # bad DCGAN_SERVE_* values: one line, before the port or model
    sock = service.listen_socket(host, port)
    service.run(Sampler(model, threads=threads), sock, log_level=log_level, limits=limits, name=name)


_register_training_commands()


# OS errors that mean a path is unusable as given (too long, not a directory, missing): almost
# always one the user typed, so bad input (exit 2); the machine failing (a full disk, an I/O
# error, a permission) exits 1.
PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EINVAL, errno.ENOENT}


def main(argv: list[str] | None = None) -> None:
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        cli.main(args=argv, prog_name="dcgan", standalone_mode=False, obj={"argv": argv})
    except DcganError as exc:
        _fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        _fail("Aborted.", 130, prefix="")
    except click.ClickException as exc:  # a usage error: one line, like every other error
        _fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        _fail("Interrupted.", 130, prefix="")
    except OSError as exc:  # disk full, read-only file system, ...: files already written are intact
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", 2 if exc.errno in PATH_ERRNOS else 1)
    except Exception as exc:  # a bug: still one line, with the way to the whole story
        if os.environ.get("DCGAN_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {first_line(exc)}); DCGAN_DEBUG=1 shows the traceback. "
              "Please report it.", 1)


def _fail(message: str, code: int, prefix: str = "Error: ") -> None:
    """Print ``message`` as one line (a newline in a value the user gave shows as \\n) and exit."""
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")
    click.echo(f"{prefix}{one_line}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

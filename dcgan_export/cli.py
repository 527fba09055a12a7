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


# --- export (dcgan_export/export.py, TensorFlow + tf2onnx) --------------------------------------


# --- sample (dcgan_export/runtime.py, onnxruntime only) -----------------------------------------


# --- eval (dcgan_export/evaluate.py, onnxruntime only) ------------------------------------------


# --- serve (dcgan_export/serve.py, onnxruntime + starlette) -------------------------------------


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


if __name__ == "__main__":
    main()

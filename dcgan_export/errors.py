"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class DcganError(ValueError):
    """Bad input or an unusable environment, explained in one line for the user.

    A ValueError, so programs embedding the runtime catch bad noise or a bad model file the
    usual way.

    ``exit_code`` is what the CLI exits with: 2 for bad input (click's convention for usage
    errors), 1 for a check that ran and failed (the export parity gate).
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type name if empty:
    library errors can span pages, and a DcganError must stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def require_training_extra(command: str) -> None:
    """The light install has no TensorFlow: say so before any work, not with a traceback after."""
    from importlib.util import find_spec

    missing = [m for m in ("tensorflow", "keras", "tf2onnx", "onnx") if find_spec(m) is None]
    if missing:
        raise DcganError(f"dcgan {command} needs the [train] extra ({', '.join(missing)} not installed): "
                         "pip install 'dcgan[train]'")


class ModelOutputError(DcganError):
    """The model ran but its output is unusable (NaN or infinite values): a broken model, not bad
    input, so the CLI exits 1 and ``dcgan serve`` answers 500."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=1)

"""The ranges of every integer a user can pass, in one place: the CLI's option types and the
library's checks both read them, so a value click accepts is one numpy, TensorFlow and
onnxruntime can take too (they use fixed-width integers; Python's have no bound).
"""

from __future__ import annotations

from .errors import DcganError

# Sampling seeds are mixed into numpy SeedSequences, which take any non-negative integer; int64's
# range keeps them exact in JSON, in the HTTP API and in other languages.
MAX_SEED = 2**63 - 1
# Training seeds also seed numpy's legacy generator (keras.utils.set_random_seed): 32 bits.
MAX_TRAINING_SEED = 2**32 - 1
# onnxruntime takes a C int; past a few hundred, threads only contend.
MAX_THREADS = 1024
MAX_LATENT_DIM = 4096
MAX_ITERATIONS = 10**9  # generator updates: months of training on any machine
MAX_EPOCHS = 10**6
MAX_EVAL_SAMPLES = 1_000_000  # dcgan eval keeps ~600 bytes per image: at most ~0.6 GB
MAX_BATCH_SIZE = 2**16  # images per update; larger ones exceed any small-image data set here
MAX_PROCESSES = 4096  # processes of one multi-process run: far past any cluster this trainer is for


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or a one-line DcganError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            raise DcganError(f"{name} must be an integer, got {value!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high:,}" if high is not None else f">= {low}"
        raise DcganError(f"{name} must be {bound}, got {value}")
    return value

"""A one-line counter for long sampling and scoring on a terminal; silent when stderr is a file
or a pipe, so logs and scripts see only the result."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator


def counted(batches: Iterable, total: int, label: str, stream=None, min_interval: float = 0.2) -> Iterator:
    """Yield ``batches`` unchanged, redrawing "label done/total" on ``stream`` (stderr) as they pass."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield from batches
        return
    done, last = 0, 0.0
    for batch in batches:
        yield batch
        done += len(batch)
        now = time.monotonic()
        if now - last >= min_interval or done >= total:
            stream.write(f"\r{label} {done:,}/{total:,}")
            stream.flush()
            last = now
    stream.write("\r\033[K")  # erase the counter: the result line follows on a clean line
    stream.flush()

"""The classes of a class-conditional generator: names, indices, and one-line errors for bad ones.

A conditional generator takes ``labels`` int64 [N] beside its noise; what each index means comes
from its ``class_names`` metadata (``dcgan export`` always writes it), so a class can be given by
name ("dog", "7") as well as by index. Kept apart from the Sampler so that the CLI, the service
and embedding programs resolve classes by the same rules.
"""

from __future__ import annotations

import json
import re

import numpy as np

from .contract import LABELS_INPUT, Meta
from .errors import DcganError

SHOWN_NAMES = 8  # names listed in an error before "..."
_DECIMAL = re.compile(r"[0-9]+")


class Classes:
    """K named classes, indexed 0 .. K-1.

    One class is an int (or numpy integer) index or a str: a class name, or failing that a
    decimal index ("7"), so a command line's text needs no parsing of its own. bool and float
    are refused, even 3.0: a float label is almost always a mix-up with the noise.
    """

    def __init__(self, names):
        self.names: tuple[str, ...] = tuple(names)
        if not self.names:
            raise ValueError("no classes")
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self._index.setdefault(name, i)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], what: str) -> "Classes":
        """The classes a conditional model's metadata names, or a one-line DcganError: without
        its class_names a model's labels could be checked against nothing."""
        raw = metadata.get(Meta.CLASS_NAMES)
        try:
            names = json.loads(raw) if raw is not None else None
        except ValueError:
            names = None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            found = "none" if raw is None else f"{raw[:60]!r}"
            raise DcganError(f"{what}: a class-conditional generator (input {LABELS_INPUT!r}) needs {Meta.CLASS_NAMES} "
                             f"metadata, a JSON list of its class names (dcgan export writes it); found {found}")
        return cls(names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Classes({self.listing()})"

    def listing(self) -> str:
        """The classes as an error shows them: "0-9: '0', '1', ..., '9'", the names cut short."""
        shown = ", ".join(repr(name[:30]) for name in self.names[:SHOWN_NAMES])
        more = f", ... ({len(self)} in all)" if len(self) > SHOWN_NAMES else ""
        return f"0-{len(self) - 1}: {shown}{more}"

    def index(self, label) -> int:
        """One class as its index, or a one-line DcganError."""
        if isinstance(label, np.ndarray) and label.ndim == 0:
            label = label.item()
        if isinstance(label, (str, np.str_)):
            label = str(label)
            if label in self._index:
                return self._index[label]
            if not _DECIMAL.fullmatch(label):
                raise DcganError(f"unknown class {label[:40]!r}: this model's classes are {self.listing()}")
            label = int(label)
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            raise DcganError(f"a class is an index or a class name, got {_show(label)} ({type(label).__name__}); "
                             f"this model's classes are {self.listing()}")
        if not 0 <= label < len(self):
            raise DcganError(f"class {int(label)} is out of range: this model's classes are {self.listing()}")
        return int(label)

    def resolve(self, labels, n: int) -> np.ndarray:
        """int64 [n]: one class for every image (an index or a name), or a sequence of exactly n
        (no broadcasting of a length-1 list: a short list is more likely a mistake)."""
        if not is_sequence(labels):
            return np.full(n, self.index(labels), np.int64)
        arr = labels if isinstance(labels, np.ndarray) else None
        if arr is not None and arr.ndim != 1:
            raise DcganError(f"labels must be one class or a list of n classes, got an array of shape {arr.shape}")
        if len(labels) != n:
            raise DcganError(f"labels must give one class per image: got {len(labels)} for {n} images")
        if arr is not None and np.issubdtype(arr.dtype, np.integer):  # fast path: no per-item Python
            bad = (arr < 0) | (arr >= len(self))
            if bad.any():
                self.index(arr[bad][0])  # raises, naming the first bad one
            return arr.astype(np.int64)
        return np.fromiter((self.index(label) for label in labels), np.int64, count=n)

    def weights(self, weights, n: int) -> np.ndarray:
        """float32 [n, K] class weights: one row [K] for every image or one per image [n, K], each
        finite, non-negative and summing to 1 (to within 1e-4), or a one-line DcganError."""
        try:
            arr = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise DcganError(f"class weights must be numbers, [K] or [n, K], got {_show(weights)}") from None
        k = len(self)
        if arr.ndim == 1 and arr.shape == (k,):
            arr = np.broadcast_to(arr, (n, k))
        if arr.shape != (n, k):
            raise DcganError(f"class weights must be [{k}] (for every image) or [{n}, {k}] (one row per image), "
                             f"got shape {list(arr.shape)}")
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise DcganError("class weights must be finite and non-negative")
        sums = arr.sum(axis=1)
        bad = np.abs(sums - 1) > 1e-4
        if bad.any():
            raise DcganError(f"each row of class weights must sum to 1: row {int(np.argmax(bad))} sums to "
                             f"{float(sums[bad][0]):.6g}")
        return arr.astype(np.float32)

    def cycle(self, n: int, start: int = 0) -> np.ndarray:
        """The classes of images start .. start+n-1 when none is chosen: image i is class i % K."""
        return (np.arange(start, start + n, dtype=np.int64)) % len(self)


def is_sequence(labels) -> bool:
    """A list of classes rather than one (a str is one: a name)."""
    if isinstance(labels, np.ndarray):
        return labels.ndim > 0
    return isinstance(labels, (list, tuple, range))


def _show(value) -> str:
    return repr(value)[:40]

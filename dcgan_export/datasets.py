"""Training and evaluation images: the embedded mnist-8k, full MNIST, Fashion-MNIST, or a path.

Numpy only (no TensorFlow), so ``dcgan eval`` can read the held-out digits in the light install.
Every loader returns uint8 images of shape (n, 28, 28) plus a name and sha256 for provenance.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DcganError

IMAGES_IDX = "train-images-idx3-ubyte"
LABELS_IDX = "train-labels-idx1-ubyte"
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

MNIST_8K_TRAIN = 7000  # images [0, 7000) train; [7000, 8000) are held out for evaluation
MNIST_CACHE = Path("~/.keras/datasets/mnist.npz").expanduser()
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("mnist-8k", "mnist", "fashion-mnist")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # uint8 (n, 28, 28)
    labels: np.ndarray | None
    sha256: str  # of the file the images came from

    def __len__(self) -> int:
        return len(self.images)


def load(spec: str, split: str = "train") -> Dataset:
    """Load a data set by name (``mnist-8k``, ``mnist``, ``fashion-mnist``) or by path.

    ``split`` is ``train`` or ``heldout``; only mnist-8k has a held-out part here.
    """
    if spec == "mnist-8k":
        return _mnist_8k(split)
    if split != "train":
        raise DcganError(f"only mnist-8k has a held-out split, not {spec!r}")
    if spec == "mnist":
        return _keras_mnist()
    if spec == "fashion-mnist":
        return _fashion_mnist()
    path = Path(spec).expanduser()
    if not path.exists():
        if os.sep not in spec and "." not in spec:
            raise DcganError(
                f"unknown data set {spec!r}: use one of {', '.join(NAMES)}, "
                "a directory with train-images-idx3-ubyte[.gz], or an .npz with x_train"
            )
        raise DcganError(f"data path not found: {path}")
    if path.is_dir():
        return _idx_dir(path, name=str(path))
    if path.suffix == ".npz":
        return _npz(path)
    raise DcganError(f"{path}: expected a directory of IDX files or an .npz with x_train")


def embedded_dir() -> Path:
    return Path(str(resources.files("dcgan_export.data") / "mnist-8k"))


def _mnist_8k(split: str) -> Dataset:
    ds = _idx_dir(embedded_dir(), name="mnist-8k")
    if split == "train":
        sl = slice(0, MNIST_8K_TRAIN)
    elif split == "heldout":
        sl = slice(MNIST_8K_TRAIN, None)
    else:
        raise DcganError(f"unknown split {split!r}: use train or heldout")
    labels = None if ds.labels is None else ds.labels[sl]
    return Dataset(f"mnist-8k/{split}", ds.images[sl], labels, ds.sha256)


def _keras_mnist() -> Dataset:
    if MNIST_CACHE.exists():
        return dataclasses.replace(_npz(MNIST_CACHE), name="mnist")
    try:
        # Only this branch, reached from `dcgan train`, imports keras: it knows the download URL
        # and checksum, and where its cache goes ($KERAS_HOME, or /tmp when home is read-only).
        import keras

        (images, labels), _ = keras.datasets.mnist.load_data()
    except Exception as exc:  # no internet, no keras: both end the same way for the user
        raise DcganError(
            f"cannot load full MNIST: {MNIST_CACHE} is missing and could not be downloaded "
            f"({type(exc).__name__}); put mnist.npz there, or use --data mnist-8k, "
            "--data fashion-mnist or --data PATH"
        ) from None
    images = _check_images(np.asarray(images), Path("mnist"))
    return Dataset("mnist", images, np.asarray(labels), hashlib.sha256(images.tobytes()).hexdigest())


def _fashion_mnist() -> Dataset:
    if _find_idx(FASHION_DIR, IMAGES_IDX) is None:
        raise DcganError(
            f"Fashion-MNIST not found under {FASHION_DIR}: "
            "install it with 'apt-get update && apt-get install -y dataset-fashion-mnist'"
        )
    return dataclasses.replace(_idx_dir(FASHION_DIR, name="fashion-mnist"), name="fashion-mnist")


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_dir(directory: Path, name: str) -> Dataset:
    images_path = _find_idx(directory, IMAGES_IDX)
    if images_path is None:
        raise DcganError(f"{directory}: no {IMAGES_IDX} or {IMAGES_IDX}.gz in it")
    raw = images_path.read_bytes()
    images = read_idx(_gunzip(raw, images_path), IDX_IMAGES_MAGIC, images_path)
    labels = None
    labels_path = _find_idx(directory, LABELS_IDX)
    if labels_path is not None:
        labels = read_idx(_gunzip(labels_path.read_bytes(), labels_path), IDX_LABELS_MAGIC, labels_path)
        if len(labels) != len(images):
            raise DcganError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return Dataset(name, _check_images(images, images_path), labels, hashlib.sha256(raw).hexdigest())


def _gunzip(raw: bytes, path: Path) -> bytes:
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DcganError(f"{path}: not a valid gzip file ({exc})") from None


def read_idx(data: bytes, magic: int, path: Path | str = "<bytes>") -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one uint32 per dimension) of uint8."""
    if len(data) < 8:
        raise DcganError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DcganError(f"{path}: wrong IDX magic number {found}, expected {magic}")
    ndim = found & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DcganError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header < expected:
        raise DcganError(
            f"{path}: truncated IDX file: header promises {expected} bytes of data, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def _npz(path: Path) -> Dataset:
    raw = path.read_bytes()
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x_train" not in archive.files:
                raise DcganError(f"{path}: no x_train array in it (found: {', '.join(archive.files) or 'none'})")
            images = archive["x_train"]
            labels = archive["y_train"] if "y_train" in archive.files else None
    except DcganError:
        raise
    except Exception as exc:
        raise DcganError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return Dataset(str(path), _check_images(images, path), labels, hashlib.sha256(raw).hexdigest())


def _check_images(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DcganError(f"{path}: expected images of shape (n, 28, 28), found {images.shape}")
    if len(images) == 0:
        raise DcganError(f"{path}: contains no images")
    if images.dtype != np.uint8:
        if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
            raise DcganError(f"{path}: expected numeric pixels, found {images.dtype}")
        if not np.isfinite(images).all():
            raise DcganError(f"{path}: contains NaN or infinite pixels")
        low, high = float(images.min()), float(images.max())
        if np.issubdtype(images.dtype, np.floating) and high <= 1.0 and low >= 0.0:
            images = np.rint(images * 255.0)  # pixels stored in [0, 1]
        elif low < 0 or high > 255 or not np.array_equal(images, np.rint(images)):
            raise DcganError(f"{path}: expected pixels in 0..255 (or floats in [0, 1]), "
                             f"found {images.dtype} in [{low:g}, {high:g}]")
        images = images.astype(np.uint8)
    return images

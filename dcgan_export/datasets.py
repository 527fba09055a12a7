"""Training and evaluation images: the embedded mnist-8k, full MNIST, Fashion-MNIST, or a path
(a folder of images, a directory of IDX files, an .npz).

Numpy and Pillow only (no TensorFlow), so ``dcgan eval`` can read the held-out digits in the light
install. Every loader returns uint8 images, [n, S, S] (grey) or [n, S, S, 3], plus a name and a
sha256 for provenance, and labels with their class names where the data has them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .contract import IMAGE_SIZES, luma
from .errors import DcganError, first_line
from .paths import file_sha256

IMAGES_IDX = "train-images-idx3-ubyte"
LABELS_IDX = "train-labels-idx1-ubyte"
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

MNIST_8K_TRAIN = 7000  # images [0, 7000) train; [7000, 8000) are held out for evaluation
MNIST_CACHE = Path("~/.keras/datasets/mnist.npz").expanduser()
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("mnist-8k", "mnist", "fashion-mnist")
MAX_IDX_BYTES = 2**31  # 2 GiB of pixels: 2.7 million 28x28 images
READ_CHUNK = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # uint8 [n, S, S] (grey) or [n, S, S, 3]
    labels: np.ndarray | None
    sha256: str  # of the file the images came from (of the decoded pixels, for a folder)
    class_names: tuple[str, ...] | None = None  # what label i means, where the data says

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(S, S, C) of one image, as the networks see it."""
        return (*self.images.shape[1:3], 1 if self.images.ndim == 3 else self.images.shape[3])


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """How to turn the data into training images: for a folder, the size, channels, background
    and bad-file policy; for arrays (named sets, IDX, .npz), a size and channel count to check
    and convert to."""

    image_size: int | None = None  # None: a folder's default, DEFAULT_FOLDER_SIZE; arrays keep theirs
    channels: int | None = None  # None: 1 if every image is grey, else 3
    background: tuple[int, int, int] = (0, 0, 0)
    skip_bad: bool = False
    echo: Callable[[str], None] | None = None  # progress lines (decoding, the cache)
    dry_run: bool = False  # write nothing: no download (a set not on disk is an error), no cache


DEFAULT_FOLDER_SIZE = 64


def load(spec: str, split: str = "train", options: ImageOptions | None = None) -> Dataset:
    """Load a data set by name (``mnist-8k``, ``mnist``, ``fashion-mnist``) or by path.

    ``split`` is ``train`` or ``heldout``; only mnist-8k has a held-out part here.
    """
    options = options or ImageOptions()
    if spec == "mnist-8k":
        return _conform(_mnist_8k(split), options)
    if split != "train":
        raise DcganError(f"only mnist-8k has a held-out split, not {spec!r}")
    if spec == "mnist":
        return _conform(_keras_mnist(download=not options.dry_run), options)
    if spec == "fashion-mnist":
        return _conform(_fashion_mnist(), options)
    path = Path(spec).expanduser()
    if not path.exists():
        if os.sep not in spec and "." not in spec:
            raise DcganError(
                f"unknown data set {spec!r}: use one of {', '.join(NAMES)}, a folder of images, "
                "a directory with train-images-idx3-ubyte[.gz], or an .npz with x_train"
            )
        raise DcganError(f"data path not found: {path}")
    if path.is_dir():
        if _find_idx(path, IMAGES_IDX) is not None:
            return _conform(_idx_dir(path, name=str(path)), options)
        return _folder(path, options)
    if path.suffix == ".npz":
        return _conform(_npz(path), options)
    raise DcganError(f"{path}: expected a folder of images, a directory of IDX files or an .npz with x_train")


def _folder(path: Path, options: ImageOptions) -> Dataset:
    from .image_folder import load_folder

    data = load_folder(path, options.image_size or DEFAULT_FOLDER_SIZE, options.channels, options.background,
                       options.skip_bad, echo=options.echo, write_cache=not options.dry_run)
    return Dataset(str(path), data.images, data.labels, data.sha256, data.class_names)


def _conform(data: Dataset, options: ImageOptions) -> Dataset:
    """Arrays as asked: the size must be theirs (only folders are resized); channels convert."""
    size, _, channels = data.image_shape
    if options.image_size is not None and options.image_size != size:
        raise DcganError(f"{data.name} holds {size}x{size} images: --image-size {options.image_size} applies "
                         "to folders of images only")
    if options.channels is None or options.channels == channels:
        return data
    if options.channels == 3:
        images = np.repeat(data.images[..., None], 3, axis=-1)
    else:
        images = luma(data.images)
    return dataclasses.replace(data, images=images)


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


def _keras_mnist(download: bool = True) -> Dataset:
    if MNIST_CACHE.exists():
        return dataclasses.replace(_npz(MNIST_CACHE), name="mnist")
    if not download:
        raise DcganError(f"full MNIST is not downloaded yet ({MNIST_CACHE} is missing), and a dry run downloads "
                         "nothing: run without --dry-run, or put mnist.npz there")
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
    images = read_idx_file(images_path, IDX_IMAGES_MAGIC)
    labels = None
    labels_path = _find_idx(directory, LABELS_IDX)
    if labels_path is not None:
        labels = read_idx_file(labels_path, IDX_LABELS_MAGIC)
        if len(labels) != len(images):
            raise DcganError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return Dataset(name, _check_images(images, images_path), labels, file_sha256(images_path))



def read_idx_file(path: Path, magic: int) -> np.ndarray:
    """An IDX file, plain or gzipped, read as a stream: nothing larger than what its (checked)
    header promises, and what actually arrives, is ever allocated, so a lying header or a gzip
    bomb costs nothing."""
    with open(path, "rb") as raw:  # an OSError here is about the file, not its format
        if path.suffix != ".gz":
            return read_idx(raw, magic, path, available=os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw) as stream:
                return read_idx(stream, magic, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DcganError(f"{path}: not a valid gzip file ({first_line(exc)})") from None


def read_idx(data: bytes | BinaryIO, magic: int, path: Path | str = "<bytes>", available: int | None = None) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one uint32 per dimension) of uint8.

    The data must be exactly as long as the header's dimensions multiply to (with Python
    integers, which cannot wrap), and at most MAX_IDX_BYTES. ``available``: the file's size,
    where known, checked before any data is read; otherwise the data is read in chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        available = len(data)
        data = io.BytesIO(data)
    stream = data
    head = stream.read(4)
    if len(head) < 4:
        raise DcganError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
    (found,) = struct.unpack(">I", head)
    if found != magic:
        raise DcganError(f"{path}: wrong IDX magic number {found}, expected {magic}")
    ndim = found & 0xFF
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DcganError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", dims)
    expected = math.prod(shape)
    promise = f"header promises {' x '.join(map(str, shape))} = {expected:,} bytes of data"
    if expected > MAX_IDX_BYTES:
        raise DcganError(f"{path}: {promise}, more than the {MAX_IDX_BYTES:,} this loader takes")
    if available is not None and available - 4 - 4 * ndim != expected:
        found_bytes = available - 4 - 4 * ndim
        what = "truncated IDX file" if found_bytes < expected else "IDX file longer than its header says"
        raise DcganError(f"{path}: {what}: {promise}, found {found_bytes:,}")
    body = bytearray()
    while len(body) < expected:  # in chunks: memory follows the data that arrives, not the promise
        chunk = stream.read(min(READ_CHUNK, expected - len(body)))
        if not chunk:
            raise DcganError(f"{path}: truncated IDX file: {promise}, found {len(body):,}")
        body += chunk
    if stream.read(1):
        raise DcganError(f"{path}: IDX file longer than its header says: {promise}, found more")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


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
    square = images.ndim in (3, 4) and images.shape[1] == images.shape[2] and images.shape[1] in IMAGE_SIZES
    if not square or (images.ndim == 4 and images.shape[-1] != 3):
        raise DcganError(f"{path}: expected images of shape (n, S, S) or (n, S, S, 3) with S one of "
                         f"{', '.join(map(str, IMAGE_SIZES))}; found {images.shape}")
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


# -- the train / held-out split a classifier is trained and judged on ------------------------------

HELDOUT_FRACTION = 0.1
HELDOUT_SEED = 0


def labelled_splits(spec: str, options: ImageOptions | None = None) -> tuple[Dataset, Dataset]:
    """(train, held out) of a labelled data set: mnist-8k's own 7,000 / 1,000; any other, a fixed
    random tenth held out (seeded, so ``dcgan classifier`` and ``dcgan eval`` draw the same one)."""
    if spec == "mnist-8k":
        return load(spec, "train", options), load(spec, "heldout", options)
    data = load(spec, "train", options)
    if data.labels is None:
        raise DcganError(f"{data.name} has no labels: a classifier needs class sub-folders (or y_train, or "
                         "IDX labels)")
    classes = np.unique(data.labels)
    if len(classes) < 2 or len(data) < 20:
        raise DcganError(f"{data.name}: a classifier needs at least 2 classes and 20 images, found "
                         f"{len(classes)} and {len(data)}")
    order = np.random.default_rng(HELDOUT_SEED).permutation(len(data))
    cut = max(1, int(round(len(data) * HELDOUT_FRACTION)))
    held, kept = np.sort(order[:cut]), np.sort(order[cut:])

    def part(index, split: str) -> Dataset:
        return dataclasses.replace(data, name=f"{data.name}/{split}", images=data.images[index],
                                   labels=data.labels[index])

    return part(kept, "train"), part(held, "heldout")

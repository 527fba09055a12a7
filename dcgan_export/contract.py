"""The ONNX contract: what an exported generator and the shipped classifier take and give.

Export writes models that keep it; the runtime, ``dcgan serve``, ``dcgan eval``, the trainer's
previews and the examples read them through it. numpy only: importing this loads neither
TensorFlow nor onnxruntime.

Generator (H = W, one of IMAGE_SIZES; C = 1 or 3; the shipped digit models are 28 x 28 x 1)::

    input   z       float32 [N, latent]      standard normal noise
    input   labels  int64   [N]              class-conditional models only: each image's class,
                                             0 .. K-1, named by the metadata's class_names
    output  images  float32 [N, H, W, C]     NHWC, in [-1, 1]
    output  pixels  uint8   [N, H, W]        to_pixels(images), for C = 1
                    uint8   [N, H, W, 3]     for C = 3

Classifier (``dcgan eval``; the shipped one is for digits: 28 x 28 x 1, K = 10)::

    input   images    float32 [N, H, W, C] in [-1, 1]
    output  logits    float32 [N, K]
    output  features  float32 [N, D]
"""

from __future__ import annotations

import numpy as np

from .errors import DcganError

# -- the generator -------------------------------------------------------------------------------

LATENT_INPUT = "z"
LABELS_INPUT = "labels"  # conditional generators only (dcgan train --conditional)
# Not in the file: the input the Sampler's in-memory rewrite for blends of classes adds (class_blend.py)
CLASS_OFFSETS_INPUT = "class_offsets"
IMAGES_OUTPUT = "images"
PIXELS_OUTPUT = "pixels"
BATCH_DIM = "N"
IMAGE_SHAPE = (28, 28, 1)  # height, width, channels


# Sizes the networks can make: a base grid of 5 to 8 doubled one or more times (28 = 7 x 2 x 2).
BASE_GRIDS = (5, 6, 7, 8)
IMAGE_SIZES = tuple(sorted(b * 2**k for b in BASE_GRIDS for k in range(1, 5) if 16 <= b * 2**k <= 128))


def base_grid(size: int) -> tuple[int, int]:
    """(base grid, number of doublings) of an image size in IMAGE_SIZES: 28 -> (7, 2), 64 -> (8, 3)."""
    check_image_size(size)
    doublings = 1
    while size // 2**doublings not in BASE_GRIDS or size % 2**doublings:
        doublings += 1
    return size // 2**doublings, doublings


def check_image_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size not in IMAGE_SIZES:
        raise DcganError(f"--image-size must be one the networks can make, from 16 to 128: "
                         f"{', '.join(map(str, IMAGE_SIZES))}; got {size}")
    return size


def to_pixels(images: np.ndarray) -> np.ndarray:
    """float images in [-1, 1] [n, h, w, C] -> uint8: [n, h, w] for C = 1, [n, h, w, C] otherwise;
    round((x + 1) * 127.5), clipped.

    Rounds half to even (numpy.rint, ONNX Round, tf.round), so every implementation agrees.
    """
    images = np.asarray(images)
    if images.shape[-1] == 1:
        images = images[..., 0]
    scaled = np.rint((images + 1.0) * 127.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def to_images(pixels: np.ndarray) -> np.ndarray:
    """uint8 [n, h, w] or [n, h, w, C] -> float32 [n, h, w, C] in [-1, 1]: (p - 127.5) / 127.5,
    the inverse of ``to_pixels``, so real images and samples reach a network scaled identically."""
    scaled = (np.asarray(pixels, dtype=np.float32) - 127.5) / 127.5
    return scaled[..., None] if scaled.ndim == 3 else scaled


def split_class_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class weights float [n, K] -> (``labels`` int64 [n], ``class_offsets`` float32 [n, K]): the
    largest weight's class, and what to add to its one-hot. A one-hot row gives zero offsets, so
    it runs exactly as its label alone."""
    weights = np.asarray(weights, np.float32)
    labels = np.argmax(weights, axis=1).astype(np.int64)
    offsets = weights.copy()
    offsets[np.arange(len(weights)), labels] -= 1
    return labels, offsets


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] -> uint8 grey [...]: ITU-R 601 luma, rounded as Pillow's convert("L")
    does, so a folder's images and converted arrays turn grey alike."""
    weights = np.asarray([299, 587, 114], dtype=np.uint32)
    return ((np.asarray(rgb).astype(np.uint32) @ weights + 500) // 1000).astype(np.uint8)


class Meta:
    """Keys of the metadata (``metadata_props``) that ``dcgan export`` writes into a generator."""

    LATENT_DIM = "latent_dim"
    IMAGE_SIZE = "image_size"
    CHANNELS = "channels"
    CLASS_NAMES = "class_names"  # JSON list, for a model trained on labelled data
    DATASET = "dataset"
    DATASET_SHA256 = "dataset_sha256"
    TRAINING_ITERATIONS = "training_iterations"
    SOURCE_FILE = "source_file"
    SOURCE_SHA256 = "source_sha256"
    DCGAN_VERSION = "dcgan_version"
    OPTIMIZED = "optimized"
    GRAPH = "graph"
    PARITY_MAX_ABS_DIFF = "parity_max_abs_diff"

    UNKNOWN = "unknown"  # the value of a record export could not find


# Data sets whose images are handwritten digits: what the shipped classifier can judge.
DIGIT_DATASETS = ("mnist-8k/train", "mnist-8k", "mnist")

# -- the classifier ------------------------------------------------------------------------------

CLASSIFIER_INPUT = "images"
CLASSIFIER_LOGITS = "logits"
CLASSIFIER_FEATURES = "features"
NUM_CLASSES = 10  # the shipped digit classifier's; one trained on other data has its own
# Metadata key of a classifier trained on other data than mnist-8k: JSON {"spec", "image_size",
# "channels", "background"}, so dcgan eval draws the same held-out split it was judged on.
CLASSIFIER_REFERENCE = "reference_data"

# -- arrays crossing the contract ------------------------------------------------------------------


def check_float_array(value, what: str, trailing: tuple[int, ...]) -> np.ndarray:
    """``value`` as a C-contiguous, finite float32 array of shape [n >= 1, *trailing], or a
    one-line DcganError (a ValueError) that says what was expected and what came."""
    expected = f"(n, {', '.join(map(str, trailing))}) with n >= 1"
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise DcganError(f"{what} must be a numeric array of shape {expected}: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DcganError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 1 + len(trailing) or arr.shape[0] < 1 or tuple(arr.shape[1:]) != tuple(trailing):
        raise DcganError(f"{what} must have shape {expected}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise DcganError(f"{what} contains NaN or infinite values")
    return arr

"""The parity gate: the exported ONNX model against the original Keras generator, before any write.

At least 1,024 seeded noise vectors plus edge cases (zeros, norm 10), at batch sizes 1 and 257 (so
a batch-dependent bug shows), compared with Keras at ``training=False``; both the float images and
the uint8 ``pixels`` output are checked. A class-conditional generator gets vector i as class
i mod K: every class, at both batch sizes.
"""

from __future__ import annotations

import numpy as np

from .errors import DcganError
from .inference_graph import check_generator, generator_classes
from .contract import IMAGES_OUTPUT, LABELS_INPUT, LATENT_INPUT, PIXELS_OUTPUT, to_pixels

PARITY_SEED = 20240611
PARITY_VECTORS = 1024
PARITY_BATCH_SIZES = (1, 257)
EDGE_NORM = 10.0


def parity_noise(latent_dim: int) -> np.ndarray:
    """PARITY_VECTORS seeded standard-normal vectors, then the zero vector and one of norm 10."""
    rng = np.random.default_rng(PARITY_SEED)
    z = rng.standard_normal((PARITY_VECTORS, latent_dim)).astype(np.float32)
    direction = rng.standard_normal(latent_dim)
    edge = np.stack([np.zeros(latent_dim), direction * (EDGE_NORM / np.linalg.norm(direction))])
    return np.concatenate([z, edge.astype(np.float32)])


def parity_check(model_bytes: bytes, keras_generator, atol: float) -> dict:
    """Run the ONNX model in onnxruntime and the Keras generator (training=False) on the same noise."""
    latent_dim = check_generator(keras_generator)
    classes = generator_classes(keras_generator)
    z = parity_noise(latent_dim)
    labels = np.arange(len(z), dtype=np.int64) % classes if classes else None

    def feeds(i: int, j: int) -> dict:
        return {LATENT_INPUT: z[i:j], **({LABELS_INPUT: labels[i:j]} if classes else {})}

    def keras_images(i: int, j: int) -> np.ndarray:
        inputs = z[i:j] if not classes else [z[i:j], labels[i:j].astype(np.int32)]
        return np.asarray(keras_generator(inputs, training=False), np.float32)

    reference = np.concatenate([keras_images(i, i + 257) for i in range(0, len(z), 257)])
    # max() skips NaN, so a broken reference (NaN weights) would otherwise compare as "equal"
    reference_finite = bool(np.isfinite(reference).all())
    from .runtime import open_session  # onnxruntime loads only when the gate runs

    session = open_session(model_bytes, label="exported model")
    max_diff = 0.0
    sum_diff = 0.0
    pixels_differing = 0
    pixels_inconsistent = 0
    finite = True
    with np.errstate(invalid="ignore"):  # NaN images cast to junk pixels: reported below, not warned
        reference_pixels = to_pixels(reference)
        for batch_size in PARITY_BATCH_SIZES:
            for i in range(0, len(z), batch_size):
                images, pixels = session.run([IMAGES_OUTPUT, PIXELS_OUTPUT], feeds(i, i + batch_size))
                if images.shape != reference[i:i + batch_size].shape or pixels.dtype != np.uint8:
                    raise DcganError(f"exported model returned images {images.shape} / pixels {pixels.dtype}, "
                                     f"expected {reference[i:i + batch_size].shape} / uint8")
                finite = finite and bool(np.isfinite(images).all())
                diff = np.abs(images.astype(np.float64) - reference[i:i + batch_size])
                max_diff = max(max_diff, float(diff.max()))
                sum_diff += float(diff.sum())
                pixels_differing += int((pixels != reference_pixels[i:i + batch_size]).sum())
                pixels_inconsistent += int((pixels != to_pixels(images)).sum())
    runs = len(PARITY_BATCH_SIZES)
    mean_diff = sum_diff / (runs * reference.size)
    return {
        "vectors": len(z),
        "batch_sizes": list(PARITY_BATCH_SIZES),
        "max_abs_diff": max_diff if finite and reference_finite else float("inf"),
        "mean_abs_diff": mean_diff,
        "pixels_differing": pixels_differing,
        "pixels_compared": runs * reference_pixels.size,
        "pixels_output_mismatches": pixels_inconsistent,
        "atol": atol,
        "reference_finite": reference_finite,
        "passed": reference_finite and finite and max_diff <= atol and pixels_inconsistent == 0,
    }

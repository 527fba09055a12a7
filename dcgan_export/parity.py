"""The parity gate: the exported ONNX model against the original Keras generator, before any write.

At least 1,024 seeded noise vectors plus edge cases (zeros, norm 10), at batch sizes 1 and 257 (so
a batch-dependent bug shows), compared with Keras at ``training=False``; both the float images and
the uint8 ``pixels`` output are checked. A class-conditional generator gets vector i as class
i mod K: every class, at both batch sizes; and blends of two classes through the graph the
Sampler makes for them (``class_blend.py``), against the Keras trunk fed the blended vector.
"""

from __future__ import annotations

import numpy as np

from .errors import DcganError
from .inference_graph import check_generator, generator_classes
from .contract import (CLASS_OFFSETS_INPUT, IMAGES_OUTPUT, LABELS_INPUT, LATENT_INPUT, PIXELS_OUTPUT,
                       split_class_weights, to_pixels)

PARITY_SEED = 20240611
PARITY_VECTORS = 1024
PARITY_BATCH_SIZES = (1, 257)
EDGE_NORM = 10.0
BLEND_VECTORS = 257  # conditional models: blends of two classes, besides the 1,026 vectors


def parity_noise(latent_dim: int) -> np.ndarray:
    """PARITY_VECTORS seeded standard-normal vectors, then the zero vector and one of norm 10."""
    rng = np.random.default_rng(PARITY_SEED)
    z = rng.standard_normal((PARITY_VECTORS, latent_dim)).astype(np.float32)
    direction = rng.standard_normal(latent_dim)
    edge = np.stack([np.zeros(latent_dim), direction * (EDGE_NORM / np.linalg.norm(direction))])
    return np.concatenate([z, edge.astype(np.float32)])


def class_blends(n: int, classes: int) -> np.ndarray:
    """Class weights [n, K] for the parity gate: vector i between classes i mod K and (i + 1) mod K,
    a fraction (i mod 7 + 1) / 8 of the way."""
    i = np.arange(n)
    t = ((i % 7 + 1) / 8).astype(np.float32)
    weights = np.zeros((n, classes), np.float32)
    weights[i, i % classes] += 1 - t
    weights[i, (i + 1) % classes] += t
    return weights


def parity_check(model_bytes: bytes, keras_generator, atol: float) -> dict:
    """Run the ONNX model in onnxruntime and the Keras generator (training=False) on the same noise.

    A conditional generator is also given BLEND_VECTORS blends of two classes, in the graph
    ``class_blend`` makes of it, against its Keras trunk fed the blended class vector.
    """
    latent_dim = check_generator(keras_generator)
    classes = generator_classes(keras_generator)
    z = parity_noise(latent_dim)
    cases = [_Case({LATENT_INPUT: z})]
    if classes:
        labels = np.arange(len(z), dtype=np.int64) % classes
        cases[0] = _Case({LATENT_INPUT: z, LABELS_INPUT: labels}, [z, labels.astype(np.int32)])
        blend_z = z[:BLEND_VECTORS]
        weights = class_blends(BLEND_VECTORS, classes)
        blend_labels, offsets = split_class_weights(weights)
        trunk = keras_generator.get_layer("trunk")
        cases.append(_Case({LATENT_INPUT: blend_z, LABELS_INPUT: blend_labels, CLASS_OFFSETS_INPUT: offsets},
                           np.concatenate([blend_z, weights], axis=1), trunk, blend=True))
    for case in cases:
        case.reference = np.concatenate([
            np.asarray((keras_generator if case.model is None else case.model)(part, training=False), np.float32)
            for part in case.keras_batches()])
    # max() skips NaN, so a broken reference (NaN weights) would otherwise compare as "equal"
    reference_finite = all(bool(np.isfinite(case.reference).all()) for case in cases)
    from .runtime import open_session  # onnxruntime loads only when the gate runs

    session = open_session(model_bytes, label="exported model")
    if classes:
        from .class_blend import blend_model_bytes

        blend_session = open_session(blend_model_bytes(model_bytes, classes), label="exported model, blending classes")
    max_diff = 0.0
    sum_diff = 0.0
    pixels_differing = 0
    pixels_inconsistent = 0
    pixels_compared = 0
    finite = True
    with np.errstate(invalid="ignore"):  # NaN images cast to junk pixels: reported below, not warned
        for case in cases:
            reference = case.reference
            reference_pixels = to_pixels(reference)
            pixels_compared += len(PARITY_BATCH_SIZES) * reference_pixels.size
            for batch_size in PARITY_BATCH_SIZES:
                for i in range(0, len(reference), batch_size):
                    feeds = {name: value[i:i + batch_size] for name, value in case.feeds.items()}
                    runner = blend_session if case.blend else session
                    images, pixels = runner.run([IMAGES_OUTPUT, PIXELS_OUTPUT], feeds)
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
    compared = sum(case.reference.size for case in cases)
    return {
        "vectors": len(z),
        "blend_vectors": BLEND_VECTORS if classes else 0,
        "batch_sizes": list(PARITY_BATCH_SIZES),
        "max_abs_diff": max_diff if finite and reference_finite else float("inf"),
        "mean_abs_diff": sum_diff / (runs * compared),
        "pixels_differing": pixels_differing,
        "pixels_compared": pixels_compared,
        "pixels_output_mismatches": pixels_inconsistent,
        "atol": atol,
        "reference_finite": reference_finite,
        "passed": reference_finite and finite and max_diff <= atol and pixels_inconsistent == 0,
    }


class _Case:
    """One set of parity vectors: the ONNX feeds, and what Keras is called with (``keras_input``,
    default the noise; ``model``, default the whole generator) to give the reference."""

    def __init__(self, feeds: dict, keras_input=None, model=None, blend: bool = False):
        self.feeds = feeds
        self.blend = blend  # run on the graph rewritten for blends of classes
        self.keras_input = feeds[LATENT_INPUT] if keras_input is None else keras_input
        self.model = model
        self.reference: np.ndarray | None = None

    def keras_batches(self):
        """The Keras input in batches of 257 (a list of arrays is cut row-wise alike)."""
        rows = len(self.keras_input[0]) if isinstance(self.keras_input, list) else len(self.keras_input)
        for i in range(0, rows, 257):
            yield ([part[i:i + 257] for part in self.keras_input] if isinstance(self.keras_input, list)
                   else self.keras_input[i:i + 257])

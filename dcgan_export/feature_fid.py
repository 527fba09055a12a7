"""FID in the feature space of any model the user has, for generators of unlabelled data.

With no labels there is no classifier to train, so ``dcgan eval MODEL --features F.onnx --data
DATA`` measures samples with a feature extractor the user brings (an Inception network exported
to ONNX, a self-supervised encoder, ...) against the real images of DATA. The extractor takes
float32 [N, H, W, C] images in [-1, 1] of the generator's shape and its first output is the
features [N, D]. There are no class figures; the floor is the FID between two halves of the
real images. onnxruntime and numpy only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contract import to_images
from .errors import DcganError
from .evaluate import feature_statistics, frechet_distance
from .progress import counted
from .runtime import ModelInput, check_finite, open_session

MAX_REFERENCE = 10_000  # real images compared with: a fixed random subset of larger sets
BATCH = 256


class FeatureExtractor:
    """A user's ONNX feature model: images [N, H, W, C] in [-1, 1] -> its first output, [N, D]."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DcganError(f"--features {self.path}: no such file")
        self._session = open_session(self.path, threads)
        self._input = ModelInput(self._session, f"--features {self.path}")
        shape = self._input.shape[1:]
        output = self._session.get_outputs()[0]
        if len(shape) != 3 or not all(isinstance(d, int) for d in shape) or len(output.shape) != 2:
            raise DcganError(f"--features {self.path}: expected images [N, H, W, C] -> features [N, D], found "
                             f"{self._input.name}{self._input.shape} -> {output.name}{output.shape}")
        self.image_shape: tuple[int, int, int] = tuple(shape)
        self._output = output.name

    def features(self, images: np.ndarray) -> np.ndarray:
        parts = [self._input.run(self._session, [self._output], images[start:start + BATCH])[0]
                 for start in range(0, len(images), BATCH)]
        return check_finite(np.concatenate(parts).astype(np.float64), f"--features {self.path}")


def evaluate_with_features(model: str | os.PathLike | None, features_path: str | os.PathLike, data: str,
                           n: int = 10000, seed: int = 0, batch_size: int = 500, progress: bool = False) -> dict:
    """FID of ``n`` samples of ``model`` against ``data``'s real images, in ``features_path``'s space."""
    from . import datasets
    from .runtime import Sampler

    sampler = Sampler(model)
    extractor = FeatureExtractor(features_path)
    if extractor.image_shape != sampler.image_shape:
        raise DcganError(f"--features {extractor.path} takes {'x'.join(map(str, extractor.image_shape))} images; "
                         f"{sampler.model_path} makes {'x'.join(map(str, sampler.image_shape))}")
    size, _, channels = sampler.image_shape
    real = datasets.load(data, options=datasets.ImageOptions(size if Path(data).is_dir() else None, channels))
    if real.image_shape != sampler.image_shape:
        raise DcganError(f"--data {data} holds {'x'.join(map(str, real.image_shape))} images; {sampler.model_path} "
                         f"makes {'x'.join(map(str, sampler.image_shape))}")
    if len(real) < 4:
        raise DcganError(f"--data {data}: at least 4 real images are needed, found {len(real)}")
    pick = np.sort(np.random.default_rng(0).permutation(len(real))[:MAX_REFERENCE])
    reference = extractor.features(to_images(real.images[pick]))
    half = len(reference) // 2
    floor = frechet_distance(*feature_statistics(reference[:half]), *feature_statistics(reference[half:]))
    batches = sampler.iter_batches(n, seed=seed, batch_size=batch_size)
    generated = np.concatenate([extractor.features(batch) for batch in
                                (counted(batches, n, "scoring") if progress else batches)])
    return {
        "model": str(sampler.model_path),
        "features": str(extractor.path),
        "reference": f"{real.name} ({len(reference)} images)",
        "n": n,
        "seed": seed,
        "fid": frechet_distance(*feature_statistics(generated), *feature_statistics(reference)),
        "fid_floor": floor,
        "warnings": [],
    }


def format_report(report: dict) -> str:
    rows = [("model", report["model"]), ("features", report["features"]),
            ("samples", f"{report['n']} (seed {report['seed']}) vs {report['reference']}"),
            ("FID", f"{report['fid']:.3f}"), ("  floor (two halves of the real images)", f"{report['fid_floor']:.3f}")]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

"""Walks through the noise space: spherical interpolation between the noise of several seeds.

Image j of a walk over seeds s_0, s_1, ... moves from image j of seed s_0 to image j of s_1 and
on, along great circles (slerp, Shoemake 1985): standard normal noise lives near a sphere of
radius sqrt(latent), and a straight line between two points of it passes through the unlikely
low-norm middle. Frame f of each leg is at t = f / frames, the last leg ending on the last seed.

A walk of a conditional model may also go from class to class (``--class 3,8``): the class
vector moves along the straight line between the two one-hots, (1 - t) e_a + t e_b, not a great
circle: its weights then always sum to 1, a mix of two classes, where slerp's cos/sin weights
would sum to up to 1.41 midway, more class than the network ever saw (``class_blend.py``).
"""

from __future__ import annotations

import numpy as np

from .errors import DcganError
from .runtime import Sampler, resolve_seed

MAX_FRAMES = 1000


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The point a fraction ``t`` along the great circle from ``a`` to ``b`` (rows: vectors),
    with the norm interpolated linearly; a straight line where the two are (anti)parallel."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a64, axis=-1, keepdims=True), np.linalg.norm(b64, axis=-1, keepdims=True)
    cos = np.clip(np.sum(a64 * b64, axis=-1, keepdims=True) / np.maximum(na * nb, 1e-12), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    straight = sin < 1e-6
    safe = np.where(straight, 1.0, sin)
    along = np.where(straight, (1 - t) * a64 + t * b64,
                     (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / safe)
    return along.astype(np.float32)


def parse_seeds(text: str) -> list[int]:
    """``"3,7,12"`` -> [3, 7, 12]: at least two seeds, each one ``dcgan sample --seed`` takes."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        seeds = [int(p, 10) for p in parts]
    except ValueError:
        raise DcganError(f"--interpolate takes seeds separated by commas, like 3,7; got {text[:60]!r}") from None
    if len(seeds) < 2:
        raise DcganError(f"--interpolate needs at least two seeds, got {text[:60]!r}")
    return [resolve_seed(s) for s in seeds]


def walk_noise(sampler: Sampler, seeds: list[int], frames: int, walks: int = 1,
               truncation: float | None = None) -> list[np.ndarray]:
    """The noise of every frame ([walks, latent] each): ``frames`` per leg between consecutive
    seeds, then the last seed's own noise."""
    if not 2 <= frames <= MAX_FRAMES:
        raise DcganError(f"--frames must be between 2 and {MAX_FRAMES}, got {frames}")
    ends = [sampler.noise(walks, seed, truncation=truncation) for seed in seeds]
    out = [slerp(a, b, f / frames) for a, b in zip(ends, ends[1:]) for f in range(frames)]
    return out + [ends[-1]]


def walk_class_weights(classes: list[int], frames: int, num_classes: int) -> list[np.ndarray]:
    """The class weights [K] of every frame of a walk whose seeds have these classes, frame for
    frame with ``walk_noise``: each end exactly its class's one-hot."""
    eye = np.eye(num_classes, dtype=np.float32)
    legs = [((1 - f / frames) * eye[a] + (f / frames) * eye[b]).astype(np.float32)
            for a, b in zip(classes, classes[1:]) for f in range(frames)]
    return legs + [eye[classes[-1]]]

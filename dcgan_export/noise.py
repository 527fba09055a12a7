"""Seed-stable noise that any language reproduces bit for bit (docs/noise.md has the algorithm).

Image ``i`` of seed ``s`` gets its own stream of 64-bit words from SplitMix64's mixing function
(a counter-based hash: no state to carry, any image computed directly). Pairs of words become
pairs of standard normals by Box-Muller in float64, rounded to float32. The logarithm, sine and
cosine are fixed polynomials evaluated with + - * / and sqrt only, in a fixed order: those are
correctly rounded in IEEE 754 everywhere, while libm's ``log`` and ``sin`` differ by an ulp between
platforms, and numpy's SIMD versions from C's. So numpy here, ``examples/web/noise.js`` in Node
and the browser, and a few lines of C or Rust all give the same float32 bits.

numpy only (no onnxruntime, no TensorFlow); vectorised over images and components.
"""

from __future__ import annotations

import numpy as np

from .errors import DcganError
from .limits import MAX_SEED, check_int

MASK64 = (1 << 64) - 1
GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2^64 / golden ratio, odd
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)

LN2 = 0.6931471805599453
SQRT_HALF = 0.7071067811865476
HALF_PI = 1.5707963267948966
TWO_POW_M53 = 2.0 ** -53
LOG_TERMS = 10  # atanh series 1 + t^2/3 + ... + t^18/19; |t| <= 0.1716, so the tail is < 1e-17
TRIG_TERMS = 11  # nested Taylor series on [0, pi/2): the first term left out is < 2e-17


def _taylor(first: float, step) -> list[float]:
    """[first, first / step(1), that / step(2), ...]: one division each, in this order, so every
    language computes the same doubles (no decimal literals to transcribe)."""
    out = [first]
    for n in range(1, TRIG_TERMS + 1):
        out.append(out[-1] / step(n))
    return out


INV_ODD = [1.0 / (2 * k + 1) for k in range(LOG_TERMS)]  # atanh: 1, 1/3, 1/5, ...
SIN = _taylor(1.0, lambda n: -((2 * n) * (2 * n + 1)))  # sin(x) / x: 1, -1/3!, 1/5!, ...
COS = _taylor(1.0, lambda n: -((2 * n - 1) * (2 * n)))  # cos(x): 1, -1/2!, 1/4!, ...

MIN_TRUNCATION = 0.01  # below it, redrawing until every component fits would take too long
CHUNK = 1 << 13  # normal pairs computed at once: keeps the temporaries in cache


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele, Lea and Flood 2014), on uint64 arrays; wraps mod 2^64."""
    z = z ^ (z >> np.uint64(30))
    z *= MIX1
    z ^= z >> np.uint64(27)
    z *= MIX2
    z ^= z >> np.uint64(31)
    return z


def image_keys(seed: int, start: int, count: int) -> np.ndarray:
    """The stream key of images ``start .. start+count-1`` of ``seed``: mix64(mix64(s) + GAMMA (i + 1))."""
    base = mix64(np.array([seed], dtype=np.uint64))
    index = np.arange(start, start + count, dtype=np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        return mix64(base + GAMMA * index)


def words(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Word ``c`` of each key's stream: mix64(key + GAMMA (c + 1)) (broadcasts)."""
    return mix64(keys + GAMMA * (counters.astype(np.uint64) + np.uint64(1)))


def _log_unit(w: np.ndarray) -> np.ndarray:
    """ln(u) for u = ((w >> 11) + 1) 2^-53 in (0, 1]: frexp, then 2 atanh((m-1)/(m+1))."""
    x = ((w >> np.uint64(11)) + np.uint64(1)).astype(np.float64)  # an integer in [1, 2^53]: exact
    m, e = np.frexp(x)  # x = m 2^e, m in [0.5, 1): exact
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    e = (e - low - 53).astype(np.float64)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    p = np.full_like(t, INV_ODD[LOG_TERMS - 1])
    for k in range(LOG_TERMS - 2, -1, -1):
        p *= t2
        p += INV_ODD[k]
    return (2.0 * t) * p + e * LN2


def _cos_sin(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the angle (q + f) pi/2: q the word's top 2 bits, f its next 53 bits / 2^53.

    Both series are evaluated on theta = f pi/2, then turned by q quarter turns, exactly:
    (cos, sin) -> (-sin, cos) each turn."""
    q = (w >> np.uint64(62)).astype(np.int8)
    theta = ((w >> np.uint64(9)) & np.uint64((1 << 53) - 1)).astype(np.float64)
    theta *= TWO_POW_M53
    theta *= HALF_PI
    t2 = theta * theta
    s = np.full_like(theta, SIN[TRIG_TERMS])
    c = np.full_like(theta, COS[TRIG_TERMS])
    for n in range(TRIG_TERMS - 1, -1, -1):  # Horner in theta^2
        s *= t2
        s += SIN[n]
        c *= t2
        c += COS[n]
    s *= theta
    odd = (q & 1).astype(bool)
    cos, sin = np.where(odd, s, c), np.where(odd, c, s)
    cos[(q == 1) | (q == 2)] *= -1.0
    sin[q >= 2] *= -1.0
    return cos, sin


def normal_pairs(w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller: r = sqrt(-2 ln u1), (r cos, r sin) of the angle from w2, rounded to float32."""
    r = np.sqrt(-2.0 * _log_unit(w1))
    cos, sin = _cos_sin(w2)
    return (r * cos).astype(np.float32), (r * sin).astype(np.float32)


def normals_at(keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Normal number ``index`` of each key's stream (pair index // 2; its cosine half when even)."""
    pair = index // 2
    z0, z1 = normal_pairs(words(keys, 2 * pair), words(keys, 2 * pair + 1))
    return np.where(index % 2 == 0, z0, z1)


def check_truncation(truncation) -> float | None:
    """psi as a float, or None; a one-line DcganError for anything else."""
    if truncation is None:
        return None
    try:
        psi = float(truncation)
    except (TypeError, ValueError):
        raise DcganError(f"truncation must be a number, got {truncation!r}") from None
    if not (MIN_TRUNCATION <= psi < float("inf")):
        raise DcganError(f"truncation must be a finite number >= {MIN_TRUNCATION}, got {truncation}")
    return psi


def noise(seed: int, start: int, count: int, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """Noise vectors of images ``start .. start+count-1`` of ``seed``: float32 [count, latent_dim].

    Component j of an image is normal number j of its stream. With ``truncation`` psi, the
    components whose magnitude exceeds psi take, in order, the stream's next unused normals, round
    after round until none does (BigGAN's truncation trick): image i still depends only on
    (seed, i, psi)."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    check_int(start, "start", 0, MASK64 - max(count, 0))
    psi = check_truncation(truncation)
    out = np.empty((count, latent_dim), dtype=np.float32)
    pairs = (latent_dim + 1) // 2
    counters = np.arange(2 * pairs, dtype=np.uint64).reshape(pairs, 2)
    per_chunk = max(1, CHUNK // pairs)
    with np.errstate(over="ignore"):
        keys = image_keys(seed, start, count)
        for lo in range(0, count, per_chunk):
            k = keys[lo:lo + per_chunk, None]
            z0, z1 = normal_pairs(words(k, counters[:, 0]), words(k, counters[:, 1]))
            block = np.stack([z0, z1], axis=-1).reshape(len(k), 2 * pairs)
            out[lo:lo + per_chunk] = block[:, :latent_dim]
        if psi is not None:
            _truncate(out, keys, psi)
    return out


def _truncate(out: np.ndarray, keys: np.ndarray, psi: float) -> None:
    """Redraw, in place, every component whose magnitude exceeds psi (see ``noise``)."""
    psi = np.float64(psi)  # compared in float64, as in every port (a Python float would round to float32)
    used = np.full(len(out), out.shape[1], dtype=np.uint64)  # next unused normal of each stream
    outside = np.abs(out) > psi
    while outside.any():
        rows, cols = np.nonzero(outside)  # row-major: each row's components in increasing order
        first = np.searchsorted(rows, rows)  # where each row's run starts
        index = used[rows] + (np.arange(len(rows)) - first).astype(np.uint64)
        out[rows, cols] = normals_at(keys[rows], index)
        used += np.bincount(rows, minlength=len(out)).astype(np.uint64)
        outside[:] = False
        outside[rows, cols] = np.abs(out[rows, cols]) > psi

"""Seed-stable noise (dcgan_export/noise.py): the algorithm of docs/noise.md, the same bits in
numpy, in Node (examples/web/noise.js) and in the C that the docs give."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from helpers import ROOT

from dcgan_export.errors import DcganError
from dcgan_export.noise import noise

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
NODE = shutil.which("node")
CC = shutil.which("cc")
# Many seeds: small ones, word boundaries, and the top of the range (2^63 - 1 is the largest).
SEEDS = [0, 1, 2, 7, 42, 2**31 - 1, 2**32, 2**32 + 1, 2**53 - 1, 2**53 + 1, 2**62,
         2**63 - 2**20, 2**63 - 3, 2**63 - 2, 2**63 - 1] + [int(s) for s in
                                                           np.random.default_rng(5).integers(0, 2**63, 25)]


# -- a literal, scalar reading of docs/noise.md: Python integers and floats, one value at a time --

def mix64(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def reference_pair(key: int, p: int) -> tuple[float, float]:
    a = mix64((key + GAMMA * (2 * p + 1)) & M64)
    b = mix64((key + GAMMA * (2 * p + 2)) & M64)
    m, e = math.frexp(float((a >> 11) + 1))
    if m < 0.7071067811865476:
        m, e = m * 2, e - 1
    t = (m - 1) / (m + 1)
    t2 = t * t
    P = 1 / 19
    for k in range(8, -1, -1):
        P = P * t2 + 1 / (2 * k + 1)
    r = math.sqrt(-2 * ((2 * t) * P + (e - 53) * 0.6931471805599453))
    S, C = [1.0], [1.0]
    for n in range(1, 12):
        S.append(S[-1] / -((2 * n) * (2 * n + 1)))
        C.append(C[-1] / -((2 * n - 1) * (2 * n)))
    theta = (float((b >> 9) & ((1 << 53) - 1)) * 2.0**-53) * 1.5707963267948966
    s, c = S[11], C[11]
    for n in range(10, -1, -1):
        s, c = s * (theta * theta) + S[n], c * (theta * theta) + C[n]
    s = s * theta
    cos, sin = {0: (c, s), 1: (-s, c), 2: (-c, -s), 3: (s, -c)}[b >> 62]
    return f32(r * cos), f32(r * sin)


def reference_noise(seed: int, i: int, latent: int, psi: float | None = None) -> list[float]:
    key = mix64((mix64(seed) + GAMMA * (i + 1)) & M64)
    normal = lambda n: reference_pair(key, n // 2)[n % 2]  # noqa: E731
    z = [normal(n) for n in range(latent)]
    used = latent
    while psi is not None and any(abs(v) > psi for v in z):
        for k in [k for k in range(latent) if abs(z[k]) > psi]:
            z[k], used = normal(used), used + 1
    return z


@pytest.mark.parametrize("seed,latent,psi", [(0, 100, None), (42, 7, None), (2**63 - 1, 33, None),
                                             (9, 100, 0.7), (2**63 - 2, 5, 0.3), (123, 64, 1.5)])
def test_numpy_is_the_documented_algorithm(seed, latent, psi):
    for i in (0, 1, 1000, 2**40):
        got = noise(seed, i, 1, latent, psi)[0]
        assert got.tolist() == reference_noise(seed, i, latent, psi)


def test_image_i_is_the_same_in_any_batch():
    full = noise(3, 0, 300, 17, truncation=0.8)
    np.testing.assert_array_equal(noise(3, 250, 50, 17, truncation=0.8), full[250:])
    np.testing.assert_array_equal(noise(3, 7, 1, 17, truncation=0.8)[0], full[7])
    assert not np.array_equal(noise(4, 0, 300, 17), noise(3, 0, 300, 17))


def test_the_noise_is_standard_normal():
    z = noise(11, 0, 20_000, 100).ravel().astype(np.float64)  # 2 million values
    assert abs(z.mean()) < 0.003 and abs(z.std() - 1) < 0.003
    for k, tail in ((1, 0.3173), (2, 0.0455), (3, 0.0027)):  # two-sided tails of N(0, 1)
        assert abs(np.mean(np.abs(z) > k) - tail) < 0.1 * tail + 2e-4
    components = noise(12, 0, 20_000, 8).astype(np.float64)
    assert np.abs(np.corrcoef(components.T) - np.eye(8)).max() < 0.03  # no pair correlated


def test_truncation_keeps_the_components_inside_and_redraws_the_rest():
    plain, cut = noise(5, 0, 2000, 100), noise(5, 0, 2000, 100, truncation=0.7)
    assert np.abs(cut).max() <= np.float32(0.7)
    inside = np.abs(plain) <= 0.7
    np.testing.assert_array_equal(cut[inside], plain[inside])
    assert not np.array_equal(cut[~inside], plain[~inside])


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "7"])
def test_seeds_outside_the_range_are_refused(bad):
    with pytest.raises(DcganError, match="seed"):
        noise(bad, 0, 1, 100)


# -- other languages ------------------------------------------------------------------------------

def requests_over_many_seeds() -> list[dict]:
    """100,000+ vectors: every seed of SEEDS, several latent sizes and starts, with and without truncation."""
    out = []
    for n, seed in enumerate(SEEDS):
        out.append({"seed": str(seed), "start": 0, "count": 2400, "latent": 100, "truncation": None})
        out.append({"seed": str(seed), "start": 2**45 + n, "count": 200, "latent": [1, 7, 33, 128][n % 4],
                    "truncation": [None, 0.5, 1.0, 2.2][n % 4]})
    return out


def python_bytes(requests) -> bytes:
    return b"".join(noise(int(r["seed"]), r["start"], r["count"], r["latent"], r["truncation"]).tobytes()
                    for r in requests)


def assert_same_bits(other: bytes, requests) -> None:
    ours = np.frombuffer(python_bytes(requests), np.uint32)
    theirs = np.frombuffer(other, np.uint32)
    assert theirs.shape == ours.shape
    differ = np.nonzero(ours != theirs)[0]
    assert len(differ) == 0, f"{len(differ)} of {len(ours)} values differ, first at {differ[:5]}"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_gives_the_same_bits_on_100000_vectors(tmp_path):
    requests = requests_over_many_seeds()
    assert sum(r["count"] for r in requests) >= 100_000
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    subprocess.run([NODE, ROOT / "tests" / "js" / "noise_dump.mjs", tmp_path / "requests.json", tmp_path / "node.bin"],
                   check=True, timeout=300)
    assert_same_bits((tmp_path / "node.bin").read_bytes(), requests)


C_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    /* lines of: seed start count latent psi (psi <= 0: none) -> raw float32 on stdout */
    unsigned long long seed, start; size_t count, latent; double psi;
    while (scanf("%llu %llu %zu %zu %lf", &seed, &start, &count, &latent, &psi) == 5) {
        float *out = malloc(count * latent * sizeof(float));
        dcgan_noise(seed, start, count, latent, psi, out);
        fwrite(out, sizeof(float), count * latent, stdout);
        free(out);
    }
    return 0;
}
"""


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_the_c_in_the_docs_gives_the_same_bits(tmp_path):
    docs = (ROOT / "docs" / "noise.md").read_text()
    source = re.search(r"```c\n(.*?)```", docs, re.S).group(1)
    (tmp_path / "noise.c").write_text(source + C_MAIN)
    subprocess.run([CC, "-O2", "-march=native", "-ffp-contract=off", "-o", tmp_path / "noise", tmp_path / "noise.c", "-lm"],
                   check=True, timeout=120)
    requests = requests_over_many_seeds()[::3]
    lines = "".join(f"{r['seed']} {r['start']} {r['count']} {r['latent']} {r['truncation'] or 0}\n" for r in requests)
    result = subprocess.run([tmp_path / "noise"], input=lines.encode(), capture_output=True, check=True, timeout=120)
    assert_same_bits(result.stdout, requests)

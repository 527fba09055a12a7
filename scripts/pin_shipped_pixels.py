"""Print the PINNED table of tests/test_shipped_model.py for the model now in models/.

Run it after a deliberate retrain (scripts/make_shipped_model.sh does) and paste its output into
the test. It pins mid-tone pixels, which any change of weights, noise derivation or export moves,
and skips those whose unrounded value lies near a rounding boundary, so float differences between
CPUs (a few 1e-6) cannot flip them.
"""

from __future__ import annotations

import numpy as np

from dcgan_export import Sampler

# (seed, image index): a few seeds, and indices past the first batch of a chunked sample().
IMAGES = [(0, 0), (0, 7), (1, 3), (2, 123), (7, 42), (11, 300)]


def pick_pixel(images: np.ndarray) -> tuple[int, int]:
    """The mid-tone pixel nearest the centre whose value is at least 0.1 from a rounding boundary."""
    value = (images[0, :, :, 0].astype(np.float64) + 1.0) * 127.5
    rows, cols = np.indices(value.shape)
    ok = (value > 40) & (value < 215) & (np.abs(value - np.floor(value) - 0.5) > 0.1)
    if not ok.any():
        raise SystemExit("no mid-tone pixel away from a rounding boundary; pick another image")
    distance = np.where(ok, (rows - 13.5) ** 2 + (cols - 13.5) ** 2, np.inf)
    return divmod(int(np.argmin(distance)), value.shape[1])


def main() -> None:
    sampler = Sampler()
    pinned = {}
    for seed, index in IMAGES:
        z = sampler.noise(1, seed, start=index)
        row, col = pick_pixel(sampler.generate(z))
        pinned[(seed, index, row, col)] = int(sampler.generate_pixels(z)[0, row, col])
    print("PINNED = {" + ", ".join(f"{key}: {value}" for key, value in pinned.items()) + "}")


if __name__ == "__main__":
    main()

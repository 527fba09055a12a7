"""Seconds to make the noise of 100,000 images (latent 100) from a seed: numpy (dcgan_export/noise.py)
and JavaScript (examples/web/noise.js in Node), best of ``--rounds``, in one run.

    python benchmarks/noise_speed.py [--n 100000] [--latent 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from dcgan_export.noise import noise  # noqa: E402
from machine import cpu_description  # noqa: E402

NODE_BENCH = """
const { imageNoise } = await import(process.argv[1]);
const [n, latent, rounds] = process.argv.slice(2).map(Number);
let best = Infinity;
for (let r = 0; r < rounds; r++) {
  const start = performance.now();
  imageNoise(42n, 0, n, latent);
  best = Math.min(best, (performance.now() - start) / 1000);
}
console.log(JSON.stringify(best));
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--latent", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best = float("inf")
    for _ in range(args.rounds):
        start = time.perf_counter()
        noise(42, 0, args.n, args.latent)
        best = min(best, time.perf_counter() - start)
    print(f"CPU: {cpu_description()}")
    print(f"{args.n:,} noise vectors of {args.latent}, best of {args.rounds}:")
    print(f"  numpy (dcgan_export/noise.py): {best:.2f} s")
    if shutil.which("node"):
        out = subprocess.run(["node", "--input-type=module", "-e", NODE_BENCH, str(ROOT / "examples/web/noise.js"),
                              str(args.n), str(args.latent), str(args.rounds)],
                             capture_output=True, text=True, check=True, timeout=600)
        print(f"  JavaScript (examples/web/noise.js, Node): {float(out.stdout):.2f} s")


if __name__ == "__main__":
    main()

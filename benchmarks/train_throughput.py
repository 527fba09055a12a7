"""Steady-state training speed of finished runs, from their losses.csv: iterations/s and images/s.

The first iterations include compiling the step, so the rate is taken between iteration
``--skip`` and the last (elapsed_s is measured from the start of fit()). Images/s counts the
real images D sees: batch size x D steps per iteration.

    python benchmarks/train_throughput.py RUN [RUN ...] [--skip 20]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def throughput(run: Path, skip: int) -> dict:
    options = json.loads((run / "config.json").read_text())["options"]
    with open(run / "losses.csv", newline="") as f:
        rows = [(int(r["iteration"]), float(r["elapsed_s"])) for r in csv.DictReader(f)]
    first = next((r for r in rows if r[0] >= skip), rows[0])
    last = rows[-1]
    rate = (last[0] - first[0]) / max(last[1] - first[1], 1e-9)
    return {"run": str(run), "backend": options.get("backend"), "batch_size": options["batch_size"],
            "iterations": last[0], "iterations_per_s": rate,
            "images_per_s": rate * options["batch_size"] * options["d_steps"],
            "first_iterations_s": first[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--skip", type=int, default=20)
    args = parser.parse_args()
    print(f"{'run':<28} {'backend':<10} {'batch':>6} {'it/s':>9} {'images/s':>10} {'first its (s)':>13}")
    for run in args.runs:
        t = throughput(run, args.skip)
        print(f"{t['run']:<28} {t['backend'] or '?':<10} {t['batch_size']:>6} {t['iterations_per_s']:>9.1f} "
              f"{t['images_per_s']:>10.0f} {t['first_iterations_s']:>13.1f}")


if __name__ == "__main__":
    main()

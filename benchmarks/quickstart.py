"""The quick start's promise, measured: how long `dcgan train --config quickstart` trains, and
how its samples score under `dcgan eval`, for several training seeds.

    python benchmarks/quickstart.py [--seeds 0,1,2] [--avx2] [--out runs/quickstart-bench]
                                    [--config quickstart] [-- extra dcgan train options]

--config and the options after ``--`` try other presets against the same goals.

--avx2 limits TensorFlow to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), to estimate an AVX2-only CPU on one
with AVX-512 (a real AVX2 CPU is the better measure: memory bandwidth and clocks differ too).
Goals (issue 13): training at most 3 minutes on a 2-core AVX2 CPU; every digit class above 3% of
samples and a classifier score above 6, for every seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_description

ROOT = Path(__file__).resolve().parent.parent


def dcgan(*args: str, env: dict) -> str:
    result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"dcgan {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--avx2", action="store_true", help="ONEDNN_MAX_CPU_ISA=AVX2 for the training runs")
    parser.add_argument("--out", default="runs/quickstart-bench", help="parent directory of the runs")
    parser.add_argument("--eval-n", type=int, default=10000)
    parser.add_argument("--config", default="quickstart", help="the preset (a shipped name or a file)")
    parser.add_argument("extra", nargs="*", help="more dcgan train options, after --")
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if args.avx2:
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # so that the CPU line says so
    print(f"CPU: {cpu_description()}, load average {os.getloadavg()[0]:.2f}; "
          f"dcgan train --config {args.config} {' '.join(args.extra)}".rstrip())
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = Path(args.out) / f"seed{seed}"
        started = time.perf_counter()
        dcgan("train", "--config", args.config, *args.extra, "--seed", str(seed), "--out", str(run), "--force", "--quiet",
              env=env)
        wall = time.perf_counter() - started
        with open(run / "losses.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        report = json.loads(dcgan("eval", str(run), "--n", str(args.eval_n), "--seed", "0", "--json", env=env))
        smallest = min(report["class_shares"])
        results.append({"seed": seed, "iterations": len(rows), "train_s": float(rows[-1]["elapsed_s"]),
                        "command_s": wall, "score": report["classifier_score"], "fid": report["fid"],
                        "smallest_class": smallest, "goals_met": smallest > 0.03 and report["classifier_score"] > 6})
        r = results[-1]
        print(f"seed {seed}: {r['iterations']} iterations, training {r['train_s']:.0f} s "
              f"(whole command with start-up and export {r['command_s']:.0f} s); classifier score {r['score']:.2f}, "
              f"FID {r['fid']:.2f}, smallest class {100 * smallest:.1f}%: {'MET' if r['goals_met'] else 'MISSED'}",
              flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Images/s of the exported generator vs TensorFlow, and the cold-start time of `dcgan sample`.

    python benchmarks/sample_speed.py [MODEL.keras] [--rounds 5] [--seconds 0.5] [--profile]
    python benchmarks/sample_speed.py --shape 64x64x3     # a random-weight generator of that shape

In one process, alternating backends round by round (so a busy machine slows all of them alike),
measures images/s at batch 1, 25, 256 and 1024 for: the optimised ONNX in onnxruntime (through
dcgan_export.Sampler), the same rewrite with every stage folded onto the coarse grid (where the
planner chose to expand part-way), the unoptimised ONNX in onnxruntime, tf.function on the Keras
generator and Keras predict; prints medians over rounds, ratios to tf.function, and the optimised
graph's FLOP rate as a fraction of this CPU's fp32 peak, measured as numpy's sgemm rate in the
same run. Goals on the 2-core CPU: optimised >= 3.0x tf.function at batch 256 and >= 5x at
batch 1; `dcgan sample --n 25` <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

BATCHES = (1, 25, 256, 1024)
BACKENDS = ("onnx optimised", "onnx all folded", "onnx plain", "tf.function", "keras predict")


def sgemm_gflops(seconds: float = 1.0, n: int = 2048) -> float:
    """numpy's float32 matrix product rate: this CPU's practical fp32 peak."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or count < 2:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - started) / 1e9


def rate(run, z, seconds: float) -> float:
    """Images/s of run(z), repeated for at least ``seconds`` (and at least twice) after a warm-up."""
    run(z)
    count, started = 0, time.perf_counter()
    while True:
        run(z)
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and count >= 2:
            return count * len(z) / elapsed


def profile(onnx_path: Path, batch: int, workdir: Path) -> None:
    """onnxruntime's per-operator time share for the optimised graph."""
    import onnxruntime as ort

    from dcgan_export.runtime import physical_cores

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "ort_profile")
    options.intra_op_num_threads = physical_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((batch, 100)).astype(np.float32)
    for _ in range(30):
        session.run(None, {session.get_inputs()[0].name: z})
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            key = f"{event['args'].get('op_name')} {event['name'][:-len('_kernel_time')]}"
            totals[key] = totals.get(key, 0.0) + event["dur"]
    whole = sum(totals.values())
    print(f"\nonnxruntime profile of the optimised graph, batch {batch} (share of kernel time):")
    for key, dur in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {100 * dur / whole:5.1f}%  {key}")


def cold_sample_times(onnx_path: Path, runs: int, workdir: Path) -> list[float] | None:
    from dcgan_export.cli import cli

    command = cli.commands.get("sample")
    if command is None:
        return None
    args = [sys.executable, "-m", "dcgan_export.cli", "sample", "--n", "25", "--out", str(workdir / "grid.png")]
    if "model" in {p.name for p in command.params}:
        args += ["--model", str(onnx_path)]
    times = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT / "models" / "generator.keras"
    parser.add_argument("model", nargs="?", default=str(default) if default.is_file() else None,
                        help="Keras generator (default: models/generator.keras, else random weights)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--profile", action="store_true", help="also print an onnxruntime profile")
    parser.add_argument("--shape", default=None, help="HxWxC: benchmark a random-weight generator of this shape")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dcgan_speed_"))
    if args.shape is not None or args.model is None:
        shape = tuple(int(d) for d in (args.shape or "28x28x1").split("x"))
        print(f"benchmarking a random-weight {args.shape or '28x28x1'} generator "
              "(speed does not depend on the weights, quality does)")
        from trainer.testing import random_generator

        keras_path = workdir / "generator.keras"
        random_generator(0, shape).save(keras_path)
    else:
        keras_path = Path(args.model)

    import keras
    import tensorflow as tf

    from dcgan_export import Sampler
    from dcgan_export.export import export_generator

    quiet = lambda line: None  # noqa: E731
    from dcgan_export import inference_graph

    optimised_path, plain_path, folded_path = (workdir / f"{n}.onnx" for n in ("optimised", "plain", "folded"))
    report = export_generator(keras_path, optimised_path, optimize=True, echo=quiet)
    export_generator(keras_path, plain_path, optimize=False, echo=quiet)
    chosen = inference_graph.DEPTH_TO_SPACE_FLOPS_PER_VALUE
    inference_graph.DEPTH_TO_SPACE_FLOPS_PER_VALUE = 10**12  # never expand part-way: fold every stage
    folded = export_generator(keras_path, folded_path, optimize=True, echo=quiet)
    inference_graph.DEPTH_TO_SPACE_FLOPS_PER_VALUE = chosen
    print(f"model {keras_path}; optimised graph: {report['graph']}")
    print(f"all folded: {folded['graph']} ({folded['flops_after'] / 1e6:.1f} MFLOPs/image)")
    print(f"FLOPs/image {report['flops_before'] / 1e6:.1f} M -> {report['flops_after'] / 1e6:.1f} M; "
          f"parity max |diff| {report['max_abs_diff']:.2e}")

    model = keras.models.load_model(keras_path)
    tf_function = tf.function(lambda z: model(z, training=False),
                              input_signature=[tf.TensorSpec((None, model.input_shape[1]), tf.float32)])
    optimised, plain, all_folded = Sampler(optimised_path), Sampler(plain_path), Sampler(folded_path)
    latent = optimised.latent_dim
    runners = {
        "onnx optimised": optimised.generate,
        "onnx all folded": all_folded.generate,
        "onnx plain": plain.generate,
        "tf.function": lambda z: tf_function(tf.constant(z)).numpy(),
        "keras predict": lambda z: model.predict(z, batch_size=len(z), verbose=0),
    }
    rng = np.random.default_rng(0)
    noise = {b: rng.standard_normal((b, latent)).astype(np.float32) for b in BATCHES}
    results = {(name, b): [] for name in BACKENDS for b in BATCHES}
    from machine import cpu_description  # benchmarks/machine.py

    print(f"CPU: {cpu_description()}")
    peak = [sgemm_gflops()]
    print(f"cpu threads: onnxruntime {optimised._session.get_session_options().intra_op_num_threads}, "
          f"os.cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    for round_index in range(args.rounds):
        for b in BATCHES:
            for name in BACKENDS:  # alternate: each backend sees the same machine state
                seconds = args.seconds if name != "keras predict" or b >= 25 else args.seconds / 2
                results[name, b].append(rate(runners[name], noise[b], seconds))
        peak.append(sgemm_gflops(0.5))
        print(f"  round {round_index + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)

    # Median: what a user sees on this machine now. Best of rounds: closest to an idle machine
    # (other processes only ever slow a measurement down), the fairer figure on a shared box.
    for label, stat in (("median of rounds", statistics.median), ("best of rounds", max)):
        print(f"\nimages/s ({label}; x = ratio to tf.function)")
        print(f"{'batch':>6} " + " ".join(f"{name:>22}" for name in BACKENDS))
        for b in BATCHES:
            base = stat(results["tf.function", b])
            cells = [f"{stat(results[name, b]):>13,.0f} ({stat(results[name, b]) / base:4.2f}x)" for name in BACKENDS]
            print(f"{b:>6} " + " ".join(f"{c:>22}" for c in cells))
        for b, goal in ((256, 3.0), (1, 5.0)):
            ratio = stat(results["onnx optimised", b]) / stat(results["tf.function", b])
            print(f"goal batch {b}: optimised >= {goal}x tf.function: {ratio:.2f}x {'MET' if ratio >= goal else 'MISSED'}")
        gflops = stat(results["onnx optimised", 256]) * report["flops_after"] / 1e9
        print(f"optimised at batch 256: {gflops:.1f} GFLOP/s = {gflops / stat(peak):.0%} of numpy sgemm "
              f"({stat(peak):.1f} GFLOP/s, this CPU's fp32 peak in practice)")
    print(f"FLOPs/image: Keras {report['flops_before'] / 1e6:.1f} M, optimised {report['flops_after'] / 1e6:.1f} M "
          f"({report['flops_before'] / report['flops_after']:.2f}x fewer), all folded {folded['flops_after'] / 1e6:.1f} M")
    one = [1e3 / stat(results["onnx optimised", 1]) for stat in (statistics.median, max)]
    print(f"\nlatency of one image (optimised): median {one[0]:.3f} ms, best {one[1]:.3f} ms")

    if args.profile:
        profile(optimised_path, 256, workdir)

    times = cold_sample_times(optimised_path, 5, workdir)
    if times is None:
        print("\n`dcgan sample` is not in the CLI yet: cold-start timing skipped")
    else:
        median = statistics.median(times)
        print(f"\n`dcgan sample --n 25 --out grid.png`, 5 cold runs (load {os.getloadavg()[0]:.2f}): median {median:.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times)}); goal <= 0.5 s: {'MET' if median <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()

"""Images/s of the generator in headless Chromium (onnxruntime-web, WASM, 1 and 2 threads) against
onnxruntime-node and the Python Sampler, on this machine, in one run.

    python benchmarks/web_speed.py [--model MODEL.onnx] [--seconds 3] [--rounds 3]

The page's own code does the work in every JavaScript case: examples/web/sampler.js, imported into
the page that `dcgan serve` serves (cross-origin isolated, so WASM threads work) and into Node.
Rounds alternate the backends so a busy machine slows them alike; the table gives medians. Needs
scripts/setup.sh's extras: Debian's chromium, playwright, and `npm ci` in examples/node and web.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dcgan_export.runtime import Sampler, default_model_path  # noqa: E402

BATCHES = (1, 16, 256)
THREADS = (1, 2)
ORT_MODULE = "/node_modules/onnxruntime-web/dist/ort.min.mjs"
# Runs in the page: the page's modules, a fresh session, images/s per batch size.
BROWSER_BENCH = """async ([seconds, batches]) => {
  const ort = await import('%s');
  const { Generator } = await import('/sampler.js');
  const bytes = new Uint8Array(await (await fetch('/v1/model.onnx')).arrayBuffer());
  const generator = await Generator.load(ort, bytes, { executionProviders: ['wasm'] });
  const rates = {};
  for (const batch of batches) {
    const z = generator.noise(0n, batch);
    await generator.pixels(z);
    let images = 0;
    const start = performance.now();
    while (performance.now() - start < seconds * 1000) {
      await generator.pixels(z);
      images += batch;
    }
    rates[batch] = images / ((performance.now() - start) / 1000);
  }
  return { rates, threads: ort.env.wasm.numThreads, isolated: self.crossOriginIsolated };
}""" % ORT_MODULE


def python_rates(model: Path, threads: int, seconds: float) -> dict:
    sampler = Sampler(model, threads=threads)
    rates = {}
    for batch in BATCHES:
        z = sampler.noise(batch, 0)
        sampler.generate_pixels(z)
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sampler.generate_pixels(z)
            images += batch
        rates[batch] = images / (time.perf_counter() - start)
    return rates


def node_rates(model: Path, threads: int, seconds: float) -> dict:
    out = subprocess.run(["node", str(ROOT / "benchmarks" / "web_speed_node.mjs"), str(model), str(threads),
                          str(seconds), *map(str, BATCHES)], capture_output=True, text=True, check=True, timeout=600)
    return {int(k): v for k, v in json.loads(out.stdout).items()}


def browser_rates(browser, base: str, threads: int, seconds: float) -> dict:
    page = browser.new_page()
    try:
        page.goto(f"{base}/?backend=wasm&threads={threads}")
        page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=60_000)
        result = page.evaluate(BROWSER_BENCH, [seconds, list(BATCHES)])
    finally:
        page.close()
    if not result["isolated"] or result["threads"] != threads:
        raise SystemExit(f"the page ran {result['threads']} WASM threads, not {threads} (isolated: {result['isolated']})")
    return {int(k): v for k, v in result["rates"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX generator (default: the shipped one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = args.model or default_model_path()

    from machine import cpu_description
    from playwright.sync_api import sync_playwright

    import serve_load  # benchmarks/serve_load.py

    results: dict[str, list[dict]] = {}
    with serve_load.serve_subprocess(model) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        version = browser.version
        for _ in range(args.rounds):
            for threads in THREADS:
                results.setdefault(f"Chromium {version}, WASM, {threads} thread(s)", []).append(
                    browser_rates(browser, base, threads, args.seconds))
                results.setdefault(f"onnxruntime-node, {threads} thread(s)", []).append(
                    node_rates(model, threads, args.seconds))
                results.setdefault(f"Python Sampler (onnxruntime), {threads} thread(s)", []).append(
                    python_rates(model, threads, args.seconds))
        browser.close()

    print(f"CPU: {cpu_description()}")
    print(f"model: {model} ({model.stat().st_size / 1e6:.1f} MB); images/s, median of {args.rounds} rounds "
          f"of {args.seconds:g} s\n")
    print("| runtime | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    print("| --- |" + " ---: |" * len(BATCHES))
    for name, rounds in results.items():
        cells = [f"{statistics.median(r[b] for r in rounds):,.0f}" for b in BATCHES]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

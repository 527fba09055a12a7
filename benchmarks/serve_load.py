"""Load-test ``dcgan serve``: throughput and p50/p99 latency under many concurrent clients.

Starts a real ``dcgan serve`` (uvicorn) on a free loopback port, or uses ``--url`` (loopback
only), and runs ``--clients`` concurrent keep-alive clients through ``--requests`` requests of a
fixed mix (see ``request_for``). Every response must be a 200 with the right content type; any
other answer counts as an error and makes the script exit 1.

    .venv/bin/python benchmarks/serve_load.py --model models/generator.onnx
    .venv/bin/python benchmarks/serve_load.py --model m.onnx --clients 64 --requests 2000

``tests/test_serve.py`` imports ``serve_subprocess`` and ``run_load`` for its load test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadRequest:
    kind: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    expect_type: str = "application/x-npy"


def request_for(i: int, latent_dim: int = 100) -> LoadRequest:
    """Request ``i`` of the mix: a quarter each of one-image .npy samples, 16-image PNG grids,
    4-vector .npy generate calls and 2-vector JSON generate calls."""
    kind = i % 4
    if kind == 0:
        return LoadRequest("sample-npy", "GET", f"/v1/sample?n=1&seed={i}&format=npy")
    if kind == 1:
        return LoadRequest("sample-png", "GET", f"/v1/sample?n=16&seed={i}", expect_type="image/png")
    z = np.random.default_rng(i).standard_normal((4 if kind == 2 else 2, latent_dim), dtype=np.float32)
    if kind == 2:
        buf = io.BytesIO()
        np.save(buf, z)
        return LoadRequest("generate-npy", "POST", "/v1/generate",
                           {"content-type": "application/x-npy"}, buf.getvalue())
    return LoadRequest("generate-json", "POST", "/v1/generate", {"content-type": "application/json"},
                       json.dumps({"z": z.tolist()}).encode(), expect_type="application/json")


@dataclass
class LoadResult:
    requests: int
    clients: int
    seconds: float
    latencies: list[float]
    errors: list[str]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def summary(self) -> str:
        return (f"{self.requests} requests, {self.clients} clients, {self.seconds:.2f} s: "
                f"{self.throughput:.0f} req/s, p50 {self.percentile(50) * 1e3:.1f} ms, "
                f"p99 {self.percentile(99) * 1e3:.1f} ms, errors {len(self.errors)}")


async def _run_load(base_url: str, clients: int, total: int, latent_dim: int,
                    check: Callable | None) -> LoadResult:
    import httpx

    plan = [request_for(i, latent_dim) for i in range(total)]
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(total))

    async def worker(client) -> None:
        async with client:
            for i in next_index:  # shared iterator: each request goes to exactly one worker
                req = plan[i]
                t0 = time.perf_counter()
                try:
                    resp = await client.request(req.method, req.path, headers=req.headers, content=req.body)
                except httpx.HTTPError as exc:
                    errors.append(f"#{i} {req.kind}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                ctype = resp.headers.get("content-type", "")
                if resp.status_code != 200 or not ctype.startswith(req.expect_type):
                    errors.append(f"#{i} {req.kind}: HTTP {resp.status_code} {ctype}: {resp.text[:200]}")
                elif check is not None:
                    problem = check(i, req, resp.content)
                    if problem:
                        errors.append(f"#{i} {req.kind}: {problem}")

    # Each client is its own keep-alive connection. They share one (unused: plain http) TLS
    # context, because building one per client loads the CA bundle: ~0.1 s of CPU each.
    tls = ssl.create_default_context()
    pool = [httpx.AsyncClient(base_url=base_url, timeout=60.0, verify=tls, limits=httpx.Limits(max_connections=1))
            for _ in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in pool))
    return LoadResult(total, clients, time.perf_counter() - t0, sorted(latencies), errors)


def run_load(base_url: str, clients: int = 64, total: int = 2000, latent_dim: int = 100,
             check: Callable[[int, LoadRequest, bytes], str | None] | None = None) -> LoadResult:
    """Send ``total`` requests over ``clients`` concurrent connections; ``check(i, request, body)``
    returns a problem description for a wrong answer, or None."""
    host = urllib.parse.urlsplit(base_url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"load tests only target loopback addresses, not {host!r}")
    return asyncio.run(_run_load(base_url, clients, total, latent_dim, check))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``dcgan serve``: its base URL, its process and the file its output goes to."""

    base: str
    process: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident set) of the server process, in kB, from /proc."""
        with open(f"/proc/{self.process.pid}/status") as f:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f)
                    if k in ("VmRSS", "VmHWM")}


@contextlib.contextmanager
def start_server(model: str | os.PathLike | None, threads: int | None = None, log_level: str = "warning",
                 startup_timeout: float = 60.0, env: dict | None = None,
                 extra_args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """Run ``dcgan serve`` on a free loopback port, with ``env`` added to its environment (e.g.
    ``DCGAN_SERVE_*`` limits) and ``extra_args`` to its options (e.g. ``--name``); yield it once
    healthy; stop it afterwards."""
    port = free_port()
    args = [sys.executable, "-m", "dcgan_export.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", log_level]
    if model is not None:
        args += ["--model", str(model)]
    if threads is not None:
        args += ["--threads", str(threads)]
    args += extra_args
    base = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="dcgan-serve-", suffix=".log") as log:
        server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"dcgan serve exited with {server.returncode}: {log.read().decode()[-2000:]}")
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dcgan serve not healthy after {startup_timeout:.0f} s")
                time.sleep(0.1)
            yield ServerProcess(base, server, log.name)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def serve_subprocess(model: str | os.PathLike | None, threads: int | None = None,
                     log_level: str = "warning", startup_timeout: float = 60.0) -> Iterator[str]:
    """Run ``dcgan serve`` on a free loopback port; yield its base URL; stop it afterwards."""
    with start_server(model, threads, log_level, startup_timeout) as server:
        yield server.base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX generator (default: the shipped one)")
    parser.add_argument("--url", help="an already running server on a loopback address")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads of the server")
    parser.add_argument("--warmup", type=int, default=200, help="requests sent (and not counted) first")
    args = parser.parse_args()
    if not 1 <= args.clients <= 1024 or not 1 <= args.requests <= 100_000:
        parser.error("--clients must be 1..1024 and --requests 1..100000")

    with (contextlib.nullcontext(args.url) if args.url else serve_subprocess(args.model, args.threads)) as base:
        with urllib.request.urlopen(base + "/v1/model") as resp:
            info = json.load(resp)
        from machine import cpu_description  # benchmarks/machine.py

        print(f"CPU: {cpu_description()}")
        print(f"server {base}: model {info['model']} (latent {info['latent_dim']}), cores {os.cpu_count()}")
        if args.warmup:
            run_load(base, args.clients, args.warmup, info["latent_dim"])
        result = run_load(base, args.clients, args.requests, info["latent_dim"])
    print(result.summary())
    for error in result.errors[:10]:
        print("  ", error)
    sys.exit(1 if result.errors else 0)


if __name__ == "__main__":
    main()

"""Abuse ``dcgan serve`` and report its peak memory: what slow and greedy clients can make it hold.

Starts a real ``dcgan serve`` on a free loopback port and, all at once:

- ``--slow-headers`` clients (default 200) that send a request's headers one byte a second;
- ``--stalled`` uploads (default 50) that declare a 4 MB body, send all but one byte and stall;
- ``--json`` concurrent maximum-size JSON requests (default 100): half a valid 1,024-vector body
  padded to the 4 MB limit, half 4 MB of small numbers (the most Python objects per byte).

Each client's outcome is counted (HTTP status, or how the connection ended), then the server's
peak resident memory (VmHWM from /proc) is printed and checked against ``--max-mb``: exit 1 above
it, or when an answer is not one the limits allow (for instance a JSON request answered 500, or a
refused client that saw a reset instead of its answer).

    .venv/bin/python benchmarks/serve_abuse.py --model models/generator.onnx
    .venv/bin/python benchmarks/serve_abuse.py --header-timeout 2 --body-timeout 4   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402
from serve_load import start_server  # noqa: E402

MAX_BODY = 4 * 1024 * 1024  # dcgan_export.serve.MAX_BODY_BYTES (not imported: no runtime needed here)
GRACE = 15.0  # seconds a client waits beyond the server's own deadline before giving up


def valid_json_body(latent_dim: int = 100, rows: int = 1024) -> bytes:
    """1,024 noise vectors with every float's 17 digits, padded with spaces to the body limit."""
    z = np.random.default_rng(0).standard_normal((rows, latent_dim))
    body = json.dumps({"z": z.tolist()}).encode()
    return body + b" " * (MAX_BODY - len(body))


def many_numbers_body() -> bytes:
    """As many JSON numbers as fit in the body limit: a million floats of 4 bytes each."""
    head, tail = b'{"z": [[', b"]]}"
    count = (MAX_BODY - len(head) - len(tail)) // 4
    return head + b",".join([b"0.5"] * count) + tail


def post_head(host: str, length: int, content_type: str = "application/json") -> bytes:
    return (f"POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


async def read_status(reader: asyncio.StreamReader) -> str:
    """The response's status code, reading (and dropping) its body; or how the connection ended."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return "closed" if not exc.partial else "truncated"
    except OSError:  # reset, or a broken pipe while sending
        return "reset"
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass  # the status came: what matters
    return head.split(b" ", 2)[1].decode()


async def slow_header_client(host: str, port: int, limit_s: float) -> str:
    """One header byte a second until the server ends the exchange (or ``limit_s`` passes)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = post_head(host, 10)
    t0 = time.monotonic()
    try:
        for byte in request[:-4]:  # never the blank line that ends the headers
            if reader.at_eof() or time.monotonic() - t0 > limit_s:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                return f"{await asyncio.wait_for(read_status(reader), 1.0)} after {time.monotonic() - t0:.0f} s"
            except asyncio.TimeoutError:
                continue
        return "still open"
    except OSError:
        return f"reset after {time.monotonic() - t0:.0f} s"
    finally:
        writer.close()


async def upload(host: str, port: int, body: bytes, stall: bool, limit_s: float) -> str:
    """Send ``body`` (all but its last byte and then nothing more, if ``stall``); the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    answer = asyncio.ensure_future(read_status(reader))

    async def send() -> None:
        writer.write(post_head(host, len(body)))
        view = memoryview(body)[:-1] if stall else memoryview(body)
        for start in range(0, len(view), 256 * 1024):
            if answer.done():
                return
            writer.write(view[start:start + 256 * 1024])
            try:
                await writer.drain()
            except OSError:  # the server answered and closed: the answer tells
                return

    sender = asyncio.ensure_future(send())
    try:
        return await asyncio.wait_for(answer, limit_s)
    except asyncio.TimeoutError:
        return "no answer"
    finally:
        sender.cancel()
        writer.close()


async def abuse(base: str, slow: int, stalled: int, json_requests: int, header_timeout: float,
                body_timeout: float) -> dict[str, collections.Counter]:
    url = urllib.parse.urlsplit(base)
    host, port = url.hostname, url.port
    valid, many = valid_json_body(), many_numbers_body()
    groups = {
        "slow headers": [slow_header_client(host, port, header_timeout + GRACE) for _ in range(slow)],
        "stalled uploads": [upload(host, port, b" " * MAX_BODY, True, body_timeout + GRACE) for _ in range(stalled)],
        "max-size JSON": [upload(host, port, valid if i % 2 == 0 else many, False, body_timeout + 60)
                          for i in range(json_requests)],
    }
    results = await asyncio.gather(*(asyncio.gather(*tasks) for tasks in groups.values()))
    return {name: collections.Counter(coarse(r) for r in outcome) for name, outcome in zip(groups, results)}


def coarse(outcome: str) -> str:
    """'408 after 10 s' and '408 after 11 s' count together (to the nearest 5 s)."""
    words = outcome.split()
    if len(words) == 4 and words[1] == "after":
        return f"{words[0]} after ~{5 * round(int(words[2]) / 5)} s"
    return outcome


# No "reset": a client refused while still sending (a 503 before its body is read, a 408 in the
# middle of its headers) reads its answer, since the server's close lingers (dcgan_export/serve_http.py).
ALLOWED = {
    "slow headers": ("408", "closed"),
    "stalled uploads": ("408", "503"),
    "max-size JSON": ("200", "400", "503"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX generator (default: the shipped one)")
    parser.add_argument("--slow-headers", type=int, default=200)
    parser.add_argument("--stalled", type=int, default=50)
    parser.add_argument("--json", type=int, default=100)
    parser.add_argument("--header-timeout", type=float, default=None, help="DCGAN_SERVE_HEADER_TIMEOUT for the server")
    parser.add_argument("--body-timeout", type=float, default=None, help="DCGAN_SERVE_BODY_TIMEOUT for the server")
    parser.add_argument("--max-mb", type=float, default=400.0, help="peak server memory allowed (VmHWM)")
    args = parser.parse_args()
    if not all(0 <= n <= 1000 for n in (args.slow_headers, args.stalled, args.json)):
        parser.error("client counts must be 0..1000")

    env = {}
    if args.header_timeout:
        env["DCGAN_SERVE_HEADER_TIMEOUT"] = str(args.header_timeout)
    if args.body_timeout:
        env["DCGAN_SERVE_BODY_TIMEOUT"] = str(args.body_timeout)
    print(f"CPU: {cpu_description()}")
    with start_server(args.model, env=env) as server:
        idle = server.memory_kb()
        t0 = time.monotonic()
        counts = asyncio.run(abuse(server.base, args.slow_headers, args.stalled, args.json,
                                   args.header_timeout or 10.0, args.body_timeout or 30.0))
        seconds = time.monotonic() - t0
        after = server.memory_kb()
        log = server.log()
    print(f"server idle: {idle['VmRSS'] / 1024:.0f} MB resident")
    print(f"abuse ({args.slow_headers} slow-header clients, {args.stalled} stalled 4 MB uploads, "
          f"{args.json} concurrent 4 MB JSON requests, all at once) took {seconds:.0f} s")
    for name, counter in counts.items():
        print(f"  {name}: " + ", ".join(f"{n} x {outcome}" for outcome, n in counter.most_common()))
    peak_mb = after["VmHWM"] / 1024
    print(f"server peak: {peak_mb:.0f} MB resident (VmHWM); afterwards {after['VmRSS'] / 1024:.0f} MB")
    tracebacks = log.count("Traceback")
    print(f"server log: {len(log.splitlines())} lines, {tracebacks} tracebacks")
    bad = [f"{name}: {outcome}" for name, counter in counts.items() for outcome in counter
           if outcome.split()[0] not in ALLOWED[name]]
    for problem in bad:
        print("unexpected:", problem)
    if peak_mb > args.max_mb:
        print(f"FAIL: peak {peak_mb:.0f} MB over {args.max_mb:.0f} MB")
    sys.exit(1 if bad or tracebacks or peak_mb > args.max_mb else 0)


if __name__ == "__main__":
    main()

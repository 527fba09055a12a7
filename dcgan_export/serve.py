"""An HTTP service around one shared ``Sampler`` (Starlette on uvicorn; no TensorFlow).

Routes::

    GET  /healthz                               liveness
    GET  /v1/model                              the generator's ONNX metadata and latent size
    GET  /v1/sample?n=25&seed=7&format=png|npy  a grid PNG, or uint8 [n, 28, 28] as .npy
    POST /v1/generate                           noise {"z": [[...]]} or an .npy body -> uint8 pixels

Every bad request gets a 4xx with a JSON ``{"error": ...}`` body and the server keeps serving.
Inference and encoding run in a thread pool (onnxruntime releases the GIL), so the event loop
stays free and concurrent requests run in parallel on the one thread-safe session.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import socket
from typing import Callable

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import DcganError, first_line
from .images import make_grid, png_bytes
from .runtime import Sampler, resolve_seed

MAX_N = 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_N = 25
MAX_SEED = 2**63 - 1
NPY_TYPE = "application/x-npy"
JSON_TYPE = "application/json"
# Bound on simultaneous inference calls. ``dcgan serve`` gives each call one onnxruntime thread
# (measured: under 64 clients, 1 thread per call served ~1.5x the requests of 2 spinning ones),
# so the cores are used by concurrent calls; a few more slots than cores hide encoding gaps.
INFERENCE_SLOTS = 8


class BadRequest(Exception):
    """A client error: becomes ``status`` with ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def create_app(sampler: Sampler) -> Starlette:
    """The ASGI app serving ``sampler``; one instance shared by every request."""
    limiter = anyio.CapacityLimiter(INFERENCE_SLOTS)
    model_info = describe_model(sampler)

    async def in_thread(fn: Callable, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(model_info)

    async def sample(request: Request) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - {"n", "seed", "format"})
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)} (expected n, seed, format)")
        n = int_param(params, "n", DEFAULT_N, 1, MAX_N)
        seed = int_param(params, "seed", None, 0, MAX_SEED)
        fmt = params.get("format", "png")
        if fmt not in ("png", "npy"):
            raise BadRequest(f"format must be png or npy, got {fmt!r}")
        seed = resolve_seed(seed)
        headers = {"X-Seed": str(seed)}
        if fmt == "npy":
            body = await in_thread(lambda: npy_bytes(sampler.sample_pixels(n, seed)))
            return Response(body, media_type=NPY_TYPE, headers=headers)
        body = await in_thread(lambda: png_bytes(make_grid(sampler.sample_pixels(n, seed))))
        return Response(body, media_type="image/png", headers=headers)

    async def generate(request: Request) -> Response:
        content_type = media_type(request.headers.get("content-type", ""))
        if content_type not in (JSON_TYPE, NPY_TYPE):
            raise BadRequest(f"Content-Type must be {JSON_TYPE} or {NPY_TYPE}, got {content_type or 'none'!r}", 415)
        body = await read_body(request, MAX_BODY_BYTES)
        if content_type == NPY_TYPE:
            z = parse_npy_noise(body, sampler.latent_dim)
        else:  # up to 4 MB of JSON: parsed off the event loop
            z = await anyio.to_thread.run_sync(parse_json_noise, body)
        pixels = await in_thread(sampler.generate_pixels, z)
        if wants_npy(request.headers.get("accept", ""), body_was_npy=content_type == NPY_TYPE):
            return Response(await in_thread(npy_bytes, pixels), media_type=NPY_TYPE)
        payload = await in_thread(lambda: json.dumps(
            {"shape": list(pixels.shape), "dtype": "uint8", "pixels": pixels.tolist()}, separators=(",", ":")))
        return Response(payload, media_type=JSON_TYPE)

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def invalid_input(request: Request, exc: DcganError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "internal server error"}, status_code=500)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/model", model, methods=["GET"]),
            Route("/v1/sample", sample, methods=["GET"]),
            Route("/v1/generate", generate, methods=["POST"]),
        ],
        exception_handlers={BadRequest: bad_request, DcganError: invalid_input,
                            HTTPException: http_error, Exception: server_error},
    )


def describe_model(sampler: Sampler) -> dict:
    """What a client needs to call the service: the noise size, the image shape, the limits."""
    return {
        "model": sampler.model_path.name,
        "sha256": hashlib.sha256(sampler.model_path.read_bytes()).hexdigest(),
        "latent_dim": sampler.latent_dim,
        "image_shape": list(sampler.image_shape),
        "metadata": sampler.metadata,
        "limits": {"max_n": MAX_N, "max_body_bytes": MAX_BODY_BYTES},
    }


def int_param(params, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def wants_npy(accept: str, body_was_npy: bool) -> bool:
    """npy when asked for, or when the noise came as npy and the client did not ask for JSON."""
    types = {media_type(part) for part in accept.split(",")}
    if NPY_TYPE in types:
        return True
    return body_was_npy and JSON_TYPE not in types


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise BadRequest(f"body too large: {declared} bytes (limit {limit})", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"body too large: over {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_noise(body: bytes) -> list:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise BadRequest('body is not valid JSON; expected {"z": [[...], ...]}') from None
    if not isinstance(doc, dict) or "z" not in doc:
        raise BadRequest('JSON body must be an object with key "z": a list of noise vectors')
    z = doc["z"]
    if not isinstance(z, list) or not z or not all(isinstance(row, list) for row in z):
        raise BadRequest('"z" must be a non-empty list of noise vectors (lists of numbers)')
    check_rows(len(z))
    return z


def parse_npy_noise(body: bytes, latent_dim: int) -> np.ndarray:
    """An .npy body as an array, checking the header first so a forged shape allocates nothing."""
    buf = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:
        raise BadRequest(f"body is not a valid .npy array ({first_line(exc)})") from None
    if len(shape) != 2 or shape[1] != latent_dim:
        raise BadRequest(f"noise must have shape (n, {latent_dim}), got {tuple(shape)}")
    check_rows(shape[0])
    if dtype.kind not in "fiu" or dtype.itemsize > 8:
        raise BadRequest(f"noise must be a real numeric array, got dtype {dtype}")
    buf.seek(0)
    try:
        arr = np.load(buf, allow_pickle=False)
    except Exception as exc:
        raise BadRequest(f"body is not a valid .npy array ({first_line(exc)})") from None
    if buf.read(1):
        raise BadRequest("body has trailing bytes after the .npy array")
    return arr


def check_rows(n: int) -> None:
    if not 1 <= n <= MAX_N:
        raise BadRequest(f"number of noise vectors must be between 1 and {MAX_N}, got {n}")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def run(sampler: Sampler, sock: socket.socket, log_level: str = "info") -> None:
    """Serve on ``sock`` (from ``listen_socket``) until interrupted (uvicorn handles SIGINT and
    SIGTERM with a graceful shutdown)."""
    import uvicorn

    config = uvicorn.Config(create_app(sampler), log_level=log_level, server_header=False,
                            access_log=log_level in ("debug", "trace", "info"))
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"dcgan serve: listening on http://{_url_host(bound_host)}:{bound_port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), or a one-line DcganError saying why not: bound before
    the model loads and uvicorn starts, so a busy port costs nothing and prints no log."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise DcganError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "the port is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise DcganError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

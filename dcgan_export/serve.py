"""An HTTP service around one shared ``Sampler`` (Starlette on uvicorn; no TensorFlow).

Routes::

    GET  /healthz                               liveness
    GET  /v1/model                              the generator's ONNX metadata and latent size
    GET  /v1/sample?n=25&seed=7&format=png|npy&truncation=0.7&class=K   a grid PNG, or uint8 [n, H, W(, 3)] as .npy
    POST /v1/generate                           noise {"z": [[...]], "labels": [...]} or an .npy body (?class=K)
                                                -> uint8 pixels; labels or class for conditional models only
    GET  /                                      a page sampling the model in the browser (serve_page.py)
    GET  /v2, /v2/health/{live,ready}           Open Inference Protocol (KServe v2; serve_v2.py): server, health
    GET  /v2/models/NAME[/ready]                model metadata, readiness (NAME: --name, default dcgan)
    POST /v2/models/NAME/infer                  z (and labels) -> images, pixels: JSON or binary tensors

Every bad request gets a 4xx with a JSON ``{"error": ...}`` body and the server keeps serving,
including the ones the HTTP layer refuses itself (``serve_http.GuardedH11Protocol``, which also
guards connections: header deadline, connection cap, lingering close). Inference and encoding
run in a thread pool (onnxruntime releases the GIL), so the event loop stays free and concurrent
requests run in parallel on the one thread-safe session.

What a client can make the server hold is bounded (``Limits``): connections, time to send the
headers and the body, request-body bytes held at once, JSON documents parsed at once.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import math
import os
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Callable

import anyio
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .limits import MAX_SEED
from .errors import DcganError, ModelOutputError, first_line
from .images import make_grid, png_bytes
from .runtime import MIN_TRUNCATION, Sampler, check_truncation, resolve_seed
from .serve_http import MAX_HEAD_BYTES, guarded_protocol
from .serve_page import page_routes

MAX_N = 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_N = 25
NPY_TYPE = "application/x-npy"
JSON_TYPE = "application/json"
# Bound on simultaneous inference calls. ``dcgan serve`` gives each call one onnxruntime thread
# (measured: under 64 clients, 1 thread per call served ~1.5x the requests of 2 spinning ones),
# so the cores are used by concurrent calls; a few more slots than cores hide encoding gaps.
INFERENCE_SLOTS = 8
# Images per onnxruntime call: its activations take ~0.1 MB an image (1,024 at once: 100 MB, so 8
# slots: 800 MB), while 64 at a time is as fast and gives the same pixels.
INFERENCE_BATCH = 64
log = logging.getLogger("uvicorn.error")  # uvicorn's error log: same format, same --log-level


@dataclass(frozen=True)
class Limits:
    """What clients can make the server hold. Each has an environment override,
    ``DCGAN_SERVE_<NAME>`` (e.g. ``DCGAN_SERVE_HEADER_TIMEOUT=2``), read by ``from_env``."""

    max_connections: int = 256  # open connections; a request above it gets 503
    header_timeout: float = 10.0  # seconds from connecting (or a request's first byte) to its last header
    body_timeout: float = 30.0  # seconds to receive a whole request body: 408 after it
    body_bytes_in_flight: int = 64 * 1024 * 1024  # request bodies held at once, all requests together: 503 above
    json_parses: int = 2  # JSON bodies parsed at once (a 4 MB body becomes a few times that in Python objects)
    linger: float = 2.0  # seconds a refused client still sending its body has to read the answer (serve_http)

    @classmethod
    def from_env(cls, environ=os.environ) -> "Limits":
        """The defaults, with any ``DCGAN_SERVE_*`` overrides; a bad value is a one-line DcganError."""
        values = {}
        for field in fields(cls):
            name = f"DCGAN_SERVE_{field.name.upper()}"
            raw = environ.get(name)
            if raw is None:
                continue
            try:
                value = int(raw) if field.type == "int" else float(raw)
            except ValueError:
                raise DcganError(f"{name} must be a number, got {raw[:40]!r}") from None
            if not (math.isfinite(value) and value > 0):  # nan or inf would switch the bound off
                raise DcganError(f"{name} must be a finite number > 0, got {raw[:40]!r}")
            values[field.name] = value
        limits = cls(**values)
        if limits.body_bytes_in_flight < MAX_BODY_BYTES:
            raise DcganError(f"DCGAN_SERVE_BODY_BYTES_IN_FLIGHT must be at least the body limit, {MAX_BODY_BYTES}")
        return limits


class BadRequest(Exception):
    """A client error: becomes ``status`` with ``{"error": message}``. One raised before the
    request's body is read ends the connection too: the HTTP layer adds ``Connection: close``
    and closes with a lingering close (``serve_http``), so the client reads the answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client hung up before its body arrived: one log line, no answer (nobody to read it)."""


class ByteBudget:
    """Request-body bytes held at once, across all requests. Used from the event loop only, so
    no lock: ``take`` either reserves all it is asked for or nothing."""

    def __init__(self, total: int):
        self.total, self.used = total, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


class BodyHold:
    """One request's share of the ``ByteBudget``, grown as its body arrives and given back at once
    when the body has been parsed (``async with budget_hold(...)``)."""

    def __init__(self, budget: ByteBudget):
        self.budget, self.held = budget, 0

    def cover(self, size: int) -> None:
        """Hold ``size`` bytes in all, or refuse the request with 503 (its body stays unread)."""
        if size > self.held:
            if not self.budget.take(size - self.held):
                raise BadRequest("server busy: too many request bodies in flight; retry later", 503)
            self.held = size


@asynccontextmanager
async def budget_hold(budget: ByteBudget):
    hold = BodyHold(budget)
    try:
        yield hold
    finally:
        budget.give(hold.held)


def create_app(sampler: Sampler, limits: Limits | None = None, name: str = "dcgan") -> Starlette:
    """The ASGI app serving ``sampler`` (as model ``name`` on /v2); one instance shared by every request."""
    from .serve_v2 import v2_routes  # it builds on this module's request machinery

    limits = limits or Limits()
    limiter = anyio.CapacityLimiter(INFERENCE_SLOTS)
    json_limiter = anyio.CapacityLimiter(limits.json_parses)
    budget = ByteBudget(limits.body_bytes_in_flight)
    model_info = describe_model(sampler)

    async def in_thread(fn: Callable, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        return JSONResponse(model_info)

    async def sample(request: Request) -> Response:
        params = request.query_params
        unknown = sorted(set(params) - {"n", "seed", "format", "truncation", "class"})
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)[:200]} "
                             "(expected n, seed, format, truncation, class)")
        n = int_param(params, "n", DEFAULT_N, 1, MAX_N)
        seed = int_param(params, "seed", None, 0, MAX_SEED)
        truncation = truncation_param(params)
        label = class_param(params, sampler)  # None on a conditional model: image i is class i % K
        fmt = params.get("format", "png")
        if fmt not in ("png", "npy"):
            raise BadRequest(f"format must be png or npy, got {fmt[:40]!r}")
        seed = resolve_seed(seed)
        headers = {"X-Seed": str(seed)}
        if fmt == "npy":
            body = await in_thread(lambda: npy_bytes(sampler.sample_pixels(n, seed, INFERENCE_BATCH, truncation,
                                                                            label)))
            return Response(body, media_type=NPY_TYPE, headers=headers)
        body = await in_thread(lambda: png_bytes(make_grid(sampler.sample_pixels(n, seed, INFERENCE_BATCH,
                                                                                 truncation, label))))
        return Response(body, media_type="image/png", headers=headers)

    async def read_noise(request: Request, content_type: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The request's noise as float32 [n, latent], and a JSON body's labels (None without).
        The body counts against the byte budget until it is parsed, and is dropped when this
        returns: only the arrays live on."""
        async with budget_hold(budget) as hold:
            body = await read_body(request, MAX_BODY_BYTES, hold, limits.body_timeout)
            if content_type == NPY_TYPE:
                return parse_npy_noise(body, sampler.latent_dim), None
            # Parsed off the event loop, a few at a time: a 4 MB body becomes several times that.
            return await anyio.to_thread.run_sync(parse_json_request, body, sampler, limiter=json_limiter)

    async def generate(request: Request) -> Response:
        content_type = media_type(request.headers.get("content-type", ""))
        if content_type not in (JSON_TYPE, NPY_TYPE):
            raise BadRequest(f"Content-Type must be {JSON_TYPE} or {NPY_TYPE}, got {content_type[:60] or 'none'!r}",
                             415)
        label = class_param(request.query_params, sampler)  # checked before the body is read
        z, labels = await read_noise(request, content_type)
        labels = generate_labels(sampler, len(z), label, labels)
        pixels = await in_thread(generate_in_batches, sampler, z, labels)
        del z
        if wants_npy(request.headers.get("accept", ""), body_was_npy=content_type == NPY_TYPE):
            return Response(await in_thread(npy_bytes, pixels), media_type=NPY_TYPE)
        return Response(await in_thread(pixels_json, pixels), media_type=JSON_TYPE)

    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def client_gone(request: Request, exc: ClientGone) -> Response:
        log.info("%s - %s %s: %s", client_label(request), request.method, request.url.path, exc)
        return Response(status_code=400)  # never sent: uvicorn drops writes to a closed connection

    async def invalid_input(request: Request, exc: DcganError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def model_output(request: Request, exc: ModelOutputError) -> Response:
        """A broken model, not a bad request: 500, with the details (and the model's path) in the
        log only."""
        log.error("%s - %s %s: 500, non-finite model output: %s", client_label(request), request.method,
                  request.url.path, first_line(exc))
        return JSONResponse({"error": "the model produced non-finite values (NaN or infinity)"}, status_code=500)

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
            *page_routes(sampler.model_path),
            *v2_routes(sampler, name, limits=limits, budget=budget, limiter=limiter, json_limiter=json_limiter),
        ],
        exception_handlers={BadRequest: bad_request, ClientGone: client_gone, ModelOutputError: model_output,
                            DcganError: invalid_input, HTTPException: http_error, Exception: server_error},
    )


def client_label(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "client"


def describe_model(sampler: Sampler) -> dict:
    """What a client needs to call the service: the noise size, the image shape, the limits."""
    return {
        "model": sampler.model_path.name,
        "sha256": hashlib.sha256(sampler.model_path.read_bytes()).hexdigest(),
        "latent_dim": sampler.latent_dim,
        "image_shape": list(sampler.image_shape),
        "metadata": sampler.metadata,
        "num_classes": sampler.num_classes,  # null: unconditional
        "class_names": None if sampler.class_names is None else list(sampler.class_names),
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


def truncation_param(params) -> float | None:
    """``truncation=PSI`` (the Sampler's truncation trick), or None."""
    raw = params.get("truncation")
    if raw is None:
        return None
    try:
        return check_truncation(float(raw))
    except (ValueError, DcganError):
        raise BadRequest(f"truncation must be a finite number >= {MIN_TRUNCATION}, got {raw[:40]!r}") from None


def class_param(params, sampler: Sampler) -> int | None:
    """``class=K`` or ``class=NAME``: one class of a conditional model, as its index; or None."""
    raw = params.get("class")
    if raw is None:
        return None
    if sampler.classes is None:
        raise BadRequest("class: this model is not class-conditional: it takes no class")
    return sampler.classes.index(raw)


def generate_labels(sampler: Sampler, n: int, label: int | None, labels) -> np.ndarray | None:
    """The classes of /v1/generate's n images: ``class=`` in the query for all of them, or
    ``"labels"`` in a JSON body, one each. A conditional model needs one of the two: a request's
    own noise has no image index to cycle the classes by."""
    if label is not None and labels is not None:
        raise BadRequest('give class= in the query or "labels" in the body, not both')
    if label is None and labels is None and sampler.classes is not None:
        raise BadRequest('this model is class-conditional: give "labels" (one class per image) in a JSON body or '
                         f"class= in the query (classes {sampler.classes.listing()})")
    return labels if label is None else sampler.resolve_labels(label, n)


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def wants_npy(accept: str, body_was_npy: bool) -> bool:
    """npy when asked for, or when the noise came as npy and the client did not ask for JSON."""
    types = {media_type(part) for part in accept.split(",")}
    if NPY_TYPE in types:
        return True
    return body_was_npy and JSON_TYPE not in types


async def read_body(request: Request, limit: int, hold: BodyHold, timeout: float) -> bytes:
    """The request body, within ``timeout`` seconds in all (else 408) and ``limit`` bytes (else
    413, as soon as that is known), each byte covered by ``hold`` before it is kept (else 503).
    A declared Content-Length is checked and reserved before any of the body is read."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise BadRequest(f"body too large: {declared} bytes (limit {limit})", 413)
        hold.cover(int(declared))
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(f"body too large: over {limit} bytes", 413)
                hold.cover(size)
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(f"request body not received within {timeout:g} s ({size} bytes came)", 408) from None
    except ClientDisconnect:
        expected = f" of {declared}" if declared is not None else ""
        raise ClientGone(f"client disconnected during its upload ({size}{expected} bytes received)") from None
    return b"".join(chunks)


def parse_json_noise(body: bytes, sampler: Sampler) -> np.ndarray:
    """A JSON body ``{"z": [[...], ...]}`` as float32 [n, latent] (any labels dropped)."""
    return parse_json_request(body, sampler)[0]


def parse_json_request(body: bytes, sampler: Sampler) -> tuple[np.ndarray, np.ndarray | None]:
    """A JSON body ``{"z": [[...], ...]}`` as float32 [n, latent], with its ``"labels"`` (a
    conditional model's classes: one for all, or one per vector) as int64 [n], or None. Refuses a
    body with more values than the largest request holds before parsing it, since every value
    becomes a Python object (~30 bytes for a number that took 2 in the body); the parsed lists are
    dropped here."""
    max_values = MAX_N * sampler.latent_dim
    slack = MAX_N + 16 + (MAX_N if sampler.classes is not None else 0)  # commas between vectors, other keys, labels
    if body.count(b",") > max_values + slack:
        raise BadRequest(f"JSON body holds more than {max_values} values ({MAX_N} vectors of {sampler.latent_dim})")
    try:
        doc = json.loads(body)  # one str copy of the body, then the objects
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise BadRequest('body is not valid JSON; expected {"z": [[...], ...]}') from None
    if not isinstance(doc, dict) or "z" not in doc:
        raise BadRequest('JSON body must be an object with key "z": a list of noise vectors')
    z = doc.pop("z")
    labels = doc.pop("labels", None)
    del doc
    if not isinstance(z, list) or not z or not all(isinstance(row, list) for row in z):
        raise BadRequest('"z" must be a non-empty list of noise vectors (lists of numbers)')
    check_rows(len(z))
    if not all(type(x) in (int, float) for row in z for x in row):  # bool is not a number here
        raise BadRequest('"z" must hold numbers only')
    z = sampler.check_noise(z)
    return z, None if labels is None else sampler.resolve_labels(labels, len(z))


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


def generate_in_batches(sampler: Sampler, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    if labels is None:
        return np.concatenate([sampler.generate_pixels(z[i:i + INFERENCE_BATCH]) for i in range(0, len(z), INFERENCE_BATCH)])
    return np.concatenate([sampler.generate_pixels(z[i:i + INFERENCE_BATCH], labels[i:i + INFERENCE_BATCH])
                           for i in range(0, len(z), INFERENCE_BATCH)])


def pixels_json(pixels: np.ndarray) -> bytes:
    """The JSON answer, encoded an image at a time: ``pixels.tolist()`` of 1,024 images at once
    would be 8 MB of lists before the 2.4 MB of text."""
    head = json.dumps({"shape": list(pixels.shape), "dtype": "uint8"}, separators=(",", ":"))[:-1]
    images = b",".join(json.dumps(image.tolist(), separators=(",", ":")).encode() for image in pixels)
    return b"".join([head.encode(), b',"pixels":[', images, b"]}"])


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def run(sampler: Sampler, sock: socket.socket, log_level: str = "info", limits: Limits | None = None,
        name: str = "dcgan") -> None:
    """Serve on ``sock`` (from ``listen_socket``) until interrupted (uvicorn handles SIGINT and
    SIGTERM with a graceful shutdown). ``limits``: default ``Limits.from_env()``."""
    limits = limits or Limits.from_env()
    config = uvicorn.Config(create_app(sampler, limits, name), log_level=log_level, server_header=False,
                            access_log=log_level in ("debug", "trace", "info"), ws="none",
                            http=guarded_protocol(limits), h11_max_incomplete_event_size=MAX_HEAD_BYTES)
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
    except UnicodeError:  # the IDNA codec refuses labels over 63 characters and other non-names
        raise DcganError(f"--host {host[:80]}: not a valid host name") from None
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

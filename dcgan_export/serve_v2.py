"""The Open Inference Protocol (KServe v2) for ``dcgan serve``: the REST API NVIDIA Triton and
KServe speak, so one client (``tritonclient.http``, KServe's) works against this server and
against ``dcgan export --triton-repo`` in Triton alike.

Routes (NAME: ``dcgan`` unless ``dcgan serve --name``; the one version is ``1``)::

    GET  /v2                                   server metadata, extensions: binary_tensor_data
    GET  /v2/health/live, /v2/health/ready     200, empty body
    GET  /v2/models/NAME[/versions/1]          model metadata: tensors, datatypes, shapes (-1: batch)
    GET  /v2/models/NAME[/versions/1]/ready    200, empty body
    POST /v2/models/NAME[/versions/1]/infer    tensors in, tensors out: JSON, or binary after a JSON header

Tensors are named as in the model: input ``z`` FP32 [-1, latent] (and ``labels`` INT64 [-1, 1]
where the model has that input: shaped as Triton's batching shapes it, [n] taken too), outputs
``images`` FP32 [-1, H, W, C] and ``pixels`` UINT8 [-1, H, W(, 3)]. An infer body is JSON, or a
JSON header of ``Inference-Header-Content-Length`` bytes followed by the inputs' bytes, each
input's share given by its ``parameters.binary_data_size``. Requests go through ``serve.py``'s
machinery and limits, as on ``/v1``: the body budget and deadline, 1 to 1,024 vectors, inference
64 images a call off the event loop; errors are JSON ``{"error": ...}``: 400 for a bad tensor,
404 for an unknown model or version, 413 for a body over 4 MB, 415 for a body type or encoding
other than JSON or binary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import anyio
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .contract import IMAGES_OUTPUT, LABELS_INPUT, PIXELS_OUTPUT
from .runtime import Sampler
from .serve import (INFERENCE_BATCH, JSON_TYPE, MAX_BODY_BYTES, MAX_N, BadRequest, ByteBudget, Limits, budget_hold,
                    check_rows, media_type, read_body)
from .triton import MODEL_NAME, VERSION, check_model_name

BINARY_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "onnxruntime_onnx"  # what Triton reports for the same model
# Datatypes as the binary extension sends them: little-endian, row-major.
DTYPES = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4"), "UINT8": np.dtype("u1")}


@dataclass(frozen=True)
class Tensor:
    """One input or output as the protocol names it; ``shape`` without the batch dimension,
    ``accepts``: the datatypes an input takes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = ()

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}


def model_tensors(sampler: Sampler) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(inputs, outputs) by name: the inputs the model's graph has (its noise, and its labels if
    it has them), and the two outputs the Sampler gives for every model."""
    inputs = {}
    for meta in sampler.graph_io()[0]:
        if meta.name == LABELS_INPUT:  # int64 [N] (the Sampler checked): Triton declares it [-1, 1]
            inputs[meta.name] = Tensor(meta.name, "INT64", (1,), ("INT64", "INT32"))
        else:
            inputs[meta.name] = Tensor(meta.name, "FP32", (sampler.latent_dim,), ("FP32",))
    outputs = {IMAGES_OUTPUT: Tensor(IMAGES_OUTPUT, "FP32", tuple(sampler.image_shape)),
               PIXELS_OUTPUT: Tensor(PIXELS_OUTPUT, "UINT8", tuple(sampler.pixel_shape))}
    return inputs, outputs


@dataclass
class InferRequest:
    """A parsed infer request: its ``id``, the noise and labels (None without), and the outputs
    asked for, each with whether it goes back as binary."""

    id: str | None
    z: np.ndarray
    labels: np.ndarray | None
    outputs: list[tuple[Tensor, bool]]


def v2_routes(sampler: Sampler, name: str = MODEL_NAME, *, limits: Limits, budget: ByteBudget,
              limiter: anyio.CapacityLimiter, json_limiter: anyio.CapacityLimiter) -> list[Route]:
    """The v2 routes for ``sampler`` as model ``name``, sharing ``create_app``'s limits, byte
    budget, inference slots (``limiter``) and JSON parse slots (``json_limiter``)."""
    check_model_name(name)
    inputs, outputs = model_tensors(sampler)
    server_info = {"name": "dcgan", "version": __version__, "extensions": ["binary_tensor_data"]}
    metadata = {"name": name, "versions": [VERSION], "platform": PLATFORM,
                "inputs": [t.metadata() for t in inputs.values()], "outputs": [t.metadata() for t in outputs.values()]}

    def check_model(request: Request) -> None:
        model, version = request.path_params["model"], request.path_params.get("version")
        if model != name:
            raise BadRequest(f"unknown model {model[:80]!r}: this server serves {name!r}", 404)
        if version is not None and version != VERSION:
            raise BadRequest(f"model {name!r} has no version {version[:40]!r}: its one version is {VERSION}", 404)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(server_info)

    async def healthy(request: Request) -> Response:
        return Response(status_code=200)

    async def model_metadata(request: Request) -> Response:
        check_model(request)
        return JSONResponse(metadata)

    async def model_ready(request: Request) -> Response:
        check_model(request)
        return Response(status_code=200)

    async def infer(request: Request) -> Response:
        check_model(request)  # these checks come before the body is read
        content_type = media_type(request.headers.get("content-type", ""))
        if content_type not in ("", JSON_TYPE, BINARY_TYPE):
            raise BadRequest(f"Content-Type must be {JSON_TYPE} or {BINARY_TYPE}, got {content_type[:60]!r}", 415)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise BadRequest(f"Content-Encoding {encoding[:40]!r} is not supported: send the body uncompressed", 415)
        head_length = header_length(request.headers.get(HEADER_LENGTH))
        async with budget_hold(budget) as hold:
            body = await read_body(request, MAX_BODY_BYTES, hold, limits.body_timeout)
            parsed = await anyio.to_thread.run_sync(parse_infer, body, head_length, inputs, outputs,
                                                    limiter=json_limiter)
        del body
        results = await anyio.to_thread.run_sync(run_model, sampler, parsed, limiter=limiter)
        content, json_length = await anyio.to_thread.run_sync(encode_response, name, parsed, results,
                                                              limiter=limiter)
        if json_length is None:
            return Response(content, media_type=JSON_TYPE)
        return Response(content, media_type=BINARY_TYPE, headers={HEADER_LENGTH: str(json_length)})

    model_routes = []
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        model_routes += [Route(base, model_metadata, methods=["GET"]),
                         Route(f"{base}/ready", model_ready, methods=["GET"]),
                         Route(f"{base}/infer", infer, methods=["POST"])]
    return [Route("/v2", server_metadata, methods=["GET"]),
            Route("/v2/health/live", healthy, methods=["GET"]),
            Route("/v2/health/ready", healthy, methods=["GET"]),  # the model loads before the server listens
            *model_routes]


def header_length(raw: str | None) -> int | None:
    """``Inference-Header-Content-Length`` as a byte count, None without it."""
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{HEADER_LENGTH} must be a byte count, got {raw[:40]!r}")
    return int(raw)


# -- the request ----------------------------------------------------------------------------------


def parse_infer(body: bytes, head_length: int | None, inputs: dict[str, Tensor],
                outputs: dict[str, Tensor]) -> InferRequest:
    """An infer body as arrays, or a BadRequest saying what is wrong. A JSON header with more
    values than the largest request holds is refused before it is parsed (every value becomes a
    Python object of ~30 bytes)."""
    if head_length is not None and head_length > len(body):
        raise BadRequest(f"{HEADER_LENGTH} is {head_length} but the body has {len(body)} bytes")
    head = body if head_length is None else body[:head_length]
    binary = memoryview(body)[len(head):]
    noise = inputs[noise_input(inputs)]
    latent = noise.shape[0]
    max_values = MAX_N * (latent + (1 if LABELS_INPUT in inputs else 0))
    if head.count(b",") > max_values + MAX_N + 64:  # commas between rows, and of the other keys
        raise BadRequest(f"JSON holds more than {max_values} values ({MAX_N} vectors of {latent})")
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise BadRequest("body is not valid JSON"
                         + ("" if head_length is not None else f" (binary data needs the {HEADER_LENGTH} header)")) from None
    if not isinstance(doc, dict):
        raise BadRequest('the request must be a JSON object with "inputs"')
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest('"id" must be a string')
    binary_default = flag(parameters(doc, "the request"), "binary_data_output")
    arrays = parse_inputs(doc.get("inputs"), binary, inputs)
    z = arrays[noise.name]
    labels = arrays.get(LABELS_INPUT)
    if labels is not None:
        labels = labels.reshape(len(labels))
        if len(labels) != len(z):
            raise BadRequest(f"input {LABELS_INPUT!r} has {len(labels)} rows and input {noise.name!r} {len(z)}: "
                             "one label per vector")
    return InferRequest(request_id, z, labels, parse_outputs(doc.get("outputs"), binary_default, outputs))


def noise_input(inputs: dict[str, Tensor]) -> str:
    """The name of the noise input: the one that is not the labels (``z`` in exported models)."""
    return next(name for name in inputs if name != LABELS_INPUT)


def parse_inputs(items, binary: memoryview, inputs: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """Every input of the model, from JSON ``data`` or its share of the binary data, in order."""
    expected = ", ".join(inputs)
    arrays, offset = {}, 0
    for name, item in named_items(items, inputs, "input", '{"name", "shape", "datatype", "data"}'):
        tensor = inputs[name]
        datatype = item.get("datatype")
        if datatype not in tensor.accepts:
            raise BadRequest(f"input {name!r} must have datatype {' or '.join(tensor.accepts)}, got {str(datatype)[:20]!r}")
        shape = check_shape(item.get("shape"), tensor)
        params = parameters(item, f"input {name!r}")
        if "shared_memory_region" in params:
            raise BadRequest("shared memory is not supported: send the data in the request")
        size = params.get("binary_data_size")
        if size is None:
            arrays[name] = json_tensor(item.get("data"), shape, DTYPES[datatype], name)
            continue
        if "data" in item:
            raise BadRequest(f"input {name!r} has both \"data\" and binary_data_size")
        expected_size = math.prod(shape) * DTYPES[datatype].itemsize
        if type(size) is not int or size != expected_size:
            raise BadRequest(f"input {name!r}: binary_data_size must be {expected_size} for shape {shape} "
                             f"{datatype}, got {str(size)[:20]}")
        if offset + size > len(binary):
            raise BadRequest(f"input {name!r}: the binary data ends {offset + size - len(binary)} bytes short")
        arrays[name] = np.frombuffer(binary, DTYPES[datatype], math.prod(shape), offset).reshape(shape).copy()
        offset += size
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise BadRequest(f"missing input(s) {', '.join(missing)}: this model's inputs are {expected}")
    return arrays


def named_items(items, known: dict[str, Tensor], kind: str, form: str):
    """(name, item) of a request's "inputs" or "outputs" list: each names one of ``known``, once."""
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise BadRequest(f'"{kind}s" must be a non-empty list of {form}')
    seen = set()
    for item in items:
        name = item.get("name")
        if not isinstance(name, str) or name not in known:
            raise BadRequest(f"unknown {kind} {str(name)[:60]!r}: this model's {kind}s are {', '.join(known)}")
        if name in seen:
            raise BadRequest(f"{kind} {name!r} is given twice")
        seen.add(name)
        yield name, item


def check_shape(shape, tensor: Tensor) -> list[int]:
    """An input's shape: [n, *tensor.shape] with 1 <= n <= MAX_N ([n] for [n, 1])."""
    if not isinstance(shape, list) or not shape or not all(type(d) is int for d in shape):
        raise BadRequest(f'input {tensor.name!r}: "shape" must be a list of integers, got {str(shape)[:60]}')
    allowed = [[-1, *tensor.shape]] + ([[-1]] if tensor.shape == (1,) else [])
    if not any(len(shape) == len(a) and list(shape[1:]) == a[1:] for a in allowed):
        raise BadRequest(f"input {tensor.name!r} must have shape {' or '.join(map(str, allowed))} "
                         f"(-1: the number of vectors), got {shape}")
    check_rows(shape[0])
    return shape


def json_tensor(data, shape: list[int], dtype: np.dtype, name: str) -> np.ndarray:
    """A tensor's JSON ``data``, flat or nested row-major, as an array of ``shape``."""
    if not isinstance(data, list):
        raise BadRequest(f'input {name!r} needs "data" (a list of numbers) or binary data')
    flat = data
    if data and isinstance(data[0], list):  # nested: exactly the shape, level by level
        flat = [data]
        for dim in shape:
            level = []
            for part in flat:
                if not isinstance(part, list) or len(part) != dim:
                    raise BadRequest(f'input {name!r}: nested "data" must have shape {shape}')
                level.extend(part)
            flat = level
    if len(flat) != math.prod(shape):
        raise BadRequest(f'input {name!r}: "data" holds {len(flat)} values, shape {shape} needs {math.prod(shape)}')
    kinds = (int,) if dtype.kind == "i" else (int, float)  # bool is not a number here
    if not all(type(x) in kinds for x in flat):
        raise BadRequest(f'input {name!r}: "data" must hold {"integers" if dtype.kind == "i" else "numbers"} only')
    try:
        return np.array(flat, dtype=dtype.newbyteorder("=")).reshape(shape)
    except OverflowError:
        raise BadRequest(f'input {name!r}: a value of "data" is out of range for its datatype') from None


def parse_outputs(items, binary_default: bool, outputs: dict[str, Tensor]) -> list[tuple[Tensor, bool]]:
    """The outputs asked for, in order, each with whether it goes back binary; all when none is named."""
    if items is None:
        return [(tensor, binary_default) for tensor in outputs.values()]
    wanted = []
    for name, item in named_items(items, outputs, "output", '{"name": ...}'):
        params = parameters(item, f"output {name!r}")
        if params.get("class_count"):
            raise BadRequest("the classification extension is not supported")
        if "shared_memory_region" in params:
            raise BadRequest("shared memory is not supported: outputs come in the response")
        wanted.append((outputs[name], flag(params, "binary_data", binary_default)))
    return wanted


def parameters(doc: dict, what: str) -> dict:
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest(f'"parameters" of {what} must be an object')
    return params


def flag(params: dict, key: str, default: bool = False) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter {key} must be true or false, got {str(value)[:20]}")
    return value


# -- the model and the response -----------------------------------------------------------------------


def run_model(sampler: Sampler, request: InferRequest) -> dict[str, np.ndarray]:
    """The outputs asked for, INFERENCE_BATCH images a call; both from one run when both are wanted."""
    names = {tensor.name for tensor, _ in request.outputs}
    parts: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(request.z), INFERENCE_BATCH):
        z = request.z[start:start + INFERENCE_BATCH]
        labels = None if request.labels is None else request.labels[start:start + INFERENCE_BATCH]
        if names == {IMAGES_OUTPUT, PIXELS_OUTPUT}:
            images, pixels = sampler.generate_with_pixels(z, labels)
            parts[IMAGES_OUTPUT].append(images)
            parts[PIXELS_OUTPUT].append(pixels)
        elif IMAGES_OUTPUT in names:
            parts[IMAGES_OUTPUT].append(sampler.generate(z, labels))
        else:
            parts[PIXELS_OUTPUT].append(sampler.generate_pixels(z, labels))
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def encode_response(model_name: str, request: InferRequest, results: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary outputs follow it (else
    None). JSON data is encoded an image at a time: ``tolist()`` of 1,024 images at once would be
    tens of MB of Python floats."""
    head = {"model_name": model_name, "model_version": VERSION, **({"id": request.id} if request.id is not None else {})}
    entries, blobs = [], []
    for tensor, binary in request.outputs:
        array = results[tensor.name]
        meta = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, DTYPES[tensor.datatype]).tobytes()
            entries.append(json.dumps({**meta, "parameters": {"binary_data_size": len(blob)}}).encode())
            blobs.append(blob)
        else:
            values = b",".join(json.dumps(item.ravel().tolist())[1:-1].encode() for item in array)
            entries.append(json.dumps(meta)[:-1].encode() + b', "data": [' + values + b"]}")
    header = json.dumps(head)[:-1].encode() + b', "outputs": [' + b", ".join(entries) + b"]}"
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)

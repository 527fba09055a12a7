"""dcgan serve's Open Inference Protocol (KServe v2): a real server driven by Triton's own client
(``tritonclient.http``, which nobody here wrote), raw HTTP for the errors, and starlette's
TestClient for models the live server does not serve (class-conditional, broken)."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
th = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from helpers import ROOT, make_tiny_generator, run_dcgan  # noqa: E402
from helpers import load_benchmark  # noqa: E402
from dcgan_export.errors import DcganError  # noqa: E402
from dcgan_export.runtime import Sampler  # noqa: E402
from dcgan_export.serve import MAX_BODY_BYTES, MAX_N, create_app  # noqa: E402

MODEL = ROOT / "models" / "generator.onnx"
INFER = "/v2/models/dcgan/infer"


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    return Sampler(MODEL, threads=1)


@pytest.fixture(scope="module")
def server():
    with load_benchmark().start_server(MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def triton(server):
    client = th.InferenceServerClient(server.base.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base, timeout=30) as client:
        yield client


def z_input(z: np.ndarray, binary: bool) -> th.InferInput:
    tensor = th.InferInput("z", list(z.shape), "FP32")
    tensor.set_data_from_numpy(z, binary_data=binary)
    return tensor


# --- Triton's client against the real server --------------------------------------------------------


def test_health_and_metadata(triton, sampler):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("dcgan") and triton.is_model_ready("dcgan", "1")
    assert not triton.is_model_ready("other") and not triton.is_model_ready("dcgan", "2")
    server = triton.get_server_metadata()
    assert server["name"] == "dcgan" and "binary_tensor_data" in server["extensions"]
    assert triton.get_model_metadata("dcgan") == {
        "name": "dcgan", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "z", "datatype": "FP32", "shape": [-1, 100]}],
        "outputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]},
                    {"name": "pixels", "datatype": "UINT8", "shape": [-1, 28, 28]}]}
    assert triton.get_model_metadata("dcgan", "1")["name"] == "dcgan"


OUTPUT_CHOICES = {
    "all, default (binary)": None,
    "pixels binary, images JSON": [("pixels", True), ("images", False)],
    "images binary, pixels JSON": [("images", True), ("pixels", False)],
    "pixels JSON only": [("pixels", False)],
    "images binary only": [("images", True)],
}


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary z", "JSON z"])
@pytest.mark.parametrize("choice", OUTPUT_CHOICES, ids=list(OUTPUT_CHOICES))
def test_infer_gives_the_samplers_images(triton, sampler, binary_in, choice):
    z = sampler.noise(7, seed=11)
    wanted = OUTPUT_CHOICES[choice]
    outputs = None if wanted is None else [th.InferRequestedOutput(name, binary_data=b) for name, b in wanted]
    result = triton.infer("dcgan", [z_input(z, binary_in)], outputs=outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_name"] == "dcgan"
    names = {"images", "pixels"} if wanted is None else {name for name, _ in wanted}
    if "pixels" in names:
        pixels = result.as_numpy("pixels")
        assert pixels.dtype == np.uint8 and pixels.shape == (7, 28, 28)
        np.testing.assert_array_equal(pixels, sampler.generate_pixels(z))
    if "images" in names:
        images = result.as_numpy("images")
        assert images.dtype == np.float32 and images.shape == (7, 28, 28, 1)
        np.testing.assert_allclose(images, sampler.generate(z), rtol=0, atol=1e-6)
    assert {o["name"] for o in result.get_response()["outputs"]} == names


def test_the_largest_request_goes_through_in_batches(triton, sampler):
    z = sampler.noise(MAX_N, seed=5)
    result = triton.infer("dcgan", [z_input(z, True)], outputs=[th.InferRequestedOutput("pixels")],
                          model_version="1")
    np.testing.assert_array_equal(result.as_numpy("pixels"), sampler.generate_pixels(z))


def test_errors_reach_tritons_client_with_their_status(triton, sampler):
    z = sampler.noise(2, seed=1)
    for call, status in ((lambda: triton.infer("nope", [z_input(z, True)]), "404"),
                         (lambda: triton.infer("dcgan", [z_input(z, True)], model_version="2"), "404"),
                         (lambda: triton.get_model_metadata("nope"), "404")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == status and caught.value.message()
    bad = th.InferInput("z", [2, 100], "FP64")
    bad.set_data_from_numpy(z.astype(np.float64))
    with pytest.raises(InferenceServerException, match="datatype FP32"):
        triton.infer("dcgan", [bad])
    assert triton.is_server_live()


# --- raw HTTP: the protocol's JSON, and every kind of bad request ------------------------------------


def infer_json(z, **extra) -> dict:
    return {"inputs": [{"name": "z", "shape": list(np.shape(z)), "datatype": "FP32",
                        "data": np.asarray(z).ravel().tolist()}], **extra}


def binary_body(z: np.ndarray, header: dict | None = None) -> tuple[bytes, dict]:
    """A binary request: the JSON header, then z's bytes."""
    raw = np.ascontiguousarray(z, "<f4").tobytes()
    doc = header or {"inputs": [{"name": "z", "shape": list(z.shape), "datatype": "FP32",
                                 "parameters": {"binary_data_size": len(raw)}}]}
    head = json.dumps(doc).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def test_health_answers_have_empty_bodies(http):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/dcgan/ready", "/v2/models/dcgan/versions/1/ready"):
        resp = http.get(path)
        assert resp.status_code == 200 and resp.content == b"", path


def test_json_answer_follows_the_protocol(http, sampler):
    z = sampler.noise(2, seed=3)
    resp = http.post(INFER, json=infer_json(z, id="abc", outputs=[{"name": "pixels"}, {"name": "images"}]))
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in resp.headers
    doc = resp.json()
    assert doc["model_name"] == "dcgan" and doc["model_version"] == "1" and doc["id"] == "abc"
    pixels, images = doc["outputs"]
    assert (pixels["name"], pixels["datatype"], pixels["shape"]) == ("pixels", "UINT8", [2, 28, 28])
    assert (images["name"], images["datatype"], images["shape"]) == ("images", "FP32", [2, 28, 28, 1])
    np.testing.assert_array_equal(np.array(pixels["data"], np.uint8).reshape(2, 28, 28), sampler.generate_pixels(z))
    np.testing.assert_array_equal(np.array(images["data"], np.float32).reshape(2, 28, 28, 1), sampler.generate(z))


def test_nested_json_data_and_request_level_binary_output(http, sampler):
    z = sampler.noise(3, seed=4)
    doc = {"inputs": [{"name": "z", "shape": [3, 100], "datatype": "FP32", "data": z.tolist()}],
           "parameters": {"binary_data_output": True}, "outputs": [{"name": "pixels"}]}
    resp = http.post(INFER, json=doc)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/octet-stream"
    length = int(resp.headers["inference-header-content-length"])
    head = json.loads(resp.content[:length])
    assert head["outputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [3, 28, 28],
                                "parameters": {"binary_data_size": 3 * 28 * 28}}]
    np.testing.assert_array_equal(np.frombuffer(resp.content[length:], np.uint8).reshape(3, 28, 28),
                                  sampler.generate_pixels(z))


def test_a_binary_request_by_hand(http, sampler):
    z = sampler.noise(4, seed=9)
    body, headers = binary_body(z)
    as_json_answer = http.post("/v2/models/dcgan/versions/1/infer", content=body, headers=headers)
    assert as_json_answer.status_code == 200, as_json_answer.text  # binary in, JSON out unless asked
    assert [o["name"] for o in as_json_answer.json()["outputs"]] == ["images", "pixels"]
    body, headers = binary_body(z, {"inputs": [{"name": "z", "shape": [4, 100], "datatype": "FP32",
                                                "parameters": {"binary_data_size": 1600}}],
                                    "parameters": {"binary_data_output": True}})
    resp = http.post("/v2/models/dcgan/versions/1/infer", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    length = int(resp.headers["inference-header-content-length"])
    outputs = json.loads(resp.content[:length])["outputs"]
    assert [o["name"] for o in outputs] == ["images", "pixels"]  # no outputs named: all of them
    blob = resp.content[length:]
    images = np.frombuffer(blob[:outputs[0]["parameters"]["binary_data_size"]], "<f4").reshape(4, 28, 28, 1)
    np.testing.assert_array_equal(images, sampler.generate(z))
    np.testing.assert_array_equal(np.frombuffer(blob[len(blob) - 4 * 784:], np.uint8).reshape(4, 28, 28),
                                  sampler.generate_pixels(z))


Z1 = np.zeros((1, 100), np.float32)
ROW = [0.0] * 100


def raw(content, headers=None) -> dict:
    return {"content": content, "headers": headers or {"content-type": "application/json"}}


def as_json(doc) -> dict:
    return raw(json.dumps(doc).encode())


def z_tensor(**changes) -> dict:
    return {"name": "z", "shape": [1, 100], "datatype": "FP32", "data": ROW, **changes}


def binary_with(size_param, extra: bytes = b"", head_length_delta: int = 0, raw_bytes: bytes | None = None,
                shape=(1, 100)) -> dict:
    """A binary request for z of ``shape`` claiming ``size_param`` bytes, its data ``raw_bytes``
    (default: 400 zero bytes) and ``extra``, its header length off by ``head_length_delta``."""
    data = np.zeros((1, 100), "<f4").tobytes() if raw_bytes is None else raw_bytes
    head = json.dumps({"inputs": [{"name": "z", "shape": list(shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": size_param}}]}).encode()
    return raw(head + data + extra, {"Inference-Header-Content-Length": str(len(head) + head_length_delta)})


BAD_INFERS = {  # name: (request, status, a phrase of the error)
    "unknown input name": (as_json({"inputs": [z_tensor(name="noise")]}), 400, "unknown input 'noise'"),
    "wrong datatype": (as_json({"inputs": [z_tensor(datatype="FP64")]}), 400, "datatype FP32"),
    "INT32 noise": (as_json({"inputs": [z_tensor(datatype="INT32")]}), 400, "datatype FP32"),
    "wrong latent size": (as_json({"inputs": [z_tensor(shape=[1, 99], data=ROW[:99])]}), 400, "must have shape"),
    "one-dimensional shape": (as_json({"inputs": [z_tensor(shape=[100])]}), 400, "must have shape"),
    "shape and data disagree": (as_json({"inputs": [z_tensor(shape=[2, 100])]}), 400, "holds 100 values"),
    "ragged nested data": (as_json({"inputs": [z_tensor(shape=[2, 100], data=[ROW, ROW[:50] * 3])]}), 400,
                           "nested"),
    "zero rows": (as_json({"inputs": [z_tensor(shape=[0, 100], data=[])]}), 400, "between 1 and 1024"),
    "too many rows": (as_json({"inputs": [z_tensor(shape=[MAX_N + 1, 100], data=ROW * (MAX_N + 1))]}), 400,
                      "between 1 and 1024"),
    "too many rows, binary": (binary_with((MAX_N + 1) * 400, raw_bytes=bytes((MAX_N + 1) * 400),
                                          shape=(MAX_N + 1, 100)), 400, "between 1 and 1024"),
    "strings in data": (as_json({"inputs": [z_tensor(data=["a"] * 100)]}), 400, "numbers only"),
    "booleans in data": (as_json({"inputs": [z_tensor(data=[True] * 100)]}), 400, "numbers only"),
    "NaN in data": (raw(json.dumps({"inputs": [z_tensor(data=[float("nan")] * 100)]}).encode()), 400, "NaN"),
    "no data": (as_json({"inputs": [{"name": "z", "shape": [1, 100], "datatype": "FP32"}]}), 400, "needs \"data\""),
    "input given twice": (as_json({"inputs": [z_tensor(), z_tensor()]}), 400, "twice"),
    "no inputs": (as_json({"inputs": []}), 400, "non-empty list"),
    "not an object": (as_json([1, 2]), 400, "JSON object"),
    "id not a string": (as_json({"id": 5, "inputs": [z_tensor()]}), 400, '"id"'),
    "unknown output": (as_json({"inputs": [z_tensor()], "outputs": [{"name": "logits"}]}), 400, "unknown output"),
    "output asked twice": (as_json({"inputs": [z_tensor()], "outputs": [{"name": "pixels"}] * 2}), 400, "twice"),
    "binary_data not a bool": (as_json({"inputs": [z_tensor()], "outputs": [{"name": "pixels", "parameters":
                                                                             {"binary_data": "yes"}}]}), 400, "true or false"),
    "classification asked": (as_json({"inputs": [z_tensor()], "outputs": [{"name": "pixels", "parameters":
                                                                           {"class_count": 3}}]}), 400, "classification"),
    "labels on an unconditional model": (as_json({"inputs": [z_tensor(), {"name": "labels", "shape": [1], "datatype":
                                                                          "INT64", "data": [0]}]}), 400, "unknown input 'labels'"),
    "bad JSON": (raw(b'{"inputs": [}'), 400, "not valid JSON"),
    "empty body": (raw(b""), 400, "not valid JSON"),
    "non-UTF-8 body": (raw(b"\xff\xfe junk"), 400, "not valid JSON"),
    "deeply nested JSON": (raw(b"[" * 100_000 + b"]" * 100_000), 400, "not valid JSON"),
    "more values than any request": (raw(b'{"inputs": [{"data": [' + b"0," * (MAX_N * 100 + 3000) + b"0]}]}"), 400,
                                     "more than 102400 values"),
    "header length not a number": (binary_with(400, head_length_delta=0) | {"headers": {
        "Inference-Header-Content-Length": "12abc"}}, 400, "must be a byte count"),
    "header length past the body": (binary_with(400, head_length_delta=10_000), 400, "the body has"),
    "header length cuts the JSON": (binary_with(400, head_length_delta=-5), 400, "not valid JSON"),
    "binary size disagrees with the shape": (binary_with(396, raw_bytes=bytes(396)), 400, "binary_data_size must be 400"),
    "binary data too short": (binary_with(400, raw_bytes=bytes(200)), 400, "200 bytes short"),
    "binary bytes nobody claims": (binary_with(400, extra=b"\0" * 8), 400, "8 bytes of binary data belong to no input"),
    "binary size not an integer": (binary_with("400"), 400, "binary_data_size must be 400"),
    "binary without the header": (raw(json.dumps({"inputs": [z_tensor(data=None) | {
        "parameters": {"binary_data_size": 400}}]}).encode() + bytes(400)), 400, "Inference-Header-Content-Length"),
    "unknown content type": (raw(b"z=1", {"content-type": "text/csv"}), 415, "Content-Type"),
    "compressed body": (raw(b"\x1f\x8b junk", {"content-type": "application/json", "content-encoding": "gzip"}), 415,
                        "Content-Encoding"),
}


@pytest.mark.parametrize("name", BAD_INFERS)
def test_bad_infer_requests_are_4xx_and_the_server_keeps_serving(http, name):
    request, status, phrase = BAD_INFERS[name]
    resp = http.post(INFER, **request)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json" and phrase in resp.json()["error"], resp.json()
    assert http.post(INFER, json=infer_json(Z1)).status_code == 200


def test_unknown_models_and_versions_are_404(http):
    for method, path in (("GET", "/v2/models/other"), ("GET", "/v2/models/other/ready"),
                         ("GET", "/v2/models/dcgan/versions/2"), ("POST", "/v2/models/other/infer"),
                         ("POST", "/v2/models/dcgan/versions/0/infer"), ("GET", "/v2/nothing")):
        resp = http.request(method, path, json=infer_json(Z1) if method == "POST" else None)
        assert resp.status_code == 404 and resp.json()["error"], (method, path)
    wrong_method = http.get(INFER)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    assert http.get("/v2/health/live").status_code == 200


def test_a_body_over_the_limit_is_413(http):
    resp = http.post(INFER, content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "too large" in resp.json()["error"]
    resp = http.post(INFER, content=b"\0" * (MAX_BODY_BYTES + 1),
                     headers={"Inference-Header-Content-Length": "10", "content-type": "application/octet-stream"})
    assert resp.status_code == 413
    assert http.post(INFER, json=infer_json(Z1)).status_code == 200


def test_the_server_logged_no_traceback(server, http):
    assert http.get("/v2").status_code == 200
    assert "Traceback" not in server.log()


# --- --name --------------------------------------------------------------------------------------------


def test_serve_name_renames_the_model(sampler):
    with load_benchmark().start_server(MODEL, extra_args=("--name", "digits.v2-gan_1")) as running:
        client = th.InferenceServerClient(running.base.removeprefix("http://"))
        try:
            assert client.is_model_ready("digits.v2-gan_1") and not client.is_model_ready("dcgan")
            assert client.get_model_metadata("digits.v2-gan_1")["name"] == "digits.v2-gan_1"
            z = sampler.noise(3, seed=2)
            result = client.infer("digits.v2-gan_1", [z_input(z, True)])
            assert result.get_response()["model_name"] == "digits.v2-gan_1"
            np.testing.assert_array_equal(result.as_numpy("pixels"), sampler.generate_pixels(z))
        finally:
            client.close()


@pytest.mark.parametrize("name", ["a/b", "", "..", "caf\u00e9", "x" * 129, "a b"])
def test_a_bad_name_is_one_line_and_exit_2(name):
    result = run_dcgan("serve", "--name", name, "--port", "0", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: --name must be") and result.stderr.count("\n") == 1


def test_create_app_refuses_a_bad_name(sampler):
    with pytest.raises(DcganError, match="--name must be"):
        create_app(sampler, name="no/slashes")


# --- models the live server does not serve: in-process ----------------------------------------------------


@pytest.fixture(scope="module")
def conditional(tmp_path_factory) -> Sampler:
    path = tmp_path_factory.mktemp("cond") / "cond.onnx"
    return Sampler(make_tiny_generator(path, class_names=["zero", "one", "two"], shape=(16, 16, 3)), threads=1)


def test_a_conditional_model_takes_labels(conditional):
    with TestClient(create_app(conditional)) as client:
        meta = client.get("/v2/models/dcgan").json()
        assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 100]},
                                  {"name": "labels", "datatype": "INT64", "shape": [-1, 1]}]
        assert meta["outputs"][1] == {"name": "pixels", "datatype": "UINT8", "shape": [-1, 16, 16, 3]}
        z, labels = conditional.noise(4, seed=1), np.array([2, 0, 1, 2])
        expected = conditional.generate_pixels(z, labels)
        as_json_ = {"inputs": [{"name": "labels", "shape": [4], "datatype": "INT32", "data": labels.tolist()},
                               {"name": "z", "shape": [4, 100], "datatype": "FP32", "data": z.ravel().tolist()}],
                    "outputs": [{"name": "pixels"}]}
        resp = client.post(INFER, json=as_json_)
        assert resp.status_code == 200, resp.text
        np.testing.assert_array_equal(np.array(resp.json()["outputs"][0]["data"], np.uint8).reshape(4, 16, 16, 3),
                                      expected)
        raw_z, raw_labels = z.astype("<f4").tobytes(), labels.astype("<i8").tobytes()
        head = json.dumps({"inputs": [
            {"name": "z", "shape": [4, 100], "datatype": "FP32", "parameters": {"binary_data_size": len(raw_z)}},
            {"name": "labels", "shape": [4, 1], "datatype": "INT64", "parameters": {"binary_data_size": len(raw_labels)}}],
            "outputs": [{"name": "pixels", "parameters": {"binary_data": True}}]}).encode()
        resp = client.post(INFER, content=head + raw_z + raw_labels,
                           headers={"Inference-Header-Content-Length": str(len(head))})
        assert resp.status_code == 200, resp.text
        length = int(resp.headers["inference-header-content-length"])
        np.testing.assert_array_equal(np.frombuffer(resp.content[length:], np.uint8).reshape(4, 16, 16, 3), expected)
        z_only = {"inputs": [as_json_["inputs"][1]]}
        bad_labels = [
            (z_only, "missing input(s) labels"),
            ({"inputs": [as_json_["inputs"][0] | {"data": [0, 1, 2, 3]}, as_json_["inputs"][1]]}, "out of range"),
            ({"inputs": [as_json_["inputs"][0] | {"shape": [3], "data": [0, 1, 2]}, as_json_["inputs"][1]]},
             "one label per vector"),
            ({"inputs": [as_json_["inputs"][0] | {"data": [0, 1.0, 2, 1]}, as_json_["inputs"][1]]}, "integers only"),
            ({"inputs": [as_json_["inputs"][0] | {"data": [0, 2**64, 2, 1]}, as_json_["inputs"][1]]}, "out of range"),
        ]
        for doc, phrase in bad_labels:
            resp = client.post(INFER, json=doc)
            assert resp.status_code == 400 and phrase in resp.json()["error"], (phrase, resp.text)


def test_a_model_producing_nan_is_a_500(tmp_path):
    broken = Sampler(make_tiny_generator(tmp_path / "nan.onnx", nan=True), threads=1)
    with TestClient(create_app(broken)) as client:
        resp = client.post(INFER, json=infer_json(Z1))
        assert resp.status_code == 500 and "non-finite" in resp.json()["error"]
        assert client.get("/v2/health/live").status_code == 200


def test_binary_output_bytes_are_little_endian_float32(sampler):
    with TestClient(create_app(sampler)) as client:
        z = sampler.noise(1, seed=0)
        body, headers = binary_body(z, {"inputs": [{"name": "z", "shape": [1, 100], "datatype": "FP32",
                                                    "parameters": {"binary_data_size": 400}}],
                                        "outputs": [{"name": "images", "parameters": {"binary_data": True}}]})
        resp = client.post(INFER, content=body, headers=headers)
        length = int(resp.headers["inference-header-content-length"])
        first = struct.unpack("<f", resp.content[length:length + 4])[0]
        assert first == float(sampler.generate(z)[0, 0, 0, 0])

"""The browser page (examples/web) in a real headless Chromium, opened from ``dcgan serve``.

Debian's ``chromium`` driven by Playwright for Python (``executable_path``: Playwright's own
browser download cannot work offline). scripts/setup.sh installs both, and onnxruntime-web from
npm; without them these tests skip and say why.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan_export.images import make_grid, upscale
from dcgan_export.noise import noise
from dcgan_export.runtime import Sampler, default_model_path
from dcgan_export.serve_page import CONTENT_SECURITY_POLICY, ORT_DIST, ORT_FILES
from helpers import load_benchmark, make_tiny_generator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = "body[data-state=ready], body[data-state=error]"

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright not installed"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium not installed (apt-get install chromium)"),
    pytest.mark.skipif(not (ROOT / "examples/web" / ORT_DIST / ORT_FILES[0]).is_file(),
                       reason="onnxruntime-web not installed (npm ci in examples/web)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shipped_server():
    with load_benchmark().serve_subprocess(None) as base:
        yield base


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory) -> Path:
    return make_tiny_generator(tmp_path_factory.mktemp("rgb") / "rgb.onnx", latent_dim=37, shape=(16, 16, 3))


@pytest.fixture(scope="module")
def rgb_server(rgb_model):
    with load_benchmark().serve_subprocess(rgb_model) as base:
        yield base


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY, timeout=60_000)


def resample(page, **fields) -> None:
    """Fill the form's fields (by id) and press Sample; wait for the page to settle."""
    for field, value in fields.items():
        page.fill(f"#{field}", str(value))
    page.evaluate("() => { document.body.dataset.state = 'busy'; }")
    page.click("#sample")
    page.wait_for_selector(READY, timeout=60_000)


def canvas_pixels(page) -> np.ndarray:
    """The canvas as RGB uint8 [H, W, 3], read back losslessly (PNG)."""
    url = page.evaluate("() => document.getElementById('grid').toDataURL('image/png')")
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def as_rgb_grid(pixels: np.ndarray, scale: int) -> np.ndarray:
    grid = upscale(make_grid(pixels), scale)
    return np.repeat(grid[..., None], 3, axis=-1) if grid.ndim == 2 else grid


def state(page) -> str:
    return page.get_attribute("body", "data-state")


def test_page_draws_the_python_samplers_pixels_for_seed_42(page, shipped_server, tmp_path):
    open_page(page, shipped_server + "/?backend=wasm&threads=2")
    assert state(page) == "ready", page.inner_text("#error")
    assert page.evaluate("() => self.crossOriginIsolated"), "COOP/COEP headers missing: no WASM threads"
    status = page.inner_text("#status")
    assert "backend wasm, 2 threads" in status and "latent 100" in status, status
    expected = Sampler(default_model_path()).sample_pixels(16, seed=42)
    got = canvas_pixels(page)
    want = as_rgb_grid(expected, scale=4)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"{int((got != want).any(axis=-1).sum())} canvas pixels differ"
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] >= got.shape[1]
    assert page.errors == []


def test_page_follows_its_controls_on_an_rgb_model(page, rgb_server, rgb_model):
    sampler = Sampler(rgb_model)
    open_page(page, rgb_server + "/?backend=wasm")
    assert "16x16 RGB, latent 37" in page.inner_text("#status")
    resample(page, seed=2**63 - 1, n=5, truncation="0.5", scale=2)
    assert state(page) == "ready", page.inner_text("#error")
    assert np.array_equal(canvas_pixels(page), as_rgb_grid(sampler.generate_pixels(noise(2**63 - 1, 0, 5, 37, 0.5)), 2))

    # the walk slider: t = 1 lands exactly on the second seed's images, t = 0.5 in between
    page.fill("#seed-b", "7")
    page.fill("#truncation", "")
    for t, expected in ((1, sampler.sample_pixels(5, 7)), (0.5, None), (0, sampler.sample_pixels(5, 2**63 - 1))):
        page.evaluate("() => { document.body.dataset.state = 'busy'; }")
        page.eval_on_selector("#t", "(el, t) => { el.value = t; el.dispatchEvent(new Event('input')); }", t)
        page.wait_for_selector(READY)
        got = canvas_pixels(page)
        if expected is not None:
            assert np.array_equal(got, as_rgb_grid(expected, 2)), t
        else:
            middle = got
    assert not np.array_equal(middle, as_rgb_grid(sampler.sample_pixels(5, 7), 2))
    assert page.errors == []


@pytest.mark.parametrize("field,value,message", [
    ("seed", "forty-two", "seed must be an integer"),
    ("seed", str(2**63), "seed must be an integer from 0 to 9223372036854775807"),
    ("n", "0", "images must be an integer from 1 to 256"),
    ("truncation", "0", "truncation must be a finite number >= 0.01"),
])
def test_bad_input_shows_an_error_on_the_page(page, shipped_server, field, value, message):
    open_page(page, shipped_server + "/")
    before = canvas_pixels(page)
    resample(page, **{field: value})
    assert state(page) == "error"
    assert page.is_visible("#error") and message in page.inner_text("#error")
    assert np.array_equal(canvas_pixels(page), before)  # the last good grid stays


@pytest.mark.parametrize("model,message", [
    ("/nothing.onnx", "HTTP 404"),
    ("/style.css", "not an ONNX model"),
])
def test_a_model_that_fails_to_load_shows_an_error(page, shipped_server, model, message):
    open_page(page, f"{shipped_server}/?model={model}")
    assert state(page) == "error"
    assert message in page.inner_text("#error")
    assert page.evaluate("() => document.getElementById('grid').width") == 0


def test_an_onnx_file_that_is_no_generator_shows_an_error(page, shipped_server):
    open_page(page, shipped_server + "/")
    page.set_input_files("#model-file", str(ROOT / "models" / "mnist_classifier.onnx"))
    page.evaluate("() => { document.body.dataset.state = 'busy'; }")
    page.click("#load")
    page.wait_for_selector(READY)
    assert state(page) == "error"
    assert "not a dcgan generator" in page.inner_text("#error")


def test_page_headers_isolate_and_restrict(shipped_server):
    import httpx

    with httpx.Client(base_url=shipped_server, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        wasm = http.get(f"/{ORT_DIST}/{ORT_FILES[2]}")
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert http.get("/v1/model.onnx").content == default_model_path().read_bytes()
        for path in (f"/{ORT_DIST}/ort.node.min.mjs", f"/{ORT_DIST}/..%2F..%2Fpackage.json", "/node_modules/"):
            assert http.get(path).status_code == 404, path


def test_a_class_conditional_model_gets_a_class_picker(page, shipped_server, tmp_path):
    import onnxruntime as ort

    names = ["cat", "dog", "bird"]
    model = make_tiny_generator(tmp_path / "conditional.onnx", latent_dim=20, shape=(16, 16, 1), class_names=names)
    open_page(page, shipped_server + "/?backend=wasm")
    assert not page.is_visible("#class")  # the shipped model is unconditional
    page.set_input_files("#model-file", str(model))
    page.evaluate("() => { document.body.dataset.state = 'busy'; }")
    page.click("#load")
    page.wait_for_selector(READY)
    assert state(page) == "ready", page.inner_text("#error")
    assert page.is_visible("#class")
    assert page.eval_on_selector_all("#class option", "els => els.map(e => e.textContent)") == [
        "0: cat", "1: dog", "2: bird"]
    session = ort.InferenceSession(str(model))
    z = noise(42, 0, 9, 20)
    for label in (2, 0):
        page.evaluate("() => { document.body.dataset.state = 'busy'; }")
        page.select_option("#class", str(label))
        page.wait_for_selector(READY)
        pixels = session.run(["pixels"], {"z": z, "labels": np.full(9, label, np.int64)})[0]
        resample(page, n=9)
        assert np.array_equal(canvas_pixels(page), as_rgb_grid(pixels, 4)), label
    assert page.errors == []

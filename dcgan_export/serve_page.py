"""The browser page (examples/web) at ``/``, sampling the served model in the visitor's browser.

Routes::

    GET /                                        the page (index.html)
    GET /app.js, /sampler.js, /noise.js, /style.css
    GET /node_modules/onnxruntime-web/dist/NAME  onnxruntime-web's files, from the npm package
    GET /v1/model.onnx                           the served generator's bytes

onnxruntime-web is served from ``examples/web/node_modules`` as ``npm ci`` installed it (no CDN,
nothing copied into this repository); only the three files the page loads are reachable. Where the
package is missing the page still loads and says what to run. Every page response carries the
headers multi-threaded WASM needs (cross-origin isolation: COOP + COEP) and a Content-Security-
Policy that allows this origin's scripts and WebAssembly compilation, nothing else.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .paths import web_dir

PAGE_FILES = {"/": "index.html", "/app.js": "app.js", "/sampler.js": "sampler.js", "/noise.js": "noise.js",
              "/style.css": "style.css"}
ORT_DIST = "node_modules/onnxruntime-web/dist"
# What app.js's `import ... from ort.min.mjs` loads: the bundle, then its WASM runtime (WebGPU + CPU).
ORT_FILES = ("ort.min.mjs", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".wasm": "application/wasm", ".onnx": "application/octet-stream"}
# 'wasm-unsafe-eval' lets the page compile WebAssembly and nothing else eval-like; onnxruntime-web
# starts its threads as module workers from its own (same-origin) script.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
                           "connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",  # with COEP: crossOriginIsolated, so WASM threads
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new dcgan version's page is seen at once
}


def page_routes(model_path: Path) -> list[Route]:
    """The page's routes, serving ``model_path`` as its model."""
    root = web_dir()

    def send(path: Path) -> Response:
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)

    def missing(what: str) -> Response:
        return JSONResponse({"error": what}, status_code=404, headers=PAGE_HEADERS)

    async def page_file(request: Request) -> Response:
        if root is None:
            return missing("this installation of dcgan has no web page (examples/web)")
        return send(root / PAGE_FILES[request.url.path])

    async def ort_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ORT_FILES:
            return missing(f"not served: {name[:80]}")
        path = root / ORT_DIST / name if root is not None else None
        if path is None or not path.is_file():
            return missing("onnxruntime-web is not installed: run `npm ci` in examples/web (scripts/setup.sh does)")
        return send(path)

    async def model_file(request: Request) -> Response:
        return send(model_path)

    return [*(Route(url, page_file, methods=["GET", "HEAD"]) for url in PAGE_FILES),
            Route(f"/{ORT_DIST}/{{name}}", ort_file, methods=["GET", "HEAD"]),
            Route("/v1/model.onnx", model_file, methods=["GET", "HEAD"])]

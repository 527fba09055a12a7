#!/usr/bin/env bash
# Sets up everything on a fresh machine: .venv with the pinned, known-good versions (training,
# serving and test extras), the Node.js and web examples' packages, and (as root on Debian) the
# chromium the browser test drives and ffmpeg for MP4 walks. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null \
  || { echo "setup: needs Python 3.10 or newer as python3" >&2; exit 1; }
step() { echo "setup: $*" >&2; }
[ -x .venv/bin/python ] || { step "creating .venv"; python3 -m venv .venv; } \
  || { echo "setup: python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
step "installing dcgan with its train, jax, serve and test extras into .venv (pinned by constraints.txt; a minute or two on a fresh machine)"
.venv/bin/python -m pip install -q --progress-bar off --disable-pip-version-check -c constraints.txt -e '.[train,jax,serve,test]'
if command -v npm >/dev/null 2>&1; then
  # --ignore-scripts: onnxruntime-node's CPU binaries ship in the package; its install script
  # only fetches an optional CUDA provider from a host these machines cannot reach.
  for example in examples/node examples/web; do
    step "installing $example's packages (npm ci)"
    (cd "$example" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  done
else
  echo "npm not found: skipping examples/node and examples/web (their tests will be skipped)" >&2
fi
# The browser test drives Debian's chromium (Playwright's own browser download needs the internet);
# ffmpeg encodes `dcgan sample --interpolate --out walk.mp4` (optional: its test skips without it).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Debian's ${missing[*]} for the browser and MP4 tests (apt-get; a minute or two)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
      >/dev/null || echo "setup: apt-get install ${missing[*]} failed: their tests will be skipped" >&2
  else
    echo "${missing[*]} not found (as root: apt-get install ${missing[*]}): their tests will be skipped" >&2
  fi
fi
step "done: .venv/bin/dcgan is ready"

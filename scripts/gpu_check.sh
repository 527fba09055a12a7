#!/usr/bin/env bash
# The trainer on a GPU machine with Python 3.12 and JAX (CUDA) but no package index and no
# TensorFlow (docs/training.md, "On a GPU"). Two steps:
#
#   scripts/gpu_check.sh --download      here, where pip reaches an index: the wheels the GPU
#                                         machine lacks (Keras and its two small needs) into .whl/
#   scripts/gpu_check.sh [OUT]           there, with .whl/ beside the code: install them into a
#                                         private folder, train on the GPU at batch 64, 256 and
#                                         1024, print iterations/s and images/s; each run's
#                                         generator.keras and losses.csv land in OUT/bBATCH/
#
# Needs no install of dcgan itself (it runs from this checkout) and writes nothing outside OUT
# and $GPU_CHECK_SITE. The three runs take about a minute on an H200; the whole check must stay
# inside 8 minutes. Export the generators elsewhere: dcgan export OUT/b256 (needs TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
ITERATIONS=${GPU_CHECK_ITERATIONS:-1000}

if [ "${1:-}" = "--download" ]; then
  keras=$(grep -E '^keras==' constraints.txt)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "$keras" namex optree
  ls "$WHEELS"
  exit 0
fi

OUT=${1:-gpu_check}
SITE=${GPU_CHECK_SITE:-/tmp/dcgan-gpu-site}
python3 -c 'import jax' 2>/dev/null || { echo "gpu_check: needs JAX (with CUDA) in python3" >&2; exit 1; }
if ! python3 -c 'import keras' 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "gpu_check: no Keras and no $WHEELS/*.whl (run --download where pip works)" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
python3 -c 'import jax; print("gpu_check: JAX", jax.__version__, "on", jax.devices())'
mkdir -p "$OUT"
for batch in 64 256 1024; do
  run="$OUT/b$batch"
  python3 -m dcgan_export.cli train --backend jax --batch-size "$batch" --iterations "$ITERATIONS" \
    --sample-every "$ITERATIONS" --checkpoint-every "$ITERATIONS" --quiet --no-export --force --out "$run"
done
python3 benchmarks/train_throughput.py "$OUT"/b64 "$OUT"/b256 "$OUT"/b1024

#!/usr/bin/env bash
# Reproduces what models/ ships: the default generator (trained on CPU on the embedded digits,
# exported through the parity gate, scored with dcgan eval, its pixels pinned for the tests) and
# the classic-recipe baseline the model card compares it with. About 5 hours on 2 CPU cores.
# Needs scripts/setup.sh first. Same code, same seed, same CPU kind: the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
dcgan=.venv/bin/dcgan

# The shipped recipe, every stage (models/recipe.toml; models/README.md says how it was chosen).
# It ends by exporting runs/shipped/generator.onnx through the parity gate.
$dcgan train --config recipe --out runs/shipped --force
cp runs/shipped/generator.onnx models/generator.onnx
cp runs/shipped/generator.keras models/generator.keras
$dcgan eval models/generator.onnx --n 10000 --seed 0 --json > runs/shipped/eval-10k.json
.venv/bin/python benchmarks/shipped_quality.py > runs/shipped/quality-seeds.json  # the goals on seeds 0, 1, 2
# The same under a classifier that neither guided training nor is the evaluator (seed 2).
$dcgan classifier --seed 2 --out runs/shipped/classifier-seed2.onnx --quiet
.venv/bin/python benchmarks/shipped_quality.py --classifier runs/shipped/classifier-seed2.onnx \
    > runs/shipped/quality-seeds-classifier2.json
.venv/bin/python scripts/pin_shipped_pixels.py  # paste into tests/test_shipped_model.py

# The classic recipe: 2001 iterations at batch 32, nothing else changed.
$dcgan train --iterations 2001 --batch-size 32 --seed 0 --out runs/classic --force --quiet
$dcgan eval runs/classic/generator.onnx --n 10000 --seed 0 --json > runs/classic/eval-10k.json

#!/usr/bin/env bash
# Reproduces what models/ ships: the default generator (trained on CPU on the embedded digits,
# exported through the parity gate, scored with dcgan eval, its pixels pinned for the tests) and
# the classic-recipe baseline the model card compares it with. About 5 hours on 2 CPU cores.
# Needs scripts/setup.sh first. Same code, same seed, same CPU kind: the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
dcgan=.venv/bin/dcgan

# The shipped recipe (chosen with --eval-every figures; see models/README.md).
$dcgan train --iterations 150000 --batch-size 64 --ema 0.999 --r1 1 --sample-every 1000 --checkpoint-every 1000 \
    --eval-every 1000 --seed 0 --out runs/shipped --force --quiet
# The next 30,000 iterations average the generator over a ten times wider window.
$dcgan train --resume runs/shipped --iterations 180000 --ema 0.9999 --quiet
# Then classifier guidance (trains runs/shipped/guide_classifier.keras first, seed 1): 10,000
# iterations averaged over the last ~1,000, then 10,000 more over the last ~10,000.
$dcgan train --resume runs/shipped --iterations 190000 --class-guidance 2 --ema 0.999 --quiet
$dcgan train --resume runs/shipped --iterations 200000 --ema 0.9999 --quiet
$dcgan export runs/shipped --out models/generator.onnx
cp runs/shipped/generator.keras models/generator.keras
$dcgan eval models/generator.onnx --n 10000 --seed 0 --json > runs/shipped/eval-10k.json
.venv/bin/python benchmarks/shipped_quality.py > runs/shipped/quality-seeds.json  # the goals on seeds 0, 1, 2
# The same under a classifier that neither guided training nor is the evaluator (seed 2).
.venv/bin/python -m trainer.classifier --seed 2 --out runs/shipped/classifier-seed2.onnx --verbose 0
.venv/bin/python benchmarks/shipped_quality.py --classifier runs/shipped/classifier-seed2.onnx \
    > runs/shipped/quality-seeds-classifier2.json
.venv/bin/python scripts/pin_shipped_pixels.py  # paste into tests/test_shipped_model.py

# The classic recipe: 2001 iterations at batch 32, nothing else changed.
$dcgan train --iterations 2001 --batch-size 32 --seed 0 --out runs/classic --force --quiet
$dcgan export runs/classic --out runs/classic/generator.onnx
$dcgan eval runs/classic/generator.onnx --n 10000 --seed 0 --json > runs/classic/eval-10k.json

"""Per-class figures of a class-conditional digit generator: accuracy and diversity.

For each class k, ``--n`` samples drawn with ``--class k`` (seed 0) are classified by the shipped
digit classifier: the share classed as k, and the mean pairwise distance of their classifier
features against the same figure for the real training digits of class k. A generator that
collapses within a class (one 7 drawn over and over) has a ratio far below 1; real digits score 1.

Then walks of the class (``class_weights``, the blends ``dcgan sample --interpolate --class A,B``
draws) on the same noise: at each t, the share of samples classed as b, and as a or b. A morph
moves the vote from a to b and keeps it on the two classes.

    .venv/bin/python benchmarks/conditional_quality.py MODEL.onnx [--n 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_export import datasets  # noqa: E402
from dcgan_export.contract import to_images  # noqa: E402
from dcgan_export.evaluate import Evaluator  # noqa: E402
from dcgan_export.runtime import Sampler  # noqa: E402


def mean_pairwise_distance(features: np.ndarray, pairs: int = 20000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(features), (2, pairs))
    keep = i != j
    return float(np.linalg.norm(features[i[keep]] - features[j[keep]], axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sampler, evaluator = Sampler(args.model), Evaluator()
    train, _ = datasets.labelled_splits("mnist-8k")
    print("| class | accuracy | diversity: generated | real | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ratios, accuracies = [], []
    for k in range(sampler.num_classes):
        images = sampler.sample(args.n, seed=args.seed, labels=k)
        probs, features = evaluator.classify(images)
        _, real_features = evaluator.classify(to_images(train.images[train.labels == k]))
        accuracy = float((probs.argmax(1) == k).mean())
        generated, real = mean_pairwise_distance(features), mean_pairwise_distance(real_features)
        ratios.append(generated / real)
        accuracies.append(accuracy)
        print(f"| {sampler.class_names[k]} | {accuracy:.1%} | {generated:.2f} | {real:.2f} | {generated / real:.2f} |")
    print(f"\nlowest accuracy {min(accuracies):.1%}; diversity ratio {min(ratios):.2f} to {max(ratios):.2f}")

    steps = (0.0, 0.25, 0.5, 0.75, 1.0)
    print("\n| walk | " + " | ".join(f"t={t:g}: b (a or b)" for t in steps) + " |")
    print("| --- |" + " ---: |" * len(steps))
    z = sampler.noise(args.n, seed=args.seed)
    for a, b in ((3, 8), (1, 7), (4, 9), (0, 6)):
        cells = []
        for t in steps:
            weights = np.zeros(sampler.num_classes, np.float32)
            weights[a], weights[b] = 1 - t, t
            votes = evaluator.classify(sampler.generate(z, class_weights=weights))[0].argmax(1)
            cells.append(f"{(votes == b).mean():.0%} ({np.isin(votes, [a, b]).mean():.0%})")
        print(f"| {a} -> {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Figures the evaluation issue names, measured: the shipped classifier's held-out accuracy and
size, the floor FID (train vs held-out digits), real digits' classifier score, and how long
scoring 10,000 images takes. ``--train`` also retrains the classifier (to a temp file) and times it.

    .venv/bin/python benchmarks/evaluate_classifier.py [--train]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcgan_export import datasets  # noqa: E402
from dcgan_export.evaluate import Evaluator, default_classifier_path  # noqa: E402
from dcgan_export.contract import to_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", action="store_true", help="also retrain the classifier and time it")
    args = parser.parse_args()
    figures: dict = {}
    if args.train:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from trainer.classifier import train_classifier

        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            info = train_classifier(Path(tmp) / "c.onnx")
            figures["retrain"] = {**info, "wall_seconds": round(time.perf_counter() - started, 1)}

    path = default_classifier_path()
    evaluator = Evaluator(path)
    heldout = datasets.load("mnist-8k", "heldout")
    probs, _ = evaluator.classify(to_images(heldout.images))
    figures["classifier"] = str(path)
    figures["size_bytes"] = path.stat().st_size
    figures["feature_dim"] = evaluator.feature_dim
    figures["heldout_accuracy"] = float((probs.argmax(1) == heldout.labels).mean())
    figures["metadata"] = evaluator.metadata

    started = time.perf_counter()
    figures["fid_floor"] = evaluator.floor_fid()
    figures["reference_and_floor_seconds"] = round(time.perf_counter() - started, 2)
    real = evaluator.score_images(to_images(heldout.images))
    figures["heldout_classifier_score"] = real["classifier_score"]
    figures["heldout_mean_confidence"] = real["mean_confidence"]
    figures["heldout_min_class_share"] = real["min_class_share"]
    train = datasets.load("mnist-8k", "train")
    train_figures = evaluator.score_images(to_images(train.images))
    figures["train_classifier_score"] = train_figures["classifier_score"]

    images = to_images(np.concatenate([train.images, heldout.images, train.images[:2000]]))
    started = time.perf_counter()
    evaluator.score_images(images)
    figures["score_10000_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

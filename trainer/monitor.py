"""Sample quality during training (``--eval-every``): classifier FID and class coverage.

The classic recipe is prone to mode collapse: a few digit classes take over the samples while
the losses look normal. This callback measures what the losses can't and says so loudly.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from dcgan_export.atomic import atomic_open
from dcgan_export.evaluate import Evaluator

from .callbacks import _IterationCallback

EVAL_COLUMNS = ["iteration", "fid", "fid_floor", "min_class_share", "max_class_share", "kl_uniform",
                "mean_confidence", "classifier_score"] + [f"share_{d}" for d in range(10)]


class QualityMonitor(_IterationCallback):
    def __init__(self, run_dir: Path, every: int, samples: int, seed: int, start: int, tb_writer=None,
                 echo=print):
        super().__init__(start)
        self.path = run_dir / "eval.csv"
        self.every = every
        self.tb_writer = tb_writer
        self.echo = echo
        self.samples = samples
        self.seed = seed
        self.evaluator = Evaluator()  # loads the classifier and fails early if it is missing

    def on_train_begin(self, logs=None):
        rng = np.random.default_rng([self.seed, 1])  # the same noise at every evaluation
        self.noise = rng.standard_normal((self.samples, self.model.latent_dim)).astype(np.float32)
        if self.path.exists():  # a resumed run: drop rows logged after the checkpoint, and half rows
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f)
                        if len(r) == len(EVAL_COLUMNS) and r[0].isdigit() and int(r[0]) <= self.start]
            with atomic_open(self.path, "w") as f:
                csv.writer(f).writerows([EVAL_COLUMNS, *rows])

    def on_iteration_end(self, iteration, logs):
        if iteration % self.every:
            return
        images = np.concatenate([np.asarray(self.model.sampling_generator(self.noise[i:i + 500], training=False))
                                 for i in range(0, len(self.noise), 500)])
        report = self.evaluator.score_images(images)
        row = [iteration] + [f"{report[k]:.6f}" for k in EVAL_COLUMNS[1:8]] + [f"{s:.4f}" for s in report["class_shares"]]
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerows([EVAL_COLUMNS, row] if new else [row])
        if self.tb_writer is not None:
            for key in ("fid", "min_class_share", "max_class_share", "kl_uniform", "classifier_score"):
                self.tb_writer.scalar(f"eval/{key}", report[key], iteration)
        self.echo(f"\n[eval @ {iteration}] FID {report['fid']:.2f} (floor {report['fid_floor']:.2f}), "
                      f"score {report['classifier_score']:.2f}, classes {report['min_class_share']:.1%}"
                      f"-{report['max_class_share']:.1%}")
        for warning in report["warnings"]:
            sys.stderr.write(f"WARNING (iteration {iteration}): {warning}\n")

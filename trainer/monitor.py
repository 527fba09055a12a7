"""Sample quality during training (``--eval-every``): classifier FID and class coverage.

The classic recipe is prone to mode collapse: a few digit classes take over the samples while
the losses look normal. This callback measures what the losses can't and says so loudly.
"""

from __future__ import annotations

import csv
import sys

import numpy as np

from dcgan_export.evaluate import Evaluator
from dcgan_export.run_dir import RunDir, trim_log

from .callbacks import _IterationCallback, generate

EVAL_COLUMNS = ["iteration", "fid", "fid_floor", "min_class_share", "max_class_share", "kl_uniform",
                "mean_confidence", "classifier_score"] + [f"share_{d}" for d in range(10)]


class QualityMonitor(_IterationCallback):
    def __init__(self, run: RunDir, every: int, samples: int, seed: int, start: int, tb_writer=None,
                 echo=print):
        super().__init__(start)
        self.path = run.eval_log
        self.every = every
        self.tb_writer = tb_writer
        self.echo = echo
        self.samples = samples
        self.seed = seed
        self.evaluator = Evaluator()  # loads the classifier and fails early if it is missing

    def on_train_begin(self, logs=None):
        rng = np.random.default_rng([self.seed, 1])  # the same noise at every evaluation
        self.noise = rng.standard_normal((self.samples, self.model.latent_dim)).astype(np.float32)
        trim_log(self.path, EVAL_COLUMNS, self.start)  # a resumed run: drop rows after the checkpoint

    def on_iteration_end(self, iteration, logs):
        if iteration % self.every:
            return
        images = np.concatenate([generate(self.model, self.noise[i:i + 500]) for i in range(0, len(self.noise), 500)])
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

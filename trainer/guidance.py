"""Classifier guidance (``dcgan train --class-guidance W``): CatGAN's generator objective, with a
fixed digit classifier in place of CatGAN's discriminator.

An unconditional generator maps one connected noise space onto ten separate digits, so some of
its samples land between two of them (a 4 that is also a 9); D, which never asks which digit an
image is, does not single them out. Springenberg (2016, "Unsupervised and semi-supervised
learning with categorical GANs") asks G for images a classifier is certain about while the
batch as a whole stays spread over every class. G's loss gains

    W x ( mean_i H(p(y | G(z_i)))  -  H(mean_i p(y | G(z_i))) )

The guide is a classifier trained once per run on the run's own labelled training images, with
seed ``--seed + 1``: never seed 0 on mnist-8k, which would reproduce the shipped evaluator that
``dcgan eval`` measures with. It is saved in the run directory, so a resume guides with the same
network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dcgan_export.contract import NUM_CLASSES
from dcgan_export.errors import DcganError
from dcgan_export.run_dir import RunDir

EPOCHS = 18  # the evaluator's recipe (trainer.classifier)


def check_labels(labels: np.ndarray | None, n_images: int, data_name: str) -> None:
    """Before any work: the guide is a digit classifier, so it needs one label 0-9 per image."""
    if labels is None:
        raise DcganError(f"--class-guidance trains a classifier on the data's labels, and {data_name} has none")
    labels = np.asarray(labels)
    if labels.shape != (n_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise DcganError(f"--class-guidance needs one integer label per image; {data_name} has "
                         f"{labels.dtype} labels of shape {labels.shape} for {n_images} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DcganError(f"--class-guidance needs labels 0-{NUM_CLASSES - 1}; {data_name} has "
                         f"{int(labels.min())}-{int(labels.max())}")


def guide_seed(run_seed: int) -> int:
    return run_seed + 1


def ensure_guide(run: RunDir, pixels: np.ndarray, labels: np.ndarray, run_seed: int,
                 echo: Callable[[str], None]) -> Path:
    """The run's guide file, trained and saved (atomically) on first use."""
    path = run.guide
    if path.exists():
        return path
    from dcgan_export.atomic import atomic_path

    from .classifier import fit_classifier

    echo(f"Training the --class-guidance classifier on {len(pixels)} labelled images ({EPOCHS} epochs)")
    model = fit_classifier(pixels, labels, epochs=EPOCHS, seed=guide_seed(run_seed))
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def load_guide(path: Path):
    """The guide's logits alone, frozen: G's loss differentiates through it, nothing updates it."""
    import keras

    model = keras.models.load_model(path)
    logits = keras.Model(model.input, model.outputs[0], name="guide")
    logits.trainable = False
    return logits


def guidance_loss(logits):
    """CatGAN's generator term: the mean per-image class entropy minus the entropy of the batch's
    mean class distribution (in nats; -ln 10 for confident images spread evenly over ten classes).
    Under a distribution strategy the batch is each replica's own: its mean distribution is not
    shared across replicas."""
    from keras import ops

    log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    p = ops.exp(log_p)
    per_image = -ops.mean(ops.sum(p * log_p, axis=1))
    marginal = ops.mean(p, axis=0)
    batch = -ops.sum(marginal * ops.log(marginal + 1e-12))
    return per_image - batch

"""Sample quality in the feature space of a digit classifier: onnxruntime and numpy, no TensorFlow.

Inception features say little about 28x28 digits, so, as TF-GAN's MNIST evaluation does, we
use a small CNN trained on mnist-8k/train (``models/mnist_classifier.onnx``, built by
``dcgan classifier``) and compare against the 1,000 held-out digits it never saw:

* ``fid``: Frechet distance between classifier features of the images and of held-out digits;
  ``fid_floor`` is the same figure for real train digits, what a perfect generator would score.
* ``class_shares``, ``min_class_share``, ``kl_uniform``: the predicted-class histogram; a
  collapsed generator drops classes or piles onto one (``mode_collapse_warnings``).
* ``mean_confidence`` and ``classifier_score`` (the Inception-score formula, at most 10).
* class-conditional models only: ``class_accuracy``, for each class k the share of the samples
  drawn as k that the classifier calls k (``min_class_accuracy``: the worst class), when the
  model's classes are the classifier's; else None, and ``class_accuracy_skipped`` says why.

    from dcgan_export.evaluate import Evaluator
    figures = Evaluator().score_images(images)   # float [-1, 1], [n, 28, 28, 1]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import DcganError
from .limits import MAX_EVAL_SAMPLES, MAX_SEED, check_int
from .contract import (CLASSIFIER_FEATURES, CLASSIFIER_INPUT, CLASSIFIER_LOGITS, CLASSIFIER_REFERENCE,
                       DIGIT_DATASETS, IMAGE_SHAPE, Meta, check_float_array, to_images)
from .paths import shipped_file
from .progress import counted
from .runtime import ModelInput, check_finite, open_session

CLASSIFIER_FILENAME = "mnist_classifier.onnx"
REFERENCE_DATA = "mnist-8k"
LOW_SHARE = 0.02  # a digit under 2% of samples has (nearly) vanished: a fifth of its fair share
HIGH_SHARE = 0.30  # one digit over 30% is three times its fair share
BATCH = 500
MAX_N = MAX_EVAL_SAMPLES


def default_classifier_path() -> Path:
    """The shipped classifier."""
    return shipped_file(CLASSIFIER_FILENAME)


# -- the figures, as plain functions of numpy arrays -------------------------------------------


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; round-off negatives clamp to 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Frechet distance between Gaussians N(mu1, cov1) and N(mu2, cov2).

    ``|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))``, where ``tr((C1 C2)^(1/2))`` is
    computed as ``tr((S C2 S)^(1/2))`` with ``S = C1^(1/2)``: the same eigenvalues, but of a
    symmetric matrix, so eigh applies and singular covariances (dead features) are no problem.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, cov {cov1.shape} / {cov2.shape}")
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    distance = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)  # round-off can push identical distributions a hair below zero


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features [n, d], in float64."""
    features = np.asarray(features, np.float64)
    mu = features.mean(axis=0)
    if len(features) < 2:
        return mu, np.zeros((features.shape[1], features.shape[1]))
    return mu, np.cov(features, rowvar=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def classifier_score(probs: np.ndarray) -> float:
    """``exp(E_x[KL(p(y|x) || p(y))])``: near 10 for confident, class-balanced digits, 1 at worst."""
    probs = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = (probs * (np.log(probs) - np.log(marginal))).sum(axis=1)
    return float(np.exp(kl.mean()))


def kl_from_uniform(shares: np.ndarray) -> float:
    """KL(shares || uniform) in nats: 0 when balanced, log(10) = 2.30 when all one class."""
    shares = np.asarray(shares, np.float64)
    nonzero = shares[shares > 0]
    return float((nonzero * np.log(nonzero * len(shares))).sum())


def per_class_accuracy(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """For each class k < num_classes: the share of images drawn as k (``labels``) classified
    as k, or None when no image was drawn as k."""
    predicted = np.asarray(probs).argmax(axis=1)
    labels = np.asarray(labels)
    return [float((predicted[labels == k] == k).mean()) if (labels == k).any() else None
            for k in range(num_classes)]


def mode_collapse_warnings(class_shares, low: float | None = None, high: float | None = None,
                           names: list[str] | None = None) -> list[str]:
    """One message per class whose share of samples is under ``low`` or over ``high`` (by default
    a fifth of, and three times, its fair share: 2% and 30% for ten digits)."""
    shares = np.asarray(class_shares, np.float64)
    fair = 1.0 / len(shares)
    low = LOW_SHARE / 0.1 * fair if low is None else low
    high = HIGH_SHARE / 0.1 * fair if high is None else high
    warnings = []
    for index, share in enumerate(shares):
        what = f"class {names[index]!r}" if names else f"digit {index}"
        if share < low:
            warnings.append(f"MODE COLLAPSE? {what} is only {share:.1%} of samples (under {low:.0%})")
        elif share > high:
            warnings.append(f"MODE COLLAPSE? {what} is {share:.1%} of samples (over {high:.0%})")
    return warnings


# -- the classifier ------------------------------------------------------------------------------


class Evaluator:
    """The classifier in an onnxruntime session, plus the held-out statistics (computed once).

    Keep one for a whole training run: ``score_images`` then costs one classifier pass.
    """

    def __init__(self, classifier_path: str | os.PathLike | None = None, threads: int | None = None):
        path = default_classifier_path() if classifier_path is None else Path(classifier_path)
        if not path.is_file():
            raise DcganError(f"classifier not found: {path}")
        self._session = open_session(path, threads)
        self.classifier_path = path
        self._check_contract(path)
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self._reference: tuple[np.ndarray, np.ndarray] | None = None
        self._floor: float | None = None

    def _check_contract(self, path: Path) -> None:
        inputs = self._session.get_inputs()
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        found = ", ".join(f"{i.name}{i.shape}" for i in inputs) + " -> " + ", ".join(f"{k}{v}" for k, v in outputs.items())
        self._input = ModelInput(self._session, f"{path}: not a classifier")
        shape = tuple(self._input.shape[1:])
        logits, features = outputs.get(CLASSIFIER_LOGITS), outputs.get(CLASSIFIER_FEATURES)
        if (self._input.name != CLASSIFIER_INPUT or len(shape) != 3 or not all(isinstance(d, int) for d in shape)
                or logits is None or features is None or len(logits) != 2 or not isinstance(logits[1], int)
                or logits[1] < 2 or len(features) != 2 or not isinstance(features[1], int)):
            raise DcganError(f"{path}: not a classifier: expected images[N, H, W, C] -> logits[N, K], "
                             f"features[N, D]; found {found}")
        self.image_shape: tuple[int, int, int] = shape
        self.num_classes: int = logits[1]
        self.feature_dim: int = features[1]

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float images [n, H, W, C] in [-1, 1] -> (softmax probabilities [n, K], features [n, D])."""
        images = check_images(images, self.image_shape)
        probs, features = [], []
        for start in range(0, len(images), BATCH):
            logits, feats = self._input.run(self._session, [CLASSIFIER_LOGITS, CLASSIFIER_FEATURES],
                                            images[start:start + BATCH])
            probs.append(softmax(check_finite(logits, str(self.classifier_path))))
            features.append(check_finite(feats, str(self.classifier_path)).astype(np.float64))
        return np.concatenate(probs), np.concatenate(features)

    def _splits(self):
        """(train, held out) of the data the classifier was trained on: the embedded digits, or
        the data set its metadata names (decoded through the same folder cache as training)."""
        from . import datasets

        record = self.metadata.get(CLASSIFIER_REFERENCE)
        if record is None:
            return datasets.labelled_splits(REFERENCE_DATA)
        try:
            ref = json.loads(record)
            options = datasets.ImageOptions(int(ref["image_size"]), int(ref["channels"]),
                                            tuple(int(v) for v in ref["background"]))
            return datasets.labelled_splits(str(ref["spec"]), options)
        except (ValueError, KeyError, TypeError):
            raise DcganError(f"{self.classifier_path}: unreadable {CLASSIFIER_REFERENCE} metadata") from None

    def reference_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Feature mean and covariance of the held-out images (the comparison set), cached."""
        if self._reference is None:
            self._train, heldout = self._splits()
            self._reference = feature_statistics(self.classify(to_images(heldout.images))[1])
        return self._reference

    def floor_fid(self) -> float:
        """FID of real train images against held-out ones: the best a generator can hope for."""
        if self._floor is None:
            self.reference_statistics()
            self._floor = self.fid_of_features(self.classify(to_images(self._train.images))[1])
        return self._floor

    def class_names(self) -> list[str] | None:
        """The classifier's class names (its metadata), or None for the digits, numbered."""
        try:
            names = json.loads(self.metadata.get(Meta.CLASS_NAMES, "null"))
        except ValueError:
            return None
        return names if isinstance(names, list) and len(names) == self.num_classes else None

    def fid_of_features(self, features: np.ndarray) -> float:
        mu, cov = feature_statistics(features)
        return frechet_distance(mu, cov, *self.reference_statistics())

    def score_images(self, images: np.ndarray) -> dict:
        """All the figures for one array of images (float [-1, 1], [n, 28, 28, 1])."""
        return self.score_batches([images])

    def score_batches(self, batches: Iterable[np.ndarray], labels: np.ndarray | None = None) -> dict:
        """All the figures for images arriving in batches (``labels``: the class each was drawn
        as, for a conditional model whose classes are the classifier's: adds the accuracies).

        Images are classified batch by batch and dropped, but the probabilities and features of
        every image are kept (about 600 bytes each) for the covariance and the class figures:
        memory grows with n, which is why ``evaluate_generator`` caps n at MAX_N.
        """
        probs, features = [], []
        for batch in batches:
            p, f = self.classify(batch)
            probs.append(p)
            features.append(f)
        if not probs:
            raise DcganError("no images to evaluate")
        return self.score_outputs(np.concatenate(probs), np.concatenate(features), labels)

    def score_outputs(self, probs: np.ndarray, features: np.ndarray, labels: np.ndarray | None = None) -> dict:
        counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
        shares = counts / counts.sum()
        accuracy = {}
        if labels is not None:
            if len(labels) != len(probs):
                raise DcganError(f"labels: {len(labels)} for {len(probs)} images")
            per_class = per_class_accuracy(probs, labels, probs.shape[1])
            measured = [a for a in per_class if a is not None]
            accuracy = {"class_accuracy": per_class, "min_class_accuracy": min(measured) if measured else None}
        return {
            "n": int(len(probs)),
            "fid": self.fid_of_features(features),
            "fid_floor": self.floor_fid(),
            "class_shares": [float(s) for s in shares],
            "min_class_share": float(shares.min()),
            "max_class_share": float(shares.max()),
            "kl_uniform": kl_from_uniform(shares),
            "mean_confidence": float(probs.max(axis=1).mean()),
            "classifier_score": classifier_score(probs),
            "class_names": self.class_names(),
            "warnings": mode_collapse_warnings(shares, names=self.class_names()),
            **accuracy,
        }


def check_images(images, shape: tuple = IMAGE_SHAPE) -> np.ndarray:
    """images as C-contiguous float32 [n, *shape], or a DcganError saying what is wrong."""
    arr = np.asarray(images)
    return check_float_array(arr[..., None] if arr.ndim == 3 else arr, "images", tuple(shape))


def evaluate_generator(model: str | os.PathLike | None, n: int = 10000, seed: int = 0,
                       classifier_path: str | os.PathLike | None = None, batch_size: int = 500,
                       evaluator: Evaluator | None = None, any_data: bool = False, progress: bool = False) -> dict:
    """Sample ``n`` images from an ONNX generator and score them: what ``dcgan eval`` prints.

    Pass an ``evaluator`` to reuse its cached held-out statistics across calls. A model whose
    metadata names a data set other than digits is refused unless ``any_data``; ``progress``
    shows a counter on a terminal.
    """
    from .runtime import Sampler

    check_counts(n, batch_size)
    seed = check_int(seed, "--seed", 0, MAX_SEED)
    sampler = Sampler(model)
    evaluator = evaluator or Evaluator(classifier_path)
    if sampler.image_shape != evaluator.image_shape:
        raise DcganError(f"{sampler.model_path} makes {_shape(sampler.image_shape)} images; the classifier "
                         f"{evaluator.classifier_path} takes {_shape(evaluator.image_shape)}: train one on the "
                         "model's data with dcgan classifier --data DATA and pass it as --classifier (unlabelled "
                         "data: --features F.onnx --data DATA)")
    _check_same_data(sampler, evaluator, any_data)
    batches = sampler.iter_batches(n, seed=seed, batch_size=batch_size)  # conditional: image i is class i % K
    skipped = None if sampler.classes is None else _class_accuracy_skipped(sampler, evaluator)
    labels = sampler.cycle_labels(n) if sampler.classes is not None and skipped is None else None
    figures = evaluator.score_batches(counted(batches, n, "scoring") if progress else batches, labels)
    if skipped is not None:
        figures.update(class_accuracy=None, min_class_accuracy=None, class_accuracy_skipped=skipped)
    return {
        "model": str(sampler.model_path),
        "classifier": str(evaluator.classifier_path),
        "classifier_accuracy": _float_or_none(evaluator.metadata.get("heldout_accuracy")),
        "reference": evaluator.metadata.get("eval_split", f"{REFERENCE_DATA}/heldout"),
        "seed": seed,
        **figures,
    }


def check_counts(n: int, batch_size: int) -> None:
    """--n and --batch-size of dcgan eval, before anything loads."""
    if n < 1:
        raise DcganError(f"--n must be >= 1, got {n}")
    if n > MAX_N:
        raise DcganError(f"--n must be <= {MAX_N:,} (memory grows with n), got {n}")
    if batch_size < 1:
        raise DcganError(f"--batch-size must be >= 1, got {batch_size}")


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _check_same_data(sampler, evaluator: Evaluator, any_data: bool) -> None:
    """A classifier's figures mean something for a generator trained on the data it knows: the
    digits for the shipped one, its own data set (same sha256) for one trained with --data."""
    problem = _other_data(sampler, evaluator)
    if problem is not None and not any_data:
        raise DcganError(problem)


def _other_data(sampler, evaluator: Evaluator) -> str | None:
    """Why ``sampler``'s model was trained on other data than ``evaluator``'s classifier, or None."""
    trained_on = sampler.metadata.get(Meta.DATASET, Meta.UNKNOWN)
    if CLASSIFIER_REFERENCE not in evaluator.metadata:
        if trained_on not in (*DIGIT_DATASETS, Meta.UNKNOWN):
            return (f"{sampler.model_path} was trained on {trained_on!r}, not digits: a digit classifier's "
                    "figures would mean nothing (train one on that data with dcgan classifier --data; "
                    "--any-data scores it anyway)")
        return None
    model_data = sampler.metadata.get(Meta.DATASET_SHA256, Meta.UNKNOWN)
    classifier_data = evaluator.metadata.get("data_sha256")
    if model_data != Meta.UNKNOWN and model_data != classifier_data:
        return (f"{sampler.model_path} was trained on other data ({trained_on!r}) than the classifier "
                f"{evaluator.classifier_path} ({evaluator.metadata.get('train_split')}); --any-data "
                "scores it anyway")
    return None


def _class_accuracy_skipped(sampler, evaluator: Evaluator) -> str | None:
    """Why a conditional model's per-class accuracy would mean nothing with this classifier (None:
    it means something): its classes must be the classifier's, in the same order, on the same
    data. The shipped classifier's classes are the digits "0" .. "9", as a conditional model
    trained on mnist names them."""
    ours = list(sampler.class_names)
    theirs = evaluator.class_names() or [str(k) for k in range(evaluator.num_classes)]
    if ours != theirs:
        return (f"the model's classes ({_names(ours)}) are not the classifier's ({_names(theirs)})")
    if _other_data(sampler, evaluator) is not None:
        return "the model was trained on other data than the classifier"
    return None


def _names(names: list[str]) -> str:
    shown = ", ".join(name[:20] for name in names[:5])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > 5 else shown


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def format_report(report: dict) -> str:
    """A readable table of ``evaluate_generator``'s figures."""
    rows = [
        ("model", report["model"]),
        ("classifier", f"{report['classifier']} (held-out accuracy "
                       f"{_percent(report.get('classifier_accuracy'))})"),
        ("samples", f"{report['n']} (seed {report['seed']}) vs {report['reference']}"),
        ("classifier FID", f"{report['fid']:.3f}"),
        ("  floor (real train images)", f"{report['fid_floor']:.3f}"),
        ("classifier score", f"{report['classifier_score']:.3f}  (max {len(report['class_shares'])})"),
        ("mean confidence", f"{report['mean_confidence']:.3f}"),
        ("KL(classes || uniform)", f"{report['kl_uniform']:.4f} nats"),
        ("smallest class share", f"{report['min_class_share']:.1%}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("class shares:")
    names = report.get("class_names") or [str(i) for i in range(len(report["class_shares"]))]
    name_width = max(len(name) for name in names)
    for name, share in zip(names, report["class_shares"]):
        lines.append(f"  {name:<{name_width}}  {share:6.1%}  {'#' * int(round(share * 100))}")
    if "class_accuracy" in report:  # a class-conditional model
        lines += _format_class_accuracy(report, names, name_width)
    return "\n".join(lines)


def _format_class_accuracy(report: dict, names: list[str], name_width: int) -> list[str]:
    if report["class_accuracy"] is None:
        return [f"class accuracy: not measured: {report['class_accuracy_skipped']}"]
    lines = ["class accuracy (samples drawn as a class that the classifier calls it):"]
    for name, accuracy in zip(names, report["class_accuracy"]):
        lines.append(f"  {name:<{name_width}}  {_percent(accuracy, 'no samples'):>6}")
    lines.append(f"lowest class accuracy  {_percent(report['min_class_accuracy'], 'none measured')}")
    return lines


def _percent(value: float | None, missing: str = "unknown") -> str:
    return missing if value is None else f"{value:.1%}"

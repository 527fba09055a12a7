"""Sample images from an exported generator with onnxruntime and numpy: no TensorFlow, ever.

This is the module other programs embed::

    from dcgan_export import Sampler
    sampler = Sampler()                      # the shipped models/generator.onnx
    images = sampler.sample(16, seed=0)      # float32 [16, H, W, C] in [-1, 1] (28, 28, 1 for digits)
    pixels = sampler.sample_pixels(16, seed=0)   # uint8 [16, H, W] for C = 1, [16, H, W, 3] for RGB

Noise is derived per image: image ``i`` of seed ``s`` comes from its own counter-based stream
(``dcgan_export.noise``), so it is the same whatever ``n`` or ``batch_size`` is, and other
languages compute the same float32 bits (``examples/web/noise.js``; docs/noise.md).

A class-conditional generator (``dcgan train --conditional``) takes a class per image too::

    sampler.sample_pixels(16, seed=0, labels="7")      # an index or a name, for every image
    sampler.generate_pixels(z, labels=[0, 1, 2])       # or one per image
    sampler.generate_pixels(z, class_weights=w)        # blends of classes: w [K] or [n, K] (needs onnx)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort

from .classes import Classes, is_sequence
from .contract import (CLASS_OFFSETS_INPUT, IMAGES_OUTPUT, LABELS_INPUT, PIXELS_OUTPUT, check_float_array,
                       split_class_weights, to_pixels)
from .errors import DcganError, ModelOutputError, first_line
from .limits import MAX_SEED, MAX_THREADS, check_int
from .noise import MIN_TRUNCATION, check_truncation, noise  # noqa: F401 (MIN_TRUNCATION: re-exported)
from .paths import shipped_file
from .run_dir import RunDir

MODEL_FILENAME = RunDir.GENERATOR_ONNX


def default_model_path() -> Path:
    """The shipped generator."""
    return shipped_file(MODEL_FILENAME)


def model_path(model: str | os.PathLike | None) -> Path:
    """The ONNX generator a ``--model`` names: a file, a run directory (its generator.onnx), or
    None for the shipped one."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if path.is_dir():
        return RunDir(path).model(RunDir.GENERATOR_ONNX,
                                  f"export it with: dcgan export {path} --out {path / RunDir.GENERATOR_ONNX}")
    return path


def open_session(model: str | os.PathLike | bytes, threads: int | None = None, label: str | None = None,
                 providers: list[str] | None = None) -> ort.InferenceSession:
    """An onnxruntime session set up the one way dcgan runs models, or a one-line DcganError.

    ``model``: a file path or serialized bytes; ``threads``: intra-op threads (default: physical
    cores); ``label``: how the error names the model (default: its path). Full graph
    optimisation, CPU provider, warnings silenced (onnxruntime logs harmless notes at level 2).
    """
    if threads is not None:
        threads = check_int(threads, "threads", 1, MAX_THREADS)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for corrupt or invalid files
        name = label or ("ONNX model bytes" if isinstance(model, bytes) else str(model))
        raise DcganError(f"{name}: not a loadable ONNX model ({first_line(exc)})") from None


def physical_cores() -> int:
    """Cores this process may use, not counting SMT siblings (they slow conv kernels down)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    try:
        cores = set()
        physical = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key and core is not None:
                    cores.add((physical, core))
                    physical = core = None
        if core is not None:
            cores.add((physical, core))
        if cores:
            return max(1, min(allowed, len(cores)))
    except OSError:
        pass
    return max(1, allowed)


# numpy dtypes for onnxruntime's float tensor types: a model with a float64 or float16 input is fed
# in its own type, and its float outputs are read back as float32.
FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class ModelInput:
    """How to feed a session's one float input: its dtype, and its batch size where the model
    fixes one (then any number of rows goes through in chunks of exactly that size, the last
    one padded).

    ``side_inputs``: names of other inputs the caller feeds row for row with it (a conditional
    generator's labels); they are chunked and padded alongside.
    """

    def __init__(self, session: ort.InferenceSession, what: str, side_inputs: tuple[str, ...] = ()):
        inputs = session.get_inputs()
        main = [i for i in inputs if i.name not in side_inputs]
        if len(main) != 1:
            found = ", ".join(f"{i.name}{i.shape}" for i in inputs) or "none"
            besides = f" besides {', '.join(map(repr, side_inputs))}" if side_inputs else ""
            raise DcganError(f"{what}: expected one input{besides}, found {len(inputs)} ({found})")
        meta = main[0]
        if meta.type not in FLOAT_TYPES:
            raise DcganError(f"{what}: input {meta.name!r} must be a float tensor, found {meta.type}")
        self.name: str = meta.name
        self.shape: list = meta.shape
        self.dtype = FLOAT_TYPES[meta.type]
        batch = meta.shape[0] if meta.shape else None
        self.batch: int | None = batch if isinstance(batch, int) and batch > 0 else None

    def run(self, session: ort.InferenceSession, outputs: list[str], x: np.ndarray,
            side: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """``session.run`` over the rows of ``x`` (and of the ``side`` arrays, row for row),
        whatever the model's batch size."""
        feeds = {self.name: x.astype(self.dtype, copy=False), **(side or {})}
        if self.batch is None or len(x) == self.batch:
            return session.run(outputs, feeds)
        parts = []
        for start in range(0, len(x), self.batch):
            chunk = {name: _padded(arr[start:start + self.batch], self.batch) for name, arr in feeds.items()}
            rows = min(self.batch, len(x) - start)
            parts.append([out[:rows] for out in session.run(outputs, chunk)])
        return [np.concatenate(column) for column in zip(*parts)]


def _padded(chunk: np.ndarray, rows: int) -> np.ndarray:
    """``chunk`` with zero rows appended up to ``rows``."""
    if len(chunk) == rows:
        return chunk
    return np.concatenate([chunk, np.zeros((rows - len(chunk), *chunk.shape[1:]), chunk.dtype)])


def _float_output(meta, what: str) -> None:
    if meta.type not in FLOAT_TYPES:
        raise DcganError(f"{what}: output {meta.name!r} must be a float tensor, found {meta.type}")


def check_finite(images: np.ndarray, what: str) -> np.ndarray:
    """``images`` unchanged, or a ModelOutputError: a model producing NaN must not pass as black images."""
    bad = ~np.isfinite(images).all(axis=tuple(range(1, images.ndim)))
    if bad.any():
        raise ModelOutputError(f"{what}: the model produced NaN or infinite values "
                               f"for {int(bad.sum())} of {len(images)} images")
    return images


class Sampler:
    """A generator loaded into an onnxruntime session. Thread-safe: share one across threads.

    ``model``: an ONNX generator with input ``[N, latent]`` and output ``images`` (the contract in
    ``dcgan_export.contract``), or a run directory holding one (``None``: the shipped one).
    ``threads``: intra-op threads (default: physical cores). Models that keep the contract loosely
    work too: a float64 or float16 input, or a fixed batch size.

    A class-conditional generator has a second input ``labels`` int64 [N] and must name its
    classes in ``class_names`` metadata (``num_classes``, ``class_names``; None when unconditional).
    Every method that makes images takes ``labels``: one class for all images (an index or a
    name) or one per image (``resolve_labels``). ``generate`` needs them on such a model (a noise
    array says nothing of classes), while ``sample`` and ``iter_batches`` without them cycle
    through the classes, image i being class i % K, so a plain sample shows every class. The
    noise of image i never depends on its class: the same seed in another class keeps its style.
    ``generate`` also takes ``class_weights``, blends of classes (a walk from one class to the
    next), run on a copy of the graph rewritten for them (``class_blend``; needs onnx).
    """

    def __init__(self, model: str | os.PathLike | None = None, threads: int | None = None,
                 providers: list[str] | None = None):
        path = model_path(model)
        if not path.is_file():
            raise DcganError(f"model not found: {path}")
        self._session = open_session(path, threads, providers=providers)
        self.model_path = path
        self._input = ModelInput(self._session, f"{path}: not a generator", side_inputs=(LABELS_INPUT,))
        if len(self._input.shape) != 2 or not isinstance(self._input.shape[1], int) or self._input.shape[1] < 1:
            raise DcganError(f"{path}: not a generator: expected an input of shape [N, latent], "
                             f"found {self._input.name}{self._input.shape}")
        self.latent_dim: int = self._input.shape[1]
        outputs = {o.name: o for o in self._session.get_outputs()}
        if IMAGES_OUTPUT not in outputs:
            raise DcganError(f"{path}: not a generator: no output named {IMAGES_OUTPUT!r} (found {', '.join(outputs)})")
        _float_output(outputs[IMAGES_OUTPUT], f"{path}: not a generator")
        self.image_shape: tuple = tuple(outputs[IMAGES_OUTPUT].shape[1:])
        if len(self.image_shape) != 3 or self.image_shape[2] not in (1, 3) or not all(
                isinstance(d, int) and d > 0 for d in self.image_shape):
            raise DcganError(f"{path}: not a generator: output {IMAGES_OUTPUT!r} must be [N, H, W, 1 or 3], "
                             f"found {outputs[IMAGES_OUTPUT].shape}")
        pixels = outputs.get(PIXELS_OUTPUT)
        usable = (pixels is not None and pixels.type == "tensor(uint8)"
                  and tuple(pixels.shape[1:]) == self.pixel_shape)  # else they are made from images
        self._outputs = [IMAGES_OUTPUT] + ([PIXELS_OUTPUT] if usable else [])
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.classes: Classes | None = self._check_labels_input(path)
        self._threads, self._providers = threads, providers
        self._blend_session: ort.InferenceSession | DcganError | None = None  # made on first use
        self._blend_lock = threading.Lock()

    def _check_labels_input(self, path: Path) -> Classes | None:
        """The classes of a conditional model (one with a ``labels`` input), None for others."""
        labels = [i for i in self._session.get_inputs() if i.name == LABELS_INPUT]
        if not labels:
            return None
        meta = labels[0]
        if meta.type != "tensor(int64)" or len(meta.shape) != 1:
            raise DcganError(f"{path}: not a generator: input {LABELS_INPUT!r} must be int64 [N], "
                             f"found {meta.type}{meta.shape}")
        return Classes.from_metadata(self.metadata, str(path))

    def __repr__(self) -> str:
        return f"Sampler({str(self.model_path)!r}, latent_dim={self.latent_dim})"

    @property
    def num_classes(self) -> int | None:
        """K for a class-conditional model, None for an unconditional one."""
        return None if self.classes is None else len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The names of classes 0 .. K-1 of a class-conditional model, None for an unconditional one
        (whose metadata may still list its training data's classes: it cannot be asked for one)."""
        return None if self.classes is None else self.classes.names

    @property
    def pixel_shape(self) -> tuple:
        """One image's uint8 shape: (H, W) for grey models, (H, W, 3) for RGB ones."""
        return self.image_shape[:2] if self.image_shape[2] == 1 else self.image_shape

    def graph_io(self) -> tuple[list, list]:
        """The model's own inputs and outputs (onnxruntime NodeArgs: ``name``, ``type``, ``shape``),
        for what must describe the graph itself, such as a Triton model config."""
        return self._session.get_inputs(), self._session.get_outputs()

    # -- noise -> images ---------------------------------------------------------------------

    def check_noise(self, z) -> np.ndarray:
        """z as a C-contiguous float32 [n, latent] array, or a ValueError saying what is wrong."""
        return check_float_array(z, "noise", (self.latent_dim,))

    def resolve_labels(self, labels, n: int) -> np.ndarray | None:
        """The classes of ``n`` images as int64 [n] (None for an unconditional model without
        labels), or a one-line DcganError. ``labels``: one class for all n (an index, a numpy
        integer, or a name; a decimal string is an index unless it is a name), or a sequence of
        exactly n of them; bool and float are refused."""
        if self.classes is None:
            if labels is not None:
                raise DcganError("this model is not class-conditional: it takes no class (labels)")
            return None
        if labels is None:
            raise DcganError(f"this model is class-conditional: pass labels (classes {self.classes.listing()})")
        return self.classes.resolve(labels, n)

    def cycle_labels(self, n: int, start: int = 0) -> np.ndarray | None:
        """The classes ``sample`` gives images start .. start+n-1 when none is chosen (image i:
        class i % K); None for an unconditional model."""
        return None if self.classes is None else self.classes.cycle(n, start)

    @property
    def can_blend(self) -> bool:
        """Whether ``generate`` takes ``class_weights`` that blend classes: a conditional model whose
        graph reads its class as a row of a table, as every exported one does (``class_blend``)."""
        return self.classes is not None and not isinstance(self._blending_session(), DcganError)

    def check_can_blend(self) -> None:
        """Nothing, or the one-line DcganError that says why this model cannot blend classes."""
        if self.classes is None:
            raise DcganError(f"{self.model_path} is not class-conditional: it has no classes to blend")
        problem = self._blending_session()
        if isinstance(problem, DcganError):
            raise DcganError(str(problem))

    def _blending_session(self) -> ort.InferenceSession | DcganError:
        """The model rewritten in memory to take ``class_offsets`` (made once, on first use), or the
        DcganError that says why it cannot be."""
        with self._blend_lock:
            if self._blend_session is None:
                from .class_blend import blend_model_bytes

                try:
                    data = blend_model_bytes(str(self.model_path), len(self.classes))
                    self._blend_session = open_session(data, self._threads, label=str(self.model_path),
                                                       providers=self._providers)
                except DcganError as exc:
                    self._blend_session = DcganError(f"{self.model_path}: {exc}")
            return self._blend_session

    def class_inputs(self, n: int, labels=None, class_weights=None) -> tuple[dict[str, np.ndarray] | None, bool]:
        """(the class inputs to feed for ``n`` images, None for an unconditional model; whether
        they blend classes). ``labels`` as ``resolve_labels``, or ``class_weights`` [K] or [n, K]:
        a blend of classes per image, non-negative, each row summing to 1."""
        if class_weights is None:
            labels = self.resolve_labels(labels, n)
            return (None if labels is None else {LABELS_INPUT: labels}), False
        if labels is not None:
            raise DcganError("give labels or class_weights, not both")
        if self.classes is None:
            raise DcganError("this model is not class-conditional: it takes no class weights")
        labels, offsets = split_class_weights(self.classes.weights(class_weights, n))
        if not offsets.any():  # one class per image: the model as it is, exactly
            return {LABELS_INPUT: labels}, False
        return {LABELS_INPUT: labels, CLASS_OFFSETS_INPUT: offsets}, True

    def _run(self, z, labels=None, class_weights=None) -> list[np.ndarray]:
        """[images float32] (+ [pixels uint8] where the model has them), checked to be finite."""
        z = self.check_noise(z)
        side, blends = self.class_inputs(len(z), labels, class_weights)
        if blends:
            self.check_can_blend()
        session = self._blending_session() if blends else self._session
        results = self._input.run(session, self._outputs, z, side)
        images = results[0].astype(np.float32, copy=False)
        if images.shape[1:] != self.image_shape:
            raise ModelOutputError(f"{self.model_path}: the model declares images {list(self.image_shape)} "
                                   f"but produced {list(images.shape[1:])}")
        return [check_finite(images, str(self.model_path)), *results[1:]]

    def generate(self, z, labels=None, class_weights=None) -> np.ndarray:
        """Images for noise ``z`` [n, latent] (and ``labels`` or ``class_weights``, on a conditional
        model: ``class_inputs``): float32 [n, H, W, C] in [-1, 1]."""
        return self._run(z, labels, class_weights)[0]

    def generate_pixels(self, z, labels=None, class_weights=None) -> np.ndarray:
        """Images for noise ``z`` (and ``labels`` or ``class_weights``) as uint8 [n, H, W] (C = 1)
        or [n, H, W, 3], round((x + 1) * 127.5)."""
        return self.generate_with_pixels(z, labels, class_weights)[1]

    def generate_with_pixels(self, z, labels=None, class_weights=None) -> tuple[np.ndarray, np.ndarray]:
        """(``generate``, ``generate_pixels``) from one run of the model: a caller wanting both
        (``dcgan serve``'s v2 API) need not pay for two."""
        results = self._run(z, labels, class_weights)
        return results[0], results[1] if len(results) > 1 else to_pixels(results[0])

    # -- seeds -> images ---------------------------------------------------------------------

    def noise(self, n: int, seed: int, start: int = 0, truncation: float | None = None) -> np.ndarray:
        """The noise that ``sample(n, seed, truncation=...)`` uses, for images ``start .. start+n-1``."""
        return noise(seed, start, n, self.latent_dim, truncation)

    def iter_batches(self, n: int, seed: int | None = None, batch_size: int = 256, pixels: bool = False,
                     truncation: float | None = None, labels=None) -> Iterator[np.ndarray]:
        """Yield the ``n`` images in chunks of at most ``batch_size``: bounded memory for any n.
        ``labels``: as ``resolve_labels``; None on a conditional model: image i is class i % K."""
        if n < 1:
            raise DcganError(f"n must be >= 1, got {n}")
        if batch_size < 1:
            raise DcganError(f"batch_size must be >= 1, got {batch_size}")
        seed = resolve_seed(seed)
        check_truncation(truncation)
        labels_of = self._batch_labels(labels, n)
        run = self.generate_pixels if pixels else self.generate
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            z, batch_labels = self.noise(count, seed, start, truncation), labels_of(start, count)
            yield run(z) if batch_labels is None else run(z, batch_labels)  # unconditional: called as ever

    def _batch_labels(self, labels, n: int):
        """(start, count) -> the labels of images start .. start+count-1, checked once up front;
        one class is not spelled out n times (n may be millions)."""
        if labels is None:
            return lambda start, count: self.cycle_labels(count, start)  # None when unconditional
        if self.classes is None:
            self.resolve_labels(labels, n)  # raises: labels on an unconditional model
        if not is_sequence(labels):
            k = self.classes.index(labels)
            return lambda start, count: np.full(count, k, np.int64)
        resolved = self.classes.resolve(labels, n)
        return lambda start, count: resolved[start:start + count]

    def sample(self, n: int, seed: int | None = None, batch_size: int = 256,
               truncation: float | None = None, labels=None) -> np.ndarray:
        """``n`` images, float32 [n, H, W, C] in [-1, 1]; image i depends only on (seed, i) (and
        ``truncation``, and its class on a conditional model: ``labels`` as ``iter_batches``)."""
        return np.concatenate(list(self.iter_batches(n, seed, batch_size, truncation=truncation, labels=labels)))

    def sample_pixels(self, n: int, seed: int | None = None, batch_size: int = 256,
                      truncation: float | None = None, labels=None) -> np.ndarray:
        """``n`` images as uint8 [n, H, W] (or [n, H, W, 3]); image i depends only on (seed, i)."""
        return np.concatenate(list(self.iter_batches(n, seed, batch_size, pixels=True, truncation=truncation,
                                                     labels=labels)))


def resolve_seed(seed: int | None) -> int:
    """A fixed seed as given; ``None`` draws a fresh one from the OS."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**31))
    return check_int(seed, "seed", 0, MAX_SEED)

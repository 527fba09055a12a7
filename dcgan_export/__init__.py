"""dcgan: sample digits from an exported DCGAN generator with onnxruntime (no TensorFlow).

    from dcgan_export import Sampler
    images = Sampler().sample(16, seed=0)   # float32 [16, 28, 28, 1] in [-1, 1]

The package also holds what every part shares (``contract``: the model's inputs, outputs and
pixel mapping; ``run_dir``: a training run's files), the exporter (``export``, which needs the
[train] extra's TensorFlow) and the ``dcgan`` command group, which registers the trainer's
commands from ``trainer/cli.py``. Sampling, ``eval`` and ``serve`` never import TensorFlow.
"""

from .errors import DcganError

__all__ = ["Sampler", "DcganError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `dcgan --help` and `dcgan train` don't pay for onnxruntime and numpy up front.
    if name == "Sampler":
        from .runtime import Sampler

        return Sampler
    raise AttributeError(f"module 'dcgan_export' has no attribute {name!r}")

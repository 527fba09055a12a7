"""dcgan: sample digits from an exported DCGAN generator with onnxruntime (no TensorFlow).

    from dcgan_export import Sampler
    images = Sampler().sample(16, seed=0)   # float32 [16, 28, 28, 1] in [-1, 1]
"""

from .errors import DcganError
from .runtime import Sampler

__all__ = ["Sampler", "DcganError"]
__version__ = "0.1.0"

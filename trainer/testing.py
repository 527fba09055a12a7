"""Stand-in generators for tests and benchmarks, not for training.

A freshly built generator has identity BatchNorm (mean 0, variance 1, gamma 1, beta 0) and zero
biases, so an export that folded BatchNorm wrongly or dropped a bias would still match Keras.
These weights make every such term count.
"""

from __future__ import annotations

import keras
import numpy as np

from trainer.models import build_generator


def random_generator(seed: int = 0, image_shape: tuple = (28, 28, 1)) -> keras.Model:
    """The recipe generator (for ``image_shape``) with random weights, biases and non-identity
    BatchNorm statistics."""
    keras.utils.set_random_seed(seed)
    model = build_generator(image_shape=image_shape)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.2, c).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.3, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, c).astype(np.float32))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype(np.float32))
    return model

"""The discriminator's training forward pass with dropout masks from a counter-based hash.

Keras's ``Dropout`` draws its masks from the backend's random generator: threefry on JAX and
Philox on TensorFlow, each run over every element. For the recipe's discriminator that is 1.8
million draws per iteration at batch 32, and on the 2-core AVX-512 EPYC of docs/training.md it
cost about 13 ms of JAX's 81 ms step (9 ms of TensorFlow's 70). A dropout mask needs far less than
a cryptographic-strength generator, so here each element's bits are its index in the batch, keyed
by the layer's own seed, through two rounds of an integer hash (Chris Wellons's ``lowbias32``, a
bijection on 32 bits with low avalanche bias): a couple of dozen integer operations that XLA fuses
into one kernel (on TensorFlow too: the mask alone is compiled with ``jit_compile``). Keep
probability and scale are Keras's (keep with 1 - rate, scale by 1 / (1 - rate); the threshold is
exact to 2^-32), the seed is the layer's ``SeedGenerator`` as before (so checkpoints and resume
are unchanged), and the masks are the same bits on every backend: a run that resumes on the other
backend keeps drawing the masks it would have drawn. tests/test_dropout.py checks the statistics.

Only the training pass changes; the saved discriminator keeps its ordinary ``Dropout`` layers.
"""

from __future__ import annotations

import functools
import math

import keras
from keras import ops

from .gradients import replica_index

_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)


def _u32(value):
    return ops.convert_to_tensor(value, "uint32")


def lowbias32(x):
    """Wellons's lowbias32 integer hash of uint32 ``x``, elementwise."""
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))
    x = ops.multiply(x, _u32(_MULTIPLIERS[0]))
    x = ops.bitwise_xor(x, ops.right_shift(x, _u32(15)))
    x = ops.multiply(x, _u32(_MULTIPLIERS[1]))
    return ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))


def random_bits(seed, shape, offset=0):
    """uint32 bits for each element of ``shape``, from a ``SeedGenerator`` draw (two integers) and
    the element's row-major index plus ``offset``: the same on every backend."""
    seed = ops.cast(seed, "uint32")
    key0 = lowbias32(seed[0])
    key1 = lowbias32(ops.bitwise_xor(seed[1], key0))
    size = math.prod(shape)
    # int32 then cast: TensorFlow has no uint32 range.
    index = ops.cast(ops.arange(size, dtype="int32"), "uint32") + ops.cast(offset, "uint32")
    bits = lowbias32(ops.bitwise_xor(lowbias32(ops.bitwise_xor(index, key0)), key1))
    return ops.reshape(bits, shape)


def dropout(x, rate: float, seed_generator: keras.random.SeedGenerator):
    """``keras.random.dropout(x, rate)`` in distribution, with masks from ``random_bits``. Under
    TensorFlow's MirroredStrategy each replica takes its own rows of the global batch's mask."""
    seed = seed_generator.next()
    offset = ops.cast(replica_index() * math.prod(ops.shape(x)), "uint32")
    if keras.backend.backend() == "tensorflow":
        # TensorFlow runs each integer operation as its own pass over memory; compiled by XLA,
        # the mask is one fused kernel (under half the time on the discriminator's activations).
        import tensorflow as tf

        return x * _compiled_keep_scale(rate)(tf.stop_gradient(x), seed, offset)
    return x * keep_scale(x, rate, seed, offset)


def keep_scale(x, rate: float, seed, offset):
    """1 / (1 - rate) where an element of ``x`` is kept, else 0 (of x's shape and dtype)."""
    keep = 1.0 - rate
    bits = random_bits(seed, tuple(ops.shape(x)), offset)
    last_kept = _u32(round(keep * 2**32) - 1)  # keep bits 0..last_kept: all of them at rate 0
    scale = ops.convert_to_tensor(1.0 / keep, x.dtype)
    return ops.where(ops.less_equal(bits, last_kept), scale, ops.zeros_like(scale))


@functools.cache
def _compiled_keep_scale(rate: float):
    import tensorflow as tf

    return tf.function(lambda x, seed, offset: keep_scale(x, rate, seed, offset), jit_compile=True)


def discriminator_forward(discriminator: keras.Model, images, labels=None, training: bool = True):
    """``discriminator(images or [images, labels], training=training)``, with every plain
    ``Dropout`` layer's mask drawn by ``dropout``. A ``Sequential`` is walked layer by layer, as is
    the conditional discriminator's ``features`` (``trainer.models``); any other model is called."""
    if labels is not None:
        try:
            features = discriminator.get_layer("features")
            logit = discriminator.get_layer("logit")
            projection = discriminator.get_layer("projection")
            total = discriminator.get_layer("logit_plus_projection")
        except ValueError:
            return discriminator([images, labels], training=training)
        f = discriminator_forward(features, images, training=training)
        return total([logit(f), projection([f, labels])])
    if not isinstance(discriminator, keras.Sequential):
        return discriminator(images, training=training)
    x = images
    for layer in discriminator.layers:
        if training and isinstance(layer, keras.layers.Dropout) and layer.noise_shape is None and layer.rate > 0:
            x = dropout(x, layer.rate, layer.seed_generator)
        else:
            x = layer(x, training=training)
    return x

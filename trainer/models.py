"""The two networks of the classic Keras MNIST DCGAN recipe, scaled to other image sizes.

For 28x28x1 they are the recipe's, layer for layer (865,281 and 212,865 parameters). Other
sizes follow one rule (docs/training.md, "Other image sizes"): an image side S = b * 2^k (base
grid b of 5 to 8, k doublings; ``dcgan_export.contract.base_grid``) gives

* the generator: Dense to a b x b x W grid, BatchNorm, LeakyReLU, then k stages of
  UpSampling2D + Conv2D(5): the first k - 1 with BatchNorm and LeakyReLU and widths W/2, W/4, ...
  (never below W/4), the last to C channels with tanh;
* the discriminator: k strided Conv2D(5) + LeakyReLU + Dropout(0.3) stages of widths
  W/2, W, 2W, ... (never above 4W), then one logit;

with W = 128 x ``width`` (``--width-multiplier``). Layer names are the recipe's (dense, bn1,
up1, conv1, ...), so the 28x28x1 networks load the weights they always did.

Class-conditional networks (``--conditional``, K classes; docs/training.md says why these two):

* the generator's Dense layer reads z joined to the class's one-hot vector, which is a learned
  class embedding added to its pre-activation (the network above, named ``trunk``, with K more
  input rows); the model takes ``[z, labels]``;
* the discriminator is a projection discriminator (Miyato and Koyama, 2018): its logit gains
  <embed(y), features(x)>, the inner product of a learned class embedding with the flattened
  features its logit is computed from; it takes ``[image, labels]``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from dcgan_export.contract import base_grid

LATENT_DIM = 100
IMAGE_SHAPE = (28, 28, 1)
BASE_WIDTH = 128


def widths(image_shape: tuple[int, int, int], width: float = 1.0) -> tuple[list[int], list[int]]:
    """(generator widths: the base grid's then each stage's but the last; discriminator widths per stage)."""
    _, doublings = base_grid(image_shape[0])
    top = max(1, round(BASE_WIDTH * width))
    generator = [top] + [max(top // 2**i, top // 4, 1) for i in range(1, doublings)]
    discriminator = [min(max(top // 2, 1) * 2**j, top * 4) for j in range(doublings)]
    return generator, discriminator


def check_shape(image_shape) -> tuple[int, int, int]:
    height, width_, channels = image_shape
    if height != width_ or channels not in (1, 3):
        raise ValueError(f"images must be square with 1 or 3 channels, got {tuple(image_shape)}")
    base_grid(height)  # a DcganError for sizes the networks cannot make
    return height, width_, channels


def build_generator(latent_dim: int = LATENT_DIM, image_shape: tuple = IMAGE_SHAPE, width: float = 1.0,
                    num_classes: int | None = None) -> keras.Model:
    """z (latent_dim) -> image ``image_shape`` in [-1, 1]. 865,281 parameters for the recipe's
    latent 100 and 28x28x1. With ``num_classes``: [z, labels int32 [N]] -> image.

    The output layer is float32 even under a mixed-precision policy, so tanh stays exact.
    """
    size, _, channels = check_shape(image_shape)
    base, doublings = base_grid(size)
    stage_widths, _ = widths(image_shape, width)
    stack = [
        keras.Input((latent_dim + (num_classes or 0),), name="z"),
        layers.Dense(base * base * stage_widths[0], name="dense"),
        layers.BatchNormalization(name="bn1"),
        layers.LeakyReLU(0.2, name="lrelu1"),
        layers.Reshape((base, base, stage_widths[0]), name="reshape"),
    ]
    for stage in range(1, doublings + 1):
        stack.append(layers.UpSampling2D(name=f"up{stage}"))
        if stage < doublings:
            stack += [layers.Conv2D(stage_widths[stage], 5, padding="same", name=f"conv{stage}"),
                      layers.BatchNormalization(name=f"bn{stage + 1}"),
                      layers.LeakyReLU(0.2, name=f"lrelu{stage + 1}")]
        else:
            stack.append(layers.Conv2D(channels, 5, padding="same", activation="tanh", dtype="float32",
                                       name=f"conv{stage}"))
    if not num_classes:
        return keras.Sequential(stack, name="generator")
    trunk = keras.Sequential(stack, name="trunk")
    z = keras.Input((latent_dim,), name="z")
    labels = keras.Input((), dtype="int32", name="labels")
    one_hot = layers.CategoryEncoding(num_classes, output_mode="one_hot", name="one_hot")(labels)
    joined = layers.Concatenate(name="z_and_class")([z, one_hot])
    return keras.Model([z, labels], trunk(joined), name="generator")


def build_discriminator(image_shape: tuple = IMAGE_SHAPE, width: float = 1.0,
                        num_classes: int | None = None) -> keras.Model:
    """image ``image_shape`` -> one logit (train with from_logits=True). 212,865 parameters for
    28x28x1. With ``num_classes``: [image, labels int32 [N]] -> logit (a projection discriminator)."""
    size, _, _ = check_shape(image_shape)
    _, stage_widths = widths(image_shape, width)
    stack = [keras.Input(tuple(image_shape), name="image")]
    for stage, filters in enumerate(stage_widths, 1):
        stack += [layers.Conv2D(filters, 5, strides=2, padding="same", name=f"conv{stage}"),
                  layers.LeakyReLU(0.2, name=f"lrelu{stage}"),
                  layers.Dropout(0.3, name=f"drop{stage}")]
    stack.append(layers.Flatten(name="flatten"))
    if not num_classes:
        return keras.Sequential([*stack, layers.Dense(1, dtype="float32", name="logit")], name="discriminator")
    features = keras.Sequential(stack, name="features")
    image = keras.Input(tuple(image_shape), name="image")
    labels = keras.Input((), dtype="int32", name="labels")
    f = features(image)
    logit = layers.Dense(1, dtype="float32", name="logit")(f)
    projection = ClassProjection(num_classes, dtype="float32", name="projection")([f, labels])
    return keras.Model([image, labels], layers.Add(dtype="float32", name="logit_plus_projection")([logit, projection]),
                       name="discriminator")


@keras.saving.register_keras_serializable(package="dcgan")
class ClassProjection(layers.Layer):
    """[features [N, F], labels [N]] -> [N, 1]: <embedding[label], features>, the projection
    discriminator's class term."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape):
        self.embedding = self.add_weight(shape=(self.num_classes, input_shape[0][-1]), name="embedding",
                                         initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, inputs):
        features, labels = inputs
        rows = ops.take(self.embedding, ops.cast(labels, "int32"), axis=0)
        return ops.sum(ops.cast(features, self.compute_dtype) * rows, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}

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
"""

from __future__ import annotations

import keras
from keras import layers

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


def build_generator(latent_dim: int = LATENT_DIM, image_shape: tuple = IMAGE_SHAPE, width: float = 1.0) -> keras.Model:
    """z (latent_dim) -> image ``image_shape`` in [-1, 1]. 865,281 parameters for the recipe's
    latent 100 and 28x28x1.

    The output layer is float32 even under a mixed-precision policy, so tanh stays exact.
    """
    size, _, channels = check_shape(image_shape)
    base, doublings = base_grid(size)
    stage_widths, _ = widths(image_shape, width)
    stack = [
        keras.Input((latent_dim,), name="z"),
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
    return keras.Sequential(stack, name="generator")


def build_discriminator(image_shape: tuple = IMAGE_SHAPE, width: float = 1.0) -> keras.Model:
    """image ``image_shape`` -> one logit (train with from_logits=True). 212,865 parameters for 28x28x1."""
    size, _, _ = check_shape(image_shape)
    _, stage_widths = widths(image_shape, width)
    stack = [keras.Input(tuple(image_shape), name="image")]
    for stage, filters in enumerate(stage_widths, 1):
        stack += [layers.Conv2D(filters, 5, strides=2, padding="same", name=f"conv{stage}"),
                  layers.LeakyReLU(0.2, name=f"lrelu{stage}"),
                  layers.Dropout(0.3, name=f"drop{stage}")]
    stack += [layers.Flatten(name="flatten"), layers.Dense(1, dtype="float32", name="logit")]
    return keras.Sequential(stack, name="discriminator")

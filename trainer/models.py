"""The two networks of the classic Keras MNIST DCGAN recipe, layer for layer."""

from __future__ import annotations

import keras
from keras import layers

LATENT_DIM = 100
IMAGE_SHAPE = (28, 28, 1)


def build_generator(latent_dim: int = LATENT_DIM) -> keras.Model:
    """z (latent_dim) -> image (28, 28, 1) in [-1, 1]. 865,281 parameters for latent 100.

    The output layer is float32 even under a mixed-precision policy, so tanh stays exact.
    """
    return keras.Sequential(
        [
            keras.Input((latent_dim,), name="z"),
            layers.Dense(7 * 7 * 128, name="dense"),
            layers.BatchNormalization(name="bn1"),
            layers.LeakyReLU(0.2, name="lrelu1"),
            layers.Reshape((7, 7, 128), name="reshape"),
            layers.UpSampling2D(name="up1"),
            layers.Conv2D(64, 5, padding="same", name="conv1"),
            layers.BatchNormalization(name="bn2"),
            layers.LeakyReLU(0.2, name="lrelu2"),
            layers.UpSampling2D(name="up2"),
            layers.Conv2D(1, 5, padding="same", activation="tanh", dtype="float32", name="conv2"),
        ],
        name="generator",
    )


def build_discriminator() -> keras.Model:
    """image (28, 28, 1) -> one logit (train with from_logits=True). 212,865 parameters."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE, name="image"),
            layers.Conv2D(64, 5, strides=2, padding="same", name="conv1"),
            layers.LeakyReLU(0.2, name="lrelu1"),
            layers.Dropout(0.3, name="drop1"),
            layers.Conv2D(128, 5, strides=2, padding="same", name="conv2"),
            layers.LeakyReLU(0.2, name="lrelu2"),
            layers.Dropout(0.3, name="drop2"),
            layers.Flatten(name="flatten"),
            layers.Dense(1, dtype="float32", name="logit"),
        ],
        name="discriminator",
    )

"""The classifier whose feature space ``dcgan eval`` measures samples in.

Inception features say little about 28x28 digits (and there is no Inception offline), so, as
TF-GAN's MNIST evaluation does, we train a small CNN on a labelled data set's TRAIN split and
use its penultimate layer for the Frechet distance and its softmax for the class figures. The
HELD-OUT split is never seen in training: it is what generated samples are compared against,
and what the accuracy written into the ONNX metadata is measured on. The shipped one is trained
on the embedded digits (mnist-8k); any labelled data set (class sub-folders, say) gets its own.

    dcgan classifier --out models/mnist_classifier.onnx
    dcgan classifier --data ~/pictures --image-size 64 --out runs/pictures_classifier.onnx
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dcgan_export.contract import (CLASSIFIER_FEATURES, CLASSIFIER_INPUT, CLASSIFIER_LOGITS, CLASSIFIER_REFERENCE,
                                   IMAGE_SHAPE, NUM_CLASSES)

DATA = "mnist-8k"
FEATURE_DIM = 64  # small, so a covariance from 1,000 held-out digits is well estimated
INPUT_NAME = CLASSIFIER_INPUT
OUTPUT_NAMES = [CLASSIFIER_LOGITS, CLASSIFIER_FEATURES]


def build_classifier(image_shape: tuple = IMAGE_SHAPE, num_classes: int = NUM_CLASSES, feature_dim: int = FEATURE_DIM):
    """image ``image_shape`` in [-1, 1] -> (logits [num_classes], features [feature_dim]).

    Conv blocks with BatchNorm (two for 28x28, one more per doubling of the side past 32), then a
    dense layer whose ReLU output is the feature vector.
    """
    import keras
    from keras import layers

    def conv_block(x, filters, name):
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = layers.ReLU(name=f"{name}_relu{i}")(x)
        return layers.MaxPooling2D(name=f"{name}_pool")(x)

    inputs = keras.Input(tuple(image_shape), name=INPUT_NAME)
    x, side, block = inputs, image_shape[0], 0
    while block < 2 or side > 8:
        block += 1
        x = conv_block(x, min(32 * 2 ** (block - 1), 128), f"block{block}")
        side //= 2
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.4, name="drop1")(x)
    x = layers.Dense(feature_dim, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    features = layers.ReLU(name="features")(x)
    x = layers.Dropout(0.3, name="drop2")(features)
    logits = layers.Dense(num_classes, name=CLASSIFIER_LOGITS)(x)
    return keras.Model(inputs, [logits, features], name="mnist_classifier" if image_shape == IMAGE_SHAPE else "classifier")


def build_augmenter():
    """Small random shifts, rotations and zooms; the background (-1) fills what moves in."""
    import keras
    from keras import layers

    fill = dict(fill_mode="constant", fill_value=-1.0)
    return keras.Sequential(
        [
            layers.RandomRotation(0.03, **fill, name="rotate"),  # +-11 degrees
            layers.RandomZoom(0.08, **fill, name="zoom"),
            layers.RandomTranslation(0.08, 0.08, **fill, name="shift"),  # +-2 pixels
        ],
        name="augment",
    )


def train_classifier(out_path: str | os.PathLike, epochs: int = 18, seed: int = 0, batch_size: int = 64,
                     verbose: int = 0, data: str = DATA, options=None) -> dict:
    """Train on ``data``'s train split (mnist-8k's 7,000 digits by default; any labelled set: a
    fixed nine tenths), export to ONNX at ``out_path`` (atomically), return its figures.

    The returned ``accuracy`` is measured with onnxruntime on the exported graph, on the held-out
    split, so it describes exactly the file that ships. ``options``: a datasets.ImageOptions.
    """
    import json

    from dcgan_export.errors import DcganError
    from dcgan_export.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_TRAINING_SEED, check_int
    from dcgan_export.paths import check_writable_dir, existing_ancestor

    epochs = check_int(epochs, "--epochs", 1, MAX_EPOCHS)
    seed = check_int(seed, "--seed", 0, MAX_TRAINING_SEED)
    batch_size = check_int(batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
    out = Path(out_path)
    if out.suffix != ".onnx" or out.is_dir():
        raise DcganError(f"--out {out}: give an .onnx file name")
    check_writable_dir(existing_ancestor(out.parent), "--out")  # before minutes of training
    import numpy as np

    from dcgan_export import datasets
    from dcgan_export.contract import Meta, to_images

    options = options or datasets.ImageOptions()
    train, heldout = datasets.labelled_splits(data, options)
    num_classes = len(train.class_names) if train.class_names else int(max(train.labels.max(), heldout.labels.max())) + 1
    x_held, y_held = to_images(heldout.images), heldout.labels.astype(np.int64)

    started = time.perf_counter()
    model = fit_classifier(train.images, train.labels, epochs=epochs, seed=seed, batch_size=batch_size,
                           verbose=verbose, num_classes=num_classes)
    train_seconds = time.perf_counter() - started

    keras_logits, keras_features = model.predict(x_held, batch_size=500, verbose=0)
    proto = export_onnx(model)
    onnx_logits, onnx_features = _run_onnx(proto.SerializeToString(), x_held)
    parity = float(max(np.abs(onnx_logits - keras_logits).max(), np.abs(onnx_features - keras_features).max()))
    if parity > 1e-3:
        raise DcganError(f"exported classifier differs from Keras by {parity:.2e} (> 1e-3)", exit_code=1)
    accuracy = float((onnx_logits.argmax(axis=1) == y_held).mean())
    live = int((onnx_features.std(axis=0) > 0).sum())

    info = {
        "accuracy": accuracy,
        "train_seconds": round(train_seconds, 1),
        "epochs": epochs,
        "seed": seed,
        "feature_dim": FEATURE_DIM,
        "live_features": live,
        "parity": parity,
    }
    shape = train.image_shape
    metadata = {
        "kind": "mnist_classifier" if data == DATA else "classifier",
        "heldout_accuracy": f"{accuracy:.4f}",
        "eval_split": heldout.name,
        "train_split": train.name,
        "heldout_size": str(len(heldout)),
        "train_size": str(len(train)),
        "data_sha256": train.sha256,
        "feature_dim": str(FEATURE_DIM),
        "input_scaling": f"(pixel - 127.5) / 127.5, images float32 [N, {', '.join(map(str, shape))}]",
        "epochs": str(epochs),
        "seed": str(seed),
    }
    if data != DATA:  # how dcgan eval finds the same held-out images again
        spec = str(Path(data).expanduser().resolve()) if Path(data).expanduser().exists() else data  # any cwd
        metadata[CLASSIFIER_REFERENCE] = json.dumps({"spec": spec, "image_size": shape[0], "channels": shape[2],
                                              "background": list(options.background)})
    if train.class_names:
        metadata[Meta.CLASS_NAMES] = json.dumps(list(train.class_names))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"Classifier for dcgan eval: logits [N,{num_classes}] and penultimate features, "
                        f"trained on {train.name}.")

    from dcgan_export.atomic import atomic_write_bytes

    out.parent.mkdir(parents=True, exist_ok=True)
    payload = proto.SerializeToString()
    atomic_write_bytes(out, payload)
    info.update(path=str(out), size_bytes=len(payload))
    return info


def fit_classifier(pixels, labels, epochs: int = 18, seed: int = 0, batch_size: int = 64, verbose: int = 0,
                   num_classes: int = NUM_CLASSES):
    """The (logits, features) Keras classifier, trained on uint8 ``pixels`` ([N, S, S] or
    [N, S, S, 3]) and their ``labels`` with augmentation and a cosine-decayed Adam rate. One recipe
    for the evaluator and for ``dcgan train --class-guidance``'s guide."""
    import keras
    import numpy as np

    from dcgan_export.contract import to_images

    keras.utils.set_random_seed(seed)
    images = to_images(pixels)
    model = build_classifier(images.shape[1:], num_classes)
    logits_only = keras.Model(model.input, model.outputs[0])
    trainable = keras.Sequential([keras.Input(images.shape[1:]), build_augmenter(), logits_only])
    steps = epochs * int(np.ceil(len(pixels) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.01)
    trainable.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainable.fit(images, np.asarray(labels, np.int64), batch_size=batch_size, epochs=epochs,
                  shuffle=True, verbose=verbose)
    return model


def export_onnx(model):
    """Keras (logits, features) model -> onnx.ModelProto with input ``images`` [N, S, S, C]."""
    import tensorflow as tf

    from dcgan_export.onnx_convert import convert_function, name_batch_dimension

    def forward(images):
        logits, features = model(images, training=False)
        return {"logits": logits, "features": features}

    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=INPUT_NAME)]
    proto = convert_function(forward, signature, OUTPUT_NAMES)
    graph_input = proto.graph.input[0]
    if graph_input.name != INPUT_NAME:  # tf2onnx may append ":0"
        old = graph_input.name
        for node in proto.graph.node:
            node.input[:] = [INPUT_NAME if i == old else i for i in node.input]
        graph_input.name = INPUT_NAME
    return name_batch_dimension(proto)


def _run_onnx(model_bytes: bytes, images):
    from dcgan_export.runtime import open_session

    session = open_session(model_bytes, label="exported classifier")
    return session.run(OUTPUT_NAMES, {INPUT_NAME: images})

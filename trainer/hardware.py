"""Where a run trains: the Keras backend, its devices, and how they share each step.

The backend is chosen before Keras is first imported (Keras reads ``KERAS_BACKEND`` once, at
import): ``dcgan train --backend jax`` sets it for its process. Spreading a step over devices is
each backend's own way: TensorFlow's ``MirroredStrategy`` runs the step once per device and sums
their gradients; on JAX, Keras' ``DataParallel`` shards one program's global batch over every
device of every process (``keras.distribution.initialize`` joins the processes first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import sys

from dcgan_export.errors import DcganError

BACKENDS = ("tensorflow", "jax")
EXTRAS = {"tensorflow": "train", "jax": "jax"}  # the pyproject.toml extra that installs each


def resolve_backend(name: str | None) -> str:
    """``name``, else $KERAS_BACKEND, else tensorflow; a one-line DcganError if unknown or not installed."""
    chosen = name or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if chosen not in BACKENDS:
        where = "--backend" if name else "$KERAS_BACKEND"
        raise DcganError(f"{where} must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    missing = [m for m in (chosen, "keras") if importlib.util.find_spec(m) is None]
    if missing:
        extra = EXTRAS[chosen]
        raise DcganError(f"dcgan train --backend {chosen} needs the [{extra}] extra ({', '.join(missing)} not "
                         f"installed): pip install 'dcgan[{extra}]'")
    return chosen


def activate(backend: str) -> None:
    """Make Keras load ``backend``; a process that already loaded it with another cannot switch."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise DcganError(f"this process already runs Keras on {keras.backend.backend()}; "
                             f"train with --backend {backend} in a new process")
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    elif "tensorflow" not in sys.modules:
        # Keras imports TensorFlow wherever it is installed, whatever the backend (to seed it in
        # set_random_seed, to recognise its shapes when saving): seconds and a GB of memory for
        # nothing. A JAX run goes as it would on a machine without it.
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False


@dataclasses.dataclass
class Hardware:
    backend: str
    replicas: int  # devices a step's batch is spread over
    description: str
    strategy: object = None  # TensorFlow's distribution strategy

    def scope(self):
        """Where the networks and optimizers must be built."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def setup(distribute: bool, batch_size: int, mixed_precision: bool) -> Hardware:
    """The devices of this process's backend, and the distribution over them when ``distribute``."""
    import keras

    backend = keras.backend.backend()
    extra = ["mixed_float16"] if mixed_precision else []
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        where = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU (TensorFlow sees no GPU)"
        strategy = tf.distribute.get_strategy()
        if distribute:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                      [d.name for d in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
            extra.insert(0, f"MirroredStrategy over {strategy.num_replicas_in_sync} devices")
        hardware = Hardware(backend, strategy.num_replicas_in_sync, "", strategy)
    else:
        import jax

        devices = jax.devices()
        platform = devices[0].platform.upper()
        where = f"{platform} ({', '.join(str(d.device_kind) for d in devices[:1])}) with JAX"
        replicas = 1
        keras.distribution.set_distribution(None)
        if distribute:
            distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
            distribution.auto_shard_dataset = False  # the data is numpy, already this process's own
            keras.distribution.set_distribution(distribution)
            replicas = len(devices)
            extra.insert(0, f"DataParallel over {replicas} devices")
        hardware = Hardware(backend, replicas, "")
    if batch_size % hardware.replicas:
        raise DcganError(f"--batch-size {batch_size} must be divisible by the {hardware.replicas} devices "
                         "of --distribute")
    hardware.description = f"Training on {where}" + (f", {', '.join(extra)}" if extra else "")
    return hardware


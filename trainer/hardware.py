"""Where a run trains: the Keras backend, its devices, and how they share each step.

The backend is chosen before Keras is first imported (Keras reads ``KERAS_BACKEND`` once, at
import): ``dcgan train --backend jax`` sets it for its process. Spreading a step over devices is
each backend's own way: TensorFlow's ``MirroredStrategy`` runs the step once per device and sums
their gradients; on JAX, Keras' ``DataParallel`` shards one program's global batch over every
device of every process. Processes join (``join``) through ``jax.distributed.initialize``, what
``keras.distribution.initialize`` calls, called directly for its timeouts.
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
    """``name``, else $KERAS_BACKEND, else tensorflow (jax where only JAX is installed: the [jax]
    extra alone); a one-line DcganError if unknown or not installed."""
    only_jax = importlib.util.find_spec("tensorflow") is None and importlib.util.find_spec("jax") is not None
    default = "jax" if only_jax else "tensorflow"
    chosen = name or os.environ.get("KERAS_BACKEND") or default
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


JOIN_TIMEOUT_S = 120  # how long processes wait for each other (override: $DCGAN_JOIN_TIMEOUT)


def check_launch(config) -> None:
    """The multi-process options, checked with the rest before any work."""
    if config.num_processes == 1:
        if config.coordinator is not None or config.process_id != 0:
            raise DcganError("--coordinator and --process-id are for runs of --num-processes 2 or more")
        return
    if config.backend != "jax":
        raise DcganError("a multi-process run (--num-processes) trains on JAX: pass --backend jax")
    if config.out is None:
        raise DcganError("a multi-process run needs --out: every process names the same run directory")
    if config.process_id >= config.num_processes:
        raise DcganError(f"--process-id must be below --num-processes {config.num_processes}, got {config.process_id}")
    host, _, port = str(config.coordinator or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DcganError(f"--coordinator must be HOST:PORT of process 0, got {config.coordinator!r}")
    per_iteration = config.batch_size * config.d_steps
    if per_iteration % config.num_processes:
        raise DcganError(f"--batch-size {config.batch_size} x --d-steps {config.d_steps} must be divisible by "
                         f"--num-processes {config.num_processes} (each process feeds an equal share)")


def join_timeout() -> int:
    value = os.environ.get("DCGAN_JOIN_TIMEOUT", "")
    return int(value) if value.isdigit() and int(value) > 0 else JOIN_TIMEOUT_S


_joined: tuple | None = None


def join(config) -> None:
    """Connect this process to the others of a multi-process run (once per process). If one never
    joins, the others give up after the join timeout; one that dies later is noticed by the
    coordination service's heartbeats within the same time (or at once, by a failed cross-process
    sum). Either way each of the others stops with one line (``trainer/supervise.py``)."""
    global _joined
    launch = (config.coordinator, config.num_processes, config.process_id)
    if config.num_processes == 1 or _joined == launch:
        return
    if _joined is not None:
        raise DcganError("this process already joined another multi-process run")
    import jax

    timeout = join_timeout()
    # Cross-process sums between CPU devices (GPUs use NCCL whatever this says). Set, like the
    # join itself, before anything asks JAX for its devices.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=config.coordinator, num_processes=config.num_processes,
                                   process_id=config.process_id, initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=timeout)
    except Exception as exc:  # jaxlib raises its own XlaRuntimeError on a timeout
        raise DcganError(f"process {config.process_id} could not join the run at {config.coordinator} "
                         f"within {timeout} s ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
                         exit_code=1) from None
    _joined = launch


def host_value(value):
    """A variable's value as a numpy array on this host. In a multi-process run a replicated value
    spans every process's devices; this process reads its own copy, without talking to the others."""
    import numpy as np

    if getattr(value, "is_fully_addressable", True) is False:
        value = value.addressable_data(0)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


@dataclasses.dataclass
class Hardware:
    backend: str
    replicas: int  # devices a step's batch is spread over
    description: str
    strategy: object = None  # TensorFlow's distribution strategy

    def scope(self):
        """Where the networks and optimizers must be built."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def setup(config) -> Hardware:
    """The devices of this process's backend, and the distribution over them with ``--distribute``
    or several processes (which always spread each step over all their devices)."""
    distribute, batch_size, mixed_precision = config.distribute, config.batch_size, config.mixed_precision
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

        join(config)  # usually done already, before Keras first touched JAX
        devices = jax.devices()
        platform = devices[0].platform.upper()
        where = f"{platform} ({', '.join(str(d.device_kind) for d in devices[:1])}) with JAX"
        replicas = 1
        keras.distribution.set_distribution(None)
        if distribute or config.num_processes > 1:
            distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
            distribution.auto_shard_dataset = False  # the data is numpy, already this process's own
            keras.distribution.set_distribution(distribution)
            replicas = len(devices)
            processes = f" of {config.num_processes} processes" if config.num_processes > 1 else ""
            extra.insert(0, f"DataParallel over {replicas} devices{processes}")
        hardware = Hardware(backend, replicas, "")
    if batch_size % hardware.replicas:
        raise DcganError(f"--batch-size {batch_size} must be divisible by the {hardware.replicas} devices "
                         "of --distribute")
    hardware.description = f"Training on {where}" + (f", {', '.join(extra)}" if extra else "")
    return hardware


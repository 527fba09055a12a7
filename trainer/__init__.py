"""The DCGAN trainer (Keras 3, on TensorFlow or JAX): options and recipes (``config``), starting
and resuming runs (``train``, ``resume``), the GAN step in ``keras.ops`` (``gan``) with its
per-backend gradients (``gradients``, ``jax_step``), devices and processes (``hardware``,
``supervise``), the numpy input pipeline (``data``), callbacks, checkpoints, the digit
classifiers. It reads and writes runs through ``dcgan_export.run_dir`` and the model contract in
``dcgan_export.contract``; it never imports onnxruntime, except ``monitor`` for
``--eval-every``, which scores samples with the shipped ONNX classifier. On JAX it never imports
TensorFlow (``hardware.activate``).

TensorFlow is also used outside this package, by ``dcgan export`` (``dcgan_export/export.py``,
``parity.py``, ``onnx_convert.py``), which reads the Keras generator; the runtime, ``dcgan sample``,
``eval`` and ``serve`` never load it."""

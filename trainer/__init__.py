"""The DCGAN trainer (TensorFlow + Keras 3): options and recipes (``config``), starting and
resuming runs (``train``, ``resume``), the GAN step (``gan``), callbacks, checkpoints, the digit
classifiers. It reads and writes runs through ``dcgan_export.run_dir`` and the model contract in
``dcgan_export.contract``; it never imports onnxruntime, except ``monitor`` for
``--eval-every``, which scores samples with the shipped ONNX classifier.

TensorFlow is also used outside this package, by ``dcgan export`` (``dcgan_export/export.py``,
``parity.py``, ``onnx_convert.py``), which reads the Keras generator; the runtime, ``dcgan sample``,
``eval`` and ``serve`` never load it."""

"""tf.function -> ONNX through tf2onnx, the one way that works on Keras 3.

``tf2onnx.convert.from_keras`` fails on Keras 3 models (``KeyError: 'keras_tensor_N'``);
converting a ``tf.function`` with a fixed input signature that calls the model with
``training=False`` works and matches Keras to about 1e-6.
"""

from __future__ import annotations

import os
import sys

from .errors import DcganError

OPSET = 17


def use_tensorflow_backend() -> None:
    """Conversion runs the Keras model inside a ``tf.function``, so Keras must load on TensorFlow
    whatever $KERAS_BACKEND says (a .keras file trained on JAX loads on either). Call it before
    Keras is first imported."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise DcganError(f"this process runs Keras on {keras.backend.backend()}; exporting to ONNX needs "
                             "TensorFlow: run it in a new process")
    os.environ["KERAS_BACKEND"] = "tensorflow"


def convert_function(function, input_signature, output_names: list[str], opset: int = OPSET):
    """Convert a ``tf.function`` (or plain callable) to an ``onnx.ModelProto`` with named outputs.

    ``function`` returns a dict keyed by ``output_names`` or a tuple in that order.
    """
    import tensorflow as tf
    import tf2onnx

    @tf.function(input_signature=input_signature)
    def named(*args):
        result = function(*args)
        values = [result[name] for name in output_names] if isinstance(result, dict) else list(result)
        return [tf.identity(v, name=name) for v, name in zip(values, output_names)]

    model_proto, _ = tf2onnx.convert.from_function(named, input_signature=input_signature, opset=opset)
    graph_outputs = model_proto.graph.output
    renames = {out.name: name for out, name in zip(graph_outputs, output_names)}
    for node in model_proto.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for out in graph_outputs:
        out.name = renames[out.name]
    return model_proto


def name_batch_dimension(model_proto, name: str = "N"):
    """Give the dynamic first dimension of every graph input and output the name ``name``.

    tf2onnx names it ``unk__<n>``, differently per tensor, so a reader cannot tell that inputs and
    outputs share one batch size; one name says so. Returns ``model_proto`` (changed in place).
    """
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = name
    return model_proto

"""Blends of classes for a class-conditional ONNX generator: the optional ``class_offsets`` input.

The network reads its class as a one-hot vector (``trainer.models``), and its first layer is
linear in it, so a vector between two one-hots (a digit part 3, part 8) is a class the network
can be asked for: the walk of ``dcgan sample --interpolate --class 3,8`` morphs one into the
other. The contract's ``labels`` input is int64, so the exported graph reads the vector as
``one_hot(labels) + class_offsets``, where ``class_offsets`` float32 [N, K] is a graph input
with a zero default (an initializer of the same name, shape [1, K], broadcast): callers that feed only
``z`` and ``labels`` run the model exactly as before, bit for bit.

The export's graph takes each image's class as ``Gather(table, labels)``, a row of a [K, D]
table (the first layer's class rows; the one-hot itself where a layer needs it whole). This
pass turns that Gather into ``MatMul(Gather(I_K, labels) + class_offsets, table)``: the same
row for a one-hot, the blended row for a blend. onnx is imported only here, by export and
``scripts/add_class_offsets.py``; the runtime never needs it.
"""

from __future__ import annotations

import numpy as np

from .contract import CLASS_OFFSETS_INPUT, LABELS_INPUT
from .errors import DcganError


def add_class_offsets(model, num_classes: int):
    """``model`` (an onnx ModelProto with a ``labels`` input) with the optional ``class_offsets``
    input; changed in place and returned. A DcganError where the graph does not read its labels
    as one Gather from a [num_classes, D] float32 table, or already has the input."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if any(i.name == CLASS_OFFSETS_INPUT for i in graph.input):
        raise DcganError(f"the model already has a {CLASS_OFFSETS_INPUT!r} input")
    tables = {t.name: t for t in graph.initializer}
    gathers = [(i, node) for i, node in enumerate(graph.node)
               if node.op_type == "Gather" and list(node.input[1:]) == [LABELS_INPUT]]
    readers = [node for node in graph.node if LABELS_INPUT in node.input]
    if len(gathers) != 1 or len(readers) != 1 or gathers[0][1].input[0] not in tables:
        raise DcganError(f"cannot add {CLASS_OFFSETS_INPUT!r}: the graph does not read {LABELS_INPUT!r} "
                         "as one Gather from a table of class rows")
    position, gather = gathers[0]
    table = tables[gather.input[0]]
    axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
    if (axis != 0 or len(table.dims) != 2 or table.dims[0] != num_classes
            or table.data_type != TensorProto.FLOAT):
        raise DcganError(f"cannot add {CLASS_OFFSETS_INPUT!r}: the class table is "
                         f"{list(table.dims)} (type {table.data_type}), expected float32 [{num_classes}, D]")

    prefix = "class_blend/"
    one_hot, vector = prefix + "one_hot", prefix + "vector"
    batch = next((i.type.tensor_type.shape.dim[0] for i in graph.input if i.name == LABELS_INPUT), None)
    fixed = batch.dim_value if batch is not None and batch.HasField("dim_value") else 1
    eye = numpy_helper.from_array(np.eye(num_classes, dtype=np.float32), prefix + "identity")
    default = numpy_helper.from_array(np.zeros((fixed, num_classes), np.float32), CLASS_OFFSETS_INPUT)
    nodes = [
        helper.make_node("Gather", [eye.name, LABELS_INPUT], [one_hot], axis=0, name=prefix + "Gather"),
        helper.make_node("Add", [one_hot, CLASS_OFFSETS_INPUT], [vector], name=prefix + "Add"),
        helper.make_node("MatMul", [vector, table.name], list(gather.output), name=prefix + "MatMul"),
    ]
    del graph.node[position]
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    graph.initializer.extend([eye, default])
    offsets = helper.make_tensor_value_info(CLASS_OFFSETS_INPUT, TensorProto.FLOAT, [None, num_classes])
    if batch is not None:
        offsets.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.input.append(offsets)
    return model

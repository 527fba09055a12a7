"""Blends of classes for a class-conditional ONNX generator, by an exact rewrite of its graph.

The network reads its class as a one-hot vector (``trainer.models``), and its first layer is
linear in it, so a vector between two one-hots (a digit part 3, part 8) is a class the network
can be asked for: the walk of ``dcgan sample --interpolate 1,2 --class 3,8`` morphs one into the
other. The contract's ``labels`` input is int64, one class per image, and stays the file's only
class input. For blends the Sampler (and the parity gate) rewrite the graph in memory so that it
reads ``one_hot(labels) + class_offsets``, ``class_offsets`` float32 [N, K] a second input:

    Gather(table, labels)  ->  MatMul(Gather(I_K, labels) + class_offsets, table)

The export's graph takes each image's class as a row of a [K, D] table (the first layer's class
rows; the one-hot itself where the whole vector is needed, ``--no-optimize``), so the rewrite is
the same row for a one-hot and the blended row for a blend. onnx is imported only here, when a
blend is first asked for.
"""

from __future__ import annotations

import numpy as np

from .contract import CLASS_OFFSETS_INPUT, LABELS_INPUT
from .errors import DcganError


def add_class_offsets(model, num_classes: int):
    """``model`` (an onnx ModelProto with a ``labels`` input) with the ``class_offsets`` input;
    changed in place and returned. A DcganError where the graph does not read its labels as one
    Gather from a [num_classes, D] float32 table."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if any(i.name == CLASS_OFFSETS_INPUT for i in graph.input):
        raise DcganError(f"the model already has a {CLASS_OFFSETS_INPUT!r} input")
    tables = {t.name: t for t in graph.initializer}
    gathers = [(i, node) for i, node in enumerate(graph.node)
               if node.op_type == "Gather" and list(node.input[1:]) == [LABELS_INPUT]]
    readers = [node for node in graph.node if LABELS_INPUT in node.input]
    if len(gathers) != 1 or len(readers) != 1 or gathers[0][1].input[0] not in tables:
        raise DcganError(f"its graph does not read {LABELS_INPUT!r} as one Gather from a table of class rows, "
                         "so it cannot blend classes")
    position, gather = gathers[0]
    table = tables[gather.input[0]]
    axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
    if (axis != 0 or len(table.dims) != 2 or table.dims[0] != num_classes
            or table.data_type != TensorProto.FLOAT):
        raise DcganError(f"its class table is {list(table.dims)} (type {table.data_type}), expected float32 "
                         f"[{num_classes}, D], so it cannot blend classes")

    prefix = "class_blend/"
    one_hot, vector = prefix + "one_hot", prefix + "vector"
    eye = numpy_helper.from_array(np.eye(num_classes, dtype=np.float32), prefix + "identity")
    nodes = [
        helper.make_node("Gather", [eye.name, LABELS_INPUT], [one_hot], axis=0, name=prefix + "Gather"),
        helper.make_node("Add", [one_hot, CLASS_OFFSETS_INPUT], [vector], name=prefix + "Add"),
        helper.make_node("MatMul", [vector, table.name], list(gather.output), name=prefix + "MatMul"),
    ]
    del graph.node[position]
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    graph.initializer.append(eye)
    offsets = helper.make_tensor_value_info(CLASS_OFFSETS_INPUT, TensorProto.FLOAT, [None, num_classes])
    batch = next((i.type.tensor_type.shape.dim[0] for i in graph.input if i.name == LABELS_INPUT), None)
    if batch is not None:
        offsets.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.input.append(offsets)
    return model


def blend_model_bytes(model: bytes | str, num_classes: int) -> bytes:
    """A conditional generator (file path or serialized bytes) rewritten to take ``class_offsets``,
    serialized; a one-line DcganError where it cannot be."""
    try:
        import onnx
    except ImportError:
        raise DcganError("blending classes needs the onnx package: pip install onnx") from None
    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
    except Exception as exc:  # onnx raises protobuf's DecodeError and others for damaged files
        raise DcganError(f"cannot read the model's graph to blend classes ({str(exc).splitlines()[0][:120]})") from None
    return add_class_offsets(proto, num_classes).SerializeToString()

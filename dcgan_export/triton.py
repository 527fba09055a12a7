"""A Triton model repository from an exported generator, for NVIDIA Triton and KServe::

    DIR/NAME/config.pbtxt        onnxruntime backend, dynamic batching, CPU instances
    DIR/NAME/1/model.onnx        the ONNX file, byte for byte

Why a module of its own: Triton reads its model config as protobuf text, and writing that text
needs neither protobuf nor onnx (the light install has neither): the tensors come from the graph
as onnxruntime reads it, so a model with a ``labels`` input declares one and no other gets one.

The model folder appears whole or not at all: it is built in a temporary folder beside it and
renamed into place, and an existing, non-empty one is never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from .errors import DcganError

MODEL_NAME = "dcgan"  # the model's name in a repository and in dcgan serve's v2 API
VERSION = "1"
# Triton names a model by its folder: letters, digits, '_', '-' and '.', never '.' or '..' alone.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# Rows one request (and one batch Triton's dynamic batcher forms) may hold: dcgan serve's MAX_N, so
# every request it takes, Triton takes too; ~0.1 MB of activations an image, 100 MB at most.
MAX_BATCH_SIZE = 1024
# How long a request waits for others to join its batch: half of what one image costs on a CPU
# core (~1 ms, the shipped model), so a lone request is barely slowed while a burst runs as one.
MAX_QUEUE_DELAY_US = 500
# One instance: onnxruntime already spreads one batch over every core (intra-op threads), and a
# second instance would make them contend; dynamic batching is what absorbs concurrent requests.
CPU_INSTANCES = 1
# onnxruntime's type names -> Triton's
DATA_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(double)": "TYPE_FP64", "tensor(float16)": "TYPE_FP16",
              "tensor(bfloat16)": "TYPE_BF16", "tensor(uint8)": "TYPE_UINT8", "tensor(uint16)": "TYPE_UINT16",
              "tensor(uint32)": "TYPE_UINT32", "tensor(uint64)": "TYPE_UINT64", "tensor(int8)": "TYPE_INT8",
              "tensor(int16)": "TYPE_INT16", "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64",
              "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING"}


def check_model_name(name: str, option: str = "--name") -> str:
    """``name`` if Triton takes it as a model name (it is also a folder and a URL segment), else a
    one-line DcganError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise DcganError(f"{option} must be 1 to 128 letters, digits, '_', '-' or '.' (a Triton model name), "
                         f"got {str(name)[:60]!r}")
    return name


def check_repository(repo: str | os.PathLike, name: str = MODEL_NAME, option: str = "--triton-repo") -> Path:
    """The model folder ``repo/name`` if it can be written, else a one-line DcganError: checked
    before any slow work. ``repo`` may not exist yet (its parent must); ``repo/name`` must not
    exist, or be an empty folder."""
    check_model_name(name)
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise DcganError(f"{option} {repo}: not a directory")
    parent = repo if repo.is_dir() else repo.parent
    if not parent.is_dir():
        raise DcganError(f"{option} {repo}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DcganError(f"{option} {repo}: directory {parent} is not writable")
    target = repo / name
    if target.is_symlink() or (target.exists() and not (target.is_dir() and not any(target.iterdir()))):
        raise DcganError(f"{option} {repo}: {target} exists; remove it or choose another --name")
    return target


def model_config(sampler, name: str = MODEL_NAME, source: str = "") -> str:
    """config.pbtxt for ``sampler``'s model (a ``runtime.Sampler``: a checked generator), its
    tensors as the graph has them, less the batch dimension Triton adds."""
    check_model_name(name)
    inputs, outputs = sampler.graph_io()
    lines = [f"# Written by dcgan export --triton-repo{f' from {_one_line(source)}' if source else ''}.",
             "# Tensors as the ONNX graph has them; Triton adds the batch dimension (max_batch_size).",
             f"name: {_quote(name)}", 'backend: "onnxruntime"', f"max_batch_size: {MAX_BATCH_SIZE}"]
    for field, tensors in (("input", inputs), ("output", outputs)):
        lines.append(f"{field} [")
        lines.append(",\n".join(_tensor(t) for t in tensors))
        lines.append("]")
    lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}", "}",
              "instance_group [", "  {", f"    count: {CPU_INSTANCES}", "    kind: KIND_CPU", "  }", "]"]
    return "\n".join(lines) + "\n"


def _tensor(meta) -> str:
    """One input or output entry. A tensor that is only a batch ([N], a class per image) is one
    value per item to Triton: dims [1], reshaped to [] for the model, as Triton's batching wants."""
    if meta.type not in DATA_TYPES:
        raise DcganError(f"tensor {meta.name!r}: Triton has no type for {meta.type}")
    shape = list(meta.shape)
    if not shape or (isinstance(shape[0], int) and shape[0] > 0):
        raise DcganError(f"tensor {meta.name!r} has shape {shape}: Triton's batching needs a first dimension "
                         "of any size (the batch); this model fixes it")
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape[1:]]
    reshape = "" if dims else "\n    reshape: { shape: [ ] }"
    return (f"  {{\n    name: {_quote(meta.name)}\n    data_type: {DATA_TYPES[meta.type]}\n"
            f"    dims: [ {', '.join(map(str, dims or [1]))} ]{reshape}\n  }}")


def _quote(text: str) -> str:
    """A protobuf text-format string: quotes, backslashes and bytes outside printable ASCII escaped."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        out.append("\\" + char if char in '"\\' else char if 32 <= byte < 127 else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _one_line(text: str) -> str:
    """``text`` fit for a comment line: ASCII, no line breaks."""
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:200]


def write_repository(model: str | os.PathLike, repo: str | os.PathLike, name: str = MODEL_NAME) -> Path:
    """Write ``repo/name/config.pbtxt`` and ``repo/name/1/model.onnx`` from the ONNX generator
    ``model``; returns the model folder. One-line DcganErrors for a bad name, a model that is not
    a generator or cannot be batched, or a folder in the way; on any error nothing is left behind
    (a ``repo`` made for it is removed again)."""
    from .runtime import Sampler

    target = check_repository(repo, name)
    model = Path(model)
    sampler = Sampler(model, threads=1)  # the contract's checks; its graph gives the config
    config = model_config(sampler, name, source=model.name)
    repo = Path(repo)
    made_repo = not repo.exists()
    try:
        repo.mkdir(exist_ok=True)
        tmp = repo / f".{name}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()  # beside the target, so the rename is atomic
        try:
            (tmp / VERSION).mkdir()
            shutil.copyfile(model, tmp / VERSION / "model.onnx")
            (tmp / "config.pbtxt").write_text(config, encoding="utf-8")
            for path in (tmp / VERSION / "model.onnx", tmp / "config.pbtxt"):
                _fsync(path)
            os.rename(tmp, target)  # atomic; replaces an empty folder, fails on a non-empty one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except BaseException as exc:
        if made_repo:
            with contextlib.suppress(OSError):
                repo.rmdir()
        if not isinstance(exc, OSError):
            raise
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # it appeared since the check
            raise DcganError(f"--triton-repo {repo}: {target} exists; remove it or choose another --name") from None
        raise DcganError(f"--triton-repo {repo}: cannot write ({exc.strerror or exc})") from None
    return target


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())

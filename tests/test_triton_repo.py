"""The Triton model repository (``dcgan export --triton-repo``): its config.pbtxt parsed by
Triton's own ``model_config.proto`` (the generated module ``tritonclient`` ships), the model
copied byte for byte, one-line errors, and nothing left behind by a failure."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import ROOT, dcgan_in_process, make_tiny_generator, run_dcgan
from dcgan_export import triton
from dcgan_export.errors import DcganError
from dcgan_export.runtime import Sampler

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
Config = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
SHIPPED = ROOT / "models" / "generator.onnx"


def parse(folder: Path):
    """config.pbtxt as Triton reads it: an unknown field or a malformed value raises here."""
    return text_format.Parse((folder / "config.pbtxt").read_text(), Config())


def tensors(entries) -> list[tuple]:
    return [(t.name, DataType.Name(t.data_type), list(t.dims)) for t in entries]


def test_the_shipped_model_becomes_a_triton_model(tmp_path):
    folder = triton.write_repository(SHIPPED, tmp_path / "repo")
    assert folder == tmp_path / "repo" / "dcgan"
    assert sorted(p.relative_to(tmp_path / "repo").as_posix() for p in (tmp_path / "repo").rglob("*")) == \
        ["dcgan", "dcgan/1", "dcgan/1/model.onnx", "dcgan/config.pbtxt"]  # no temporary folder left
    assert (folder / "1" / "model.onnx").read_bytes() == SHIPPED.read_bytes()
    config = parse(folder)
    assert config.name == "dcgan" and config.backend == "onnxruntime" and not config.platform
    assert config.max_batch_size == 1024
    assert tensors(config.input) == [("z", "TYPE_FP32", [100])]
    assert tensors(config.output) == [("images", "TYPE_FP32", [28, 28, 1]), ("pixels", "TYPE_UINT8", [28, 28])]
    assert not any(t.HasField("reshape") for t in [*config.input, *config.output])
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == triton.MAX_QUEUE_DELAY_US > 0
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]


def test_the_batch_limit_is_dcgan_serves(tmp_path):
    serve = pytest.importorskip("dcgan_export.serve")
    assert triton.MAX_BATCH_SIZE == serve.MAX_N  # a request one takes, the other takes


def test_a_conditional_rgb_model_declares_its_labels_as_triton_batches_them(tmp_path):
    model = make_tiny_generator(tmp_path / "cond.onnx", shape=(32, 32, 3), class_names=["cat", "dog"])
    config = parse(triton.write_repository(model, tmp_path / "repo", name="pets-v1.0"))
    assert config.name == "pets-v1.0"
    assert tensors(config.input) == [("z", "TYPE_FP32", [100]), ("labels", "TYPE_INT64", [1])]
    labels = config.input[1]
    assert labels.HasField("reshape") and list(labels.reshape.shape) == []  # [N, 1] to Triton, [N] to the model
    assert tensors(config.output) == [("images", "TYPE_FP32", [32, 32, 3]), ("pixels", "TYPE_UINT8", [32, 32, 3])]


def test_tensor_names_are_quoted_for_protobuf_text(tmp_path):
    weird = 'z "odd" \\ n\u00e4me\n'
    fake = SimpleNamespace(graph_io=lambda: ([SimpleNamespace(name=weird, type="tensor(double)", shape=["N", 8])],
                                             [SimpleNamespace(name="out", type="tensor(float16)", shape=[None, 4, "W"])]))
    text = triton.model_config(fake, "m", source='a\nb "c".onnx')
    config = text_format.Parse(text, Config())
    assert tensors(config.input) == [(weird, "TYPE_FP64", [8])]
    assert tensors(config.output) == [("out", "TYPE_FP16", [4, -1])]


def test_a_model_without_pixels_declares_images_only(tmp_path):
    model = make_tiny_generator(tmp_path / "nopix.onnx", with_pixels=False)
    config = parse(triton.write_repository(model, tmp_path / "repo"))
    assert [t.name for t in config.output] == ["images"]


def test_an_empty_model_folder_is_filled(tmp_path):
    (tmp_path / "repo" / "dcgan").mkdir(parents=True)
    parse(triton.write_repository(SHIPPED, tmp_path / "repo"))


def test_other_models_in_the_repository_are_left_alone(tmp_path):
    other = tmp_path / "repo" / "other" / "1"
    other.mkdir(parents=True)
    (other / "model.onnx").write_bytes(b"theirs")
    triton.write_repository(SHIPPED, tmp_path / "repo", name="dcgan")
    assert (other / "model.onnx").read_bytes() == b"theirs"


# --- refusals: one line, nothing written ---------------------------------------------------------------


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "caf\u00e9", "x" * 129, "-\n-"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(DcganError, match="--name must be") as caught:
        triton.write_repository(SHIPPED, tmp_path / "repo", name=name)
    assert "\n" not in str(caught.value) and not (tmp_path / "repo").exists()


def test_an_existing_model_is_never_overwritten(tmp_path):
    existing = tmp_path / "repo" / "dcgan"
    (existing / "1").mkdir(parents=True)
    (existing / "config.pbtxt").write_text("name: 'mine'")
    with pytest.raises(DcganError, match="exists; remove it or choose another --name"):
        triton.write_repository(SHIPPED, tmp_path / "repo")
    assert listing(tmp_path / "repo") == ["dcgan", "dcgan/1", "dcgan/config.pbtxt"]
    assert (existing / "config.pbtxt").read_text() == "name: 'mine'"


def a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file"


def a_file_named_like_the_model(tmp: Path) -> Path:
    (tmp / "repo").mkdir()
    (tmp / "repo" / "dcgan").write_text("x")
    return tmp / "repo"


@pytest.mark.parametrize("setup, phrase", [(a_file, "not a directory"),
                                           (lambda tmp: tmp / "no" / "such" / "repo", "does not exist"),
                                           (a_file_named_like_the_model, "exists")])
def test_unusable_repository_paths(tmp_path, setup, phrase):
    repo = setup(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(DcganError, match=phrase):
        triton.write_repository(SHIPPED, repo)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("model, phrase", [
    (lambda tmp: make_tiny_generator(tmp / "fixed.onnx", batch=4), "fixes it"),
    (lambda tmp: ROOT / "models" / "mnist_classifier.onnx", "not a generator"),
    (lambda tmp: tmp / "junk.onnx" if (tmp / "junk.onnx").write_bytes(b"\0junk") else None, "not a loadable"),
    (lambda tmp: tmp / "missing.onnx", "model not found"),
])
def test_models_triton_cannot_batch_or_that_are_no_generators(tmp_path, model, phrase):
    path = model(tmp_path)
    with pytest.raises(DcganError, match=phrase) as caught:
        triton.write_repository(path, tmp_path / "repo")
    assert "\n" not in str(caught.value) and not (tmp_path / "repo").exists()


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(src, dst, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(DcganError, match="cannot write .No space left on device"):
        triton.write_repository(SHIPPED, tmp_path / "new-repo")
    assert not (tmp_path / "new-repo").exists()
    (tmp_path / "repo").mkdir()
    with pytest.raises(DcganError, match="cannot write"):
        triton.write_repository(SHIPPED, tmp_path / "repo")
    assert listing(tmp_path / "repo") == []


def test_a_sampler_still_loads_the_copied_model(tmp_path):
    folder = triton.write_repository(SHIPPED, tmp_path / "repo")
    copied = Sampler(folder / "1" / "model.onnx", threads=1)
    assert (copied.sample_pixels(3, seed=1) == Sampler(SHIPPED, threads=1).sample_pixels(3, seed=1)).all()


# --- the command ---------------------------------------------------------------------------------------------


def test_export_checks_triton_options_before_any_work(tmp_path, capsys, monkeypatch):
    pytest.importorskip("dcgan_export.export")
    from dcgan_export import export

    def never(*_args, **_kwargs):
        raise AssertionError("the export started")

    monkeypatch.setattr(export, "export_generator", never)
    keras_file, out = str(ROOT / "models" / "generator.keras"), str(tmp_path / "g.onnx")
    (tmp_path / "taken" / "dcgan").mkdir(parents=True)
    (tmp_path / "taken" / "dcgan" / "config.pbtxt").write_text("")
    for args, phrase in ((["--name", "x"], "--name names the model in --triton-repo"),
                         (["--triton-repo", str(tmp_path / "r"), "--name", "a/b"], "--name must be"),
                         (["--triton-repo", str(tmp_path / "no" / "r")], "does not exist"),
                         (["--triton-repo", str(tmp_path / "taken")], "exists; remove it")):
        code, _, err = dcgan_in_process("export", keras_file, "--out", out, *args, capsys=capsys)
        assert code == 2 and err.startswith("Error: ") and phrase in err and err.count("\n") == 1, err
    assert listing(tmp_path) == ["taken", "taken/dcgan", "taken/dcgan/config.pbtxt"]


@pytest.mark.slow
def test_export_writes_the_repository_with_the_exported_bytes(tmp_path):
    pytest.importorskip("tf2onnx")
    out = tmp_path / "generator.onnx"
    result = run_dcgan("export", str(ROOT / "models" / "generator.keras"), "--out", str(out),
                       "--triton-repo", str(tmp_path / "triton"), "--name", "digits")
    assert result.returncode == 0, result.stderr
    assert f"triton model repository: {tmp_path / 'triton' / 'digits'}" in result.stdout
    assert (tmp_path / "triton" / "digits" / "1" / "model.onnx").read_bytes() == out.read_bytes()
    config = parse(tmp_path / "triton" / "digits")
    assert config.name == "digits" and tensors(config.input) == [("z", "TYPE_FP32", [100])]

"""Class-conditional sampling: the Sampler's labels, ``dcgan sample --class``, ``dcgan serve``'s
``class=`` and ``"labels"``, and ``dcgan eval``'s per-class accuracy, on hand-built conditional
models (no TensorFlow)."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from helpers import dcgan_in_process, make_tiny_generator
from dcgan_export import DcganError, Sampler
from dcgan_export.images import make_grid

NAMES = ["cat", "dog", "bird"]
LATENT = 20
SHAPE = (16, 16, 1)
dcgan = dcgan_in_process


def with_metadata(path, **props):
    """Rewrite ``path``'s metadata: each key set to its value, or dropped where the value is None."""
    model = onnx.load(path)
    current = {p.key: p.value for p in model.metadata_props}
    current.update(props)
    onnx.helper.set_model_props(model, {k: v for k, v in current.items() if v is not None})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def cond_path(tmp_path_factory):
    return make_tiny_generator(tmp_path_factory.mktemp("cond") / "cond.onnx", latent_dim=LATENT, shape=SHAPE,
                               class_names=NAMES)


@pytest.fixture(scope="module")
def cond(cond_path):
    return Sampler(cond_path, threads=1)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return Sampler(make_tiny_generator(tmp_path_factory.mktemp("plain") / "plain.onnx", latent_dim=LATENT,
                                       shape=SHAPE), threads=1)


def direct_pixels(path, z, labels) -> np.ndarray:
    """What onnxruntime makes of the model, fed by hand: the Sampler must pass labels through as they are."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["pixels"], {"z": np.asarray(z, np.float32), "labels": np.asarray(labels, np.int64)})[0]


# --- the Sampler ---------------------------------------------------------------------------------


def test_a_conditional_model_names_its_classes_and_an_unconditional_one_none(cond, plain):
    assert cond.num_classes == 3 and cond.class_names == ("cat", "dog", "bird")
    assert plain.num_classes is None and plain.class_names is None
    assert plain.cycle_labels(4) is None and plain.resolve_labels(None, 4) is None


def test_labels_reach_the_model_as_given(cond, cond_path):
    z = cond.noise(5, seed=2)
    labels = [2, 0, 1, 1, 2]
    np.testing.assert_array_equal(cond.generate_pixels(z, labels), direct_pixels(cond_path, z, labels))
    images = cond.generate(z, labels)
    assert images.shape == (5, *SHAPE) and images.dtype == np.float32
    assert not np.array_equal(cond.generate_pixels(z, 0), cond.generate_pixels(z, 1))  # the class matters


@pytest.mark.parametrize("labels", [1, "dog", "1", np.int32(1), np.uint8(1), np.array(1), [1, 1, 1],
                                    ["dog", 1, "1"], np.array([1, 1, 1], np.int16), (1, 1, 1), range(1, 2)],
                         ids=repr)
def test_every_spelling_of_one_class_is_the_same_labels(cond, labels):
    if isinstance(labels, range):
        labels = list(labels) * 3
    np.testing.assert_array_equal(cond.resolve_labels(labels, 3), [1, 1, 1])
    assert cond.resolve_labels(labels, 3).dtype == np.int64


def test_a_name_wins_over_an_index_and_decimal_text_is_an_index(tmp_path):
    sampler = Sampler(make_tiny_generator(tmp_path / "m.onnx", latent_dim=4, shape=SHAPE, class_names=["1", "0", "x"]))
    assert list(sampler.resolve_labels(["0", "1", "2", 0], 4)) == [1, 0, 2, 0]


@pytest.mark.parametrize("labels, message", [
    (-1, "class -1 is out of range: this model's classes are 0-2: 'cat', 'dog', 'bird'"),
    (3, "class 3 is out of range"),
    (2**70, "out of range"),
    (np.int64(-5), "class -5 is out of range"),
    ([0, 1, 3], "class 3 is out of range"),
    (np.array([0, 7, 1]), "class 7 is out of range"),
    (True, "a class is an index or a class name, got True (bool)"),
    (np.bool_(False), "(bool)"),
    ([0, True, 1], "got True (bool)"),
    (np.array([True, False, True]), "(bool)"),
    (2.0, "got 2.0 (float)"),
    (np.float32(1), "float32"),
    ([0.0, 1.0, 2.0], "got 0.0 (float)"),
    ("cow", "unknown class 'cow': this model's classes are 0-2: 'cat', 'dog', 'bird'"),
    ("-1", "unknown class '-1'"),
    ("", "unknown class ''"),
    (["cat", "cow", "dog"], "unknown class 'cow'"),
    (None, "this model is class-conditional: pass labels (classes 0-2: 'cat', 'dog', 'bird')"),
    ([None, 1, 2], "got None (NoneType)"),
    (b"dog", "(bytes)"),
    ({"a": 1}, "(dict)"),
    ([], "labels must give one class per image: got 0 for 3 images"),
    ([0, 1], "got 2 for 3 images"),
    ([0] * 4, "got 4 for 3 images"),
    (np.zeros((3, 1), np.int64), r"an array of shape (3, 1)"),
])
def test_bad_labels_are_one_line_errors(cond, labels, message):
    with pytest.raises(DcganError) as info:
        cond.resolve_labels(labels, 3)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DcganError):  # and every method that makes images says the same
        cond.generate_pixels(cond.noise(3, seed=0), labels)


def test_a_long_list_of_names_is_cut_short_in_errors(tmp_path):
    names = [f"class-{i}-" + "x" * 50 for i in range(40)]
    sampler = Sampler(make_tiny_generator(tmp_path / "many.onnx", latent_dim=4, shape=SHAPE, class_names=names))
    with pytest.raises(DcganError) as info:
        sampler.resolve_labels("nope", 1)
    message = str(info.value)
    assert "(40 in all)" in message and "class-7-" in message and "class-8-" not in message and len(message) < 600


def test_an_unconditional_model_takes_no_labels_and_behaves_as_before(plain):
    z = plain.noise(3, seed=1)
    for call in (lambda: plain.generate(z, 0), lambda: plain.generate_pixels(z, [0, 1, 2]),
                 lambda: plain.sample(3, seed=1, labels="dog"), lambda: plain.resolve_labels(0, 3)):
        with pytest.raises(DcganError, match="this model is not class-conditional: it takes no class"):
            call()
    np.testing.assert_array_equal(plain.sample_pixels(3, seed=1), plain.generate_pixels(z))


def test_generate_needs_labels_but_sample_cycles_through_the_classes(cond):
    z = cond.noise(7, seed=4)
    with pytest.raises(DcganError, match="class-conditional: pass labels"):
        cond.generate(z)
    cycled = [0, 1, 2, 0, 1, 2, 0]
    np.testing.assert_array_equal(cond.cycle_labels(7), cycled)
    np.testing.assert_array_equal(cond.cycle_labels(3, start=5), [2, 0, 1])
    np.testing.assert_array_equal(cond.sample_pixels(7, seed=4), cond.generate_pixels(z, cycled))
    np.testing.assert_array_equal(cond.sample_pixels(7, seed=4, batch_size=2), cond.generate_pixels(z, cycled))


@pytest.mark.parametrize("truncation", [None, 0.6])
def test_the_noise_of_an_image_does_not_depend_on_its_class(cond, truncation):
    n, seed = 9, 123
    z = cond.noise(n, seed, truncation=truncation)
    for label in (0, "dog", 2):
        full = cond.sample_pixels(n, seed, truncation=truncation, labels=label)
        np.testing.assert_array_equal(full, cond.generate_pixels(z, label))  # same noise, whatever the class
        np.testing.assert_array_equal(cond.sample_pixels(4, seed, truncation=truncation, labels=label), full[:4])
        np.testing.assert_array_equal(cond.sample_pixels(n, seed, batch_size=2, truncation=truncation, labels=label),
                                      full)
        chunks = list(cond.iter_batches(n, seed, batch_size=4, pixels=True, truncation=truncation, labels=label))
        assert [len(c) for c in chunks] == [4, 4, 1]
    per_image = [2, 1, 0, 0, 1, 2, 2, 1, 0]
    chunks = list(cond.iter_batches(n, seed, batch_size=4, pixels=True, truncation=truncation, labels=per_image))
    np.testing.assert_array_equal(np.concatenate(chunks), cond.generate_pixels(z, per_image))
    np.testing.assert_array_equal(cond.sample(n, seed, truncation=truncation, labels=per_image),
                                  cond.generate(z, per_image))


def test_a_fixed_batch_conditional_model_feeds_labels_in_its_chunks(tmp_path, cond):
    fixed = Sampler(make_tiny_generator(tmp_path / "fixed.onnx", latent_dim=LATENT, shape=SHAPE, class_names=NAMES,
                                        batch=4))
    labels = [0, 1, 2, 2, 1, 0, 1]
    np.testing.assert_array_equal(fixed.sample_pixels(7, seed=3, labels=labels), cond.sample_pixels(7, 3, labels=labels))
    np.testing.assert_array_equal(fixed.sample_pixels(7, seed=3), cond.sample_pixels(7, seed=3))


def test_a_conditional_model_without_class_names_is_refused_in_one_line(tmp_path):
    path = make_tiny_generator(tmp_path / "nameless.onnx", latent_dim=4, shape=SHAPE, class_names=NAMES)
    for value in (None, "not json", "[]", '["a", 2]', '{"a": 1}'):
        with_metadata(path, class_names=value)
        with pytest.raises(DcganError) as info:
            Sampler(path)
        message = str(info.value)
        assert "a class-conditional generator (input 'labels') needs class_names metadata" in message
        assert "dcgan export writes it" in message and "\n" not in message


def test_a_labels_input_that_is_not_int64_is_refused(tmp_path):
    path = make_tiny_generator(tmp_path / "int32.onnx", latent_dim=4, shape=SHAPE, class_names=NAMES)
    model = onnx.load(path)
    labels = next(i for i in model.graph.input if i.name == "labels")
    labels.type.tensor_type.elem_type = onnx.TensorProto.INT32
    path.write_bytes(model.SerializeToString())
    with pytest.raises(DcganError, match=r"input 'labels' must be int64 \[N\], found tensor\(int32\)"):
        Sampler(path)


# --- dcgan sample --class ------------------------------------------------------------------------


def test_sample_class_by_index_or_name(tmp_path, cond, cond_path, capsys):
    for label, index in (("dog", 1), ("2", 2)):
        out = tmp_path / f"{label}.npy"
        code, stdout, err = dcgan("sample", "--model", str(cond_path), "--n", "5", "--seed", "8", "--class", label,
                                  "--out", str(out), capsys=capsys)
        assert code == 0, err
        assert f"class {NAMES[index]!r}" in stdout
        np.testing.assert_array_equal(np.load(out), cond.sample_pixels(5, seed=8, labels=index))
    code, _, err = dcgan("sample", "--model", str(cond_path), "--n", "5", "--seed", "8", "--out", str(tmp_path / "c.npy"),
                         capsys=capsys)
    assert code == 0, err  # without --class: image i is class i % K
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), cond.generate_pixels(cond.noise(5, 8), [0, 1, 2, 0, 1]))
    code, _, err = dcgan("sample", "--model", str(cond_path), "--n", "3", "--seed", "8", "--class", "bird",
                         "--truncation", "0.5", "--out-dir", str(tmp_path / "each"), "--scale", "1", capsys=capsys)
    assert code == 0, err
    files = sorted((tmp_path / "each").iterdir())
    assert len(files) == 3
    np.testing.assert_array_equal(np.asarray(Image.open(files[2])),
                                  cond.sample_pixels(3, seed=8, truncation=0.5, labels=2)[2])


def test_sample_class_all_is_one_row_per_class(tmp_path, cond, cond_path, capsys):
    out = tmp_path / "all.png"
    code, stdout, err = dcgan("sample", "--model", str(cond_path), "--n", "4", "--seed", "5", "--class", "all",
                              "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "a grid of 12 images (seed 5, one row of 4 per class)" in stdout, err
    rows = [cond.sample_pixels(4, seed=5, labels=k) for k in range(3)]  # each row: images 0..3 of the seed
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * 18 + 2, 4 * 18 + 2)
    np.testing.assert_array_equal(grid, make_grid(np.concatenate(rows), nrow=4))
    code, _, err = dcgan("sample", "--model", str(cond_path), "--seed", "5", "--class", "all", "--out", str(out),
                         capsys=capsys)
    assert code == 0, err
    assert Image.open(out).size == (4 * (10 * 18 + 2), 4 * (3 * 18 + 2))  # 10 per row by default, scale 4
    code, _, err = dcgan("sample", "--model", str(cond_path), "--n", "4", "--seed", "5", "--class", "all",
                         "--batch-size", "3", "--out", str(tmp_path / "all.npy"), capsys=capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), np.concatenate(rows))
    z = np.random.default_rng(0).standard_normal((2, LATENT)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    code, _, err = dcgan("sample", "--model", str(cond_path), "--noise", str(tmp_path / "z.npy"), "--class", "all",
                         "--out", str(tmp_path / "zall.npy"), capsys=capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "zall.npy"),
                                  np.concatenate([cond.generate_pixels(z, k) for k in range(3)]))


@pytest.mark.parametrize("args, message", [
    (["--class", "cow"], "unknown class 'cow': this model's classes are 0-2"),
    (["--class", "3"], "class 3 is out of range"),
    (["--class", "-1"], "unknown class '-1'"),
    (["--class", "all", "--nrow", "2"], "--class all makes one row per class: not with --nrow"),
    (["--class", "all", "--n", "30000"], "--class all: 3 classes of 30000 images is 90,000 images, over 65,536"),
])
def test_bad_class_is_one_line_and_writes_nothing(tmp_path, cond_path, capsys, args, message):
    out = tmp_path / "g.png"
    code, _, err = dcgan("sample", "--model", str(cond_path), "--seed", "1", *args, "--out", str(out), capsys=capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_class_on_an_unconditional_model_is_one_line_and_writes_nothing(tmp_path, plain, capsys):
    for extra in ([], ["--interpolate", "1,2"]):
        out = tmp_path / ("w.gif" if extra else "g.png")
        code, stdout, err = dcgan("sample", "--model", str(plain.model_path), "--class", "1", *extra, "--out", str(out),
                                  capsys=capsys)
        assert code == 2 and stdout == "" and err.count("\n") == 1, err
        assert err.startswith("Error: --class: ") and "is not class-conditional" in err
        assert not out.exists()


def test_a_walk_holds_its_class(tmp_path, cond, cond_path, capsys):
    out = tmp_path / "walk.gif"
    code, stdout, err = dcgan("sample", "--model", str(cond_path), "--interpolate", "3,7", "--frames", "4", "--n", "2",
                              "--class", "dog", "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "5 frames, 2 walks through seeds 3, 7, class 'dog'" in stdout, err
    gif = Image.open(out)
    assert gif.n_frames == 5 and gif.size == (2 * 18 + 2, 18 + 2)
    gif.seek(4)  # the last frame: seed 7's images, of class dog
    frame = np.asarray(gif.convert("L")).astype(int)
    assert np.abs(frame - make_grid(cond.sample_pixels(2, seed=7, labels=1), nrow=2)).mean() < 3
    assert np.abs(frame - make_grid(cond.sample_pixels(2, seed=7, labels=0), nrow=2)).mean() > 10

    code, stdout, err = dcgan("sample", "--model", str(cond_path), "--interpolate", "3,7,9", "--frames", "4", "--n", "2",
                              "--class", "all", "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "9 frames, 2 walks through seeds 3, 7, 9, a row per class" in stdout, err
    gif = Image.open(out)
    assert gif.n_frames == 9 and gif.size == (2 * 18 + 2, 3 * 18 + 2)
    gif.seek(0)  # seed 3's images, a row per class
    rows = np.concatenate([cond.sample_pixels(2, seed=3, labels=k) for k in range(3)])
    assert np.abs(np.asarray(gif.convert("L")).astype(int) - make_grid(rows, nrow=2)).mean() < 3

    code, stdout, err = dcgan("sample", "--model", str(cond_path), "--interpolate", "3,7", "--frames", "2", "--n", "4",
                              "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0, err  # without --class, walk j is class j % K
    gif = Image.open(out)
    assert gif.n_frames == 3 and gif.size == (4 * 18 + 2, 18 + 2)


# --- dcgan serve ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients(cond, plain):
    from starlette.testclient import TestClient

    from dcgan_export.serve import create_app

    with TestClient(create_app(cond)) as c, TestClient(create_app(plain)) as p:
        yield c, p


def from_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def test_serve_describes_the_classes(clients):
    c, p = clients
    info = c.get("/v1/model").json()
    assert info["num_classes"] == 3 and info["class_names"] == NAMES
    info = p.get("/v1/model").json()
    assert info["num_classes"] is None and info["class_names"] is None


def test_serve_samples_a_class(clients, cond):
    c, _ = clients
    for label, index in (("dog", 1), ("2", 2)):
        resp = c.get("/v1/sample", params={"n": 5, "seed": 3, "format": "npy", "class": label})
        assert resp.status_code == 200, resp.text
        np.testing.assert_array_equal(from_npy(resp.content), cond.sample_pixels(5, seed=3, labels=index))
    resp = c.get("/v1/sample", params={"n": 4, "seed": 3, "class": "cat"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(resp.content))),
                                  make_grid(cond.sample_pixels(4, seed=3, labels=0)))
    resp = c.get("/v1/sample", params={"n": 5, "seed": 3, "format": "npy"})  # no class: image i is class i % K
    np.testing.assert_array_equal(from_npy(resp.content), cond.sample_pixels(5, seed=3))


@pytest.mark.parametrize("which, params, message", [
    ("cond", {"class": "cow"}, "unknown class 'cow'"),
    ("cond", {"class": "3"}, "class 3 is out of range"),
    ("cond", {"class": "-1"}, "unknown class '-1'"),
    ("cond", {"class": ""}, "unknown class ''"),
    ("cond", {"class": "1", "classes": "2"}, "unknown query parameter(s): classes"),
    ("plain", {"class": "1"}, "class: this model is not class-conditional"),
])
def test_serve_refuses_bad_classes_with_400(clients, which, params, message):
    client = clients[0] if which == "cond" else clients[1]
    resp = client.get("/v1/sample", params=params)
    assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    assert client.get("/healthz").status_code == 200


def test_generate_takes_labels_in_json_or_a_class_in_the_query(clients, cond):
    c, _ = clients
    z = cond.noise(4, seed=6)
    resp = c.post("/v1/generate", json={"z": z.tolist(), "labels": [2, "cat", 1, "2"]})
    assert resp.status_code == 200, resp.text
    np.testing.assert_array_equal(np.array(resp.json()["pixels"], np.uint8), cond.generate_pixels(z, [2, 0, 1, 2]))
    resp = c.post("/v1/generate?class=dog", json={"z": z.tolist()})
    np.testing.assert_array_equal(np.array(resp.json()["pixels"], np.uint8), cond.generate_pixels(z, 1))
    buf = io.BytesIO()
    np.save(buf, z)
    resp = c.post("/v1/generate?class=2", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert resp.status_code == 200, resp.text
    np.testing.assert_array_equal(from_npy(resp.content), cond.generate_pixels(z, 2))


@pytest.mark.parametrize("which, query, doc, message", [
    ("cond", "", {}, 'this model is class-conditional: give "labels"'),
    ("cond", "", {"labels": [0, 1]}, "got 2 for 3 images"),
    ("cond", "", {"labels": [0, 1, 3]}, "class 3 is out of range"),
    ("cond", "", {"labels": [0, 1, True]}, "(bool)"),
    ("cond", "", {"labels": [0, 1, 1.5]}, "(float)"),
    ("cond", "", {"labels": [0, 1, "cow"]}, "unknown class 'cow'"),
    ("cond", "?class=1", {"labels": [0, 1, 2]}, 'give class= in the query or "labels" in the body, not both'),
    ("cond", "?class=7", {}, "class 7 is out of range"),
    ("plain", "", {"labels": [0, 1, 2]}, "this model is not class-conditional"),
    ("plain", "?class=0", {}, "class: this model is not class-conditional"),
])
def test_generate_refuses_bad_labels_with_400(clients, cond, which, query, doc, message):
    client = clients[0] if which == "cond" else clients[1]
    resp = client.post("/v1/generate" + query, json={"z": cond.noise(3, seed=0).tolist(), **doc})
    assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    assert client.get("/healthz").status_code == 200


def test_generate_with_npy_noise_on_a_conditional_model_needs_a_class(clients, cond):
    buf = io.BytesIO()
    np.save(buf, cond.noise(2, seed=0))
    resp = clients[0].post("/v1/generate", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert resp.status_code == 400 and "class= in the query" in resp.json()["error"]


def test_the_largest_json_request_with_labels_is_served(clients, cond):
    from dcgan_export.serve import MAX_N

    z = np.zeros((MAX_N, LATENT), np.float32).tolist()
    resp = clients[0].post("/v1/generate", content=json.dumps({"z": z, "labels": [1] * MAX_N}),
                           headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["pixels"]) == MAX_N

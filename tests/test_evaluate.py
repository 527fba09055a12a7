"""dcgan eval and dcgan_export.evaluate: the Frechet distance against closed forms, the class
figures, the mode-collapse thresholds, the shipped classifier on real digits, and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, make_tiny_generator, run_dcgan
from dcgan_export import datasets, evaluate
from dcgan_export.errors import DcganError
from dcgan_export.evaluate import (
    Evaluator,
    classifier_score,
    frechet_distance,
    kl_from_uniform,
    mode_collapse_warnings,
)
from dcgan_export.errors import first_line
from dcgan_export.contract import to_images
from dcgan_export.paths import shipped_file
from dcgan_export.runtime import open_session

# -- Frechet distance against closed forms ----------------------------------------------------


def test_frechet_identical_distributions_is_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 16))
    cov = a.T @ a / 200
    mu = rng.standard_normal(16)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_means_is_squared_distance():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 8))
    cov = a.T @ a / 300
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    assert frechet_distance(mu1, cov, mu2, cov) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-9, abs=1e-9)


def test_frechet_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    v1, v2 = rng.uniform(0.1, 3, 12), rng.uniform(0.1, 3, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_is_symmetric_and_rotation_invariant_for_full_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((50, 6)), rng.standard_normal((6, 6))
    cov1, cov2 = a.T @ a / 50, b @ b.T
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    d = frechet_distance(mu1, cov1, mu2, cov2)
    assert d > 0
    assert frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(d, rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert frechet_distance(q @ mu1, q @ cov1 @ q.T, q @ mu2, q @ cov2 @ q.T) == pytest.approx(d, rel=1e-8)


def test_frechet_survives_singular_covariances():
    # Dead ReLU features give all-zero rows and columns; fewer samples than dimensions give rank
    # deficiency. Neither may produce NaN or a negative distance.
    rng = np.random.default_rng(4)
    feats = np.maximum(rng.standard_normal((5, 20)), 0)
    feats[:, :7] = 0
    mu, cov = evaluate.feature_statistics(feats)
    d = frechet_distance(mu, cov, mu, cov)
    assert math.isfinite(d) and 0 <= d < 1e-6
    assert frechet_distance(np.zeros(3), np.zeros((3, 3)), np.ones(3), np.eye(3)) == pytest.approx(3 + 3)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# -- class figures -----------------------------------------------------------------------------


def test_classifier_score_bounds():
    confident_balanced = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(confident_balanced) == pytest.approx(10.0, rel=1e-6)
    assert classifier_score(np.eye(10)[np.zeros(100, int)]) == pytest.approx(1.0)
    assert classifier_score(np.full((100, 10), 0.1)) == pytest.approx(1.0)


def test_kl_from_uniform():
    assert kl_from_uniform(np.full(10, 0.1)) == pytest.approx(0.0, abs=1e-12)
    assert kl_from_uniform(np.eye(10)[3]) == pytest.approx(math.log(10))


def test_mode_collapse_warning_thresholds():
    assert mode_collapse_warnings(np.full(10, 0.1)) == []
    at_edges = np.array([0.02, 0.30] + [0.68 / 8] * 8)
    assert mode_collapse_warnings(at_edges) == []  # exactly 2% and 30% are still fine
    low = np.array([0.0199] + [(1 - 0.0199) / 9] * 9)
    (warning,) = mode_collapse_warnings(low)
    assert "digit 0" in warning and "2%" in warning
    high = np.array([0.3001] + [(1 - 0.3001) / 9] * 9)
    (warning,) = mode_collapse_warnings(high)
    assert "digit 0" in warning and "30%" in warning
    collapsed = np.eye(10)[7]
    warnings = mode_collapse_warnings(collapsed)
    assert len(warnings) == 10 and any("digit 7" in w and "100.0%" in w for w in warnings)


# -- the shipped classifier on real digits -------------------------------------------------------


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator()


@pytest.fixture(scope="module")
def heldout():
    return datasets.load("mnist-8k", "heldout")


def test_shipped_classifier_metadata_and_size(evaluator, heldout):
    path = evaluate.default_classifier_path()
    assert path.stat().st_size < 2_000_000
    meta = evaluator.metadata
    assert float(meta["heldout_accuracy"]) >= 0.98
    assert meta["eval_split"] == "mnist-8k/heldout" and meta["train_split"] == "mnist-8k/train"
    assert meta["data_sha256"] == heldout.sha256
    assert int(meta["feature_dim"]) == evaluator.feature_dim <= 128


def test_shipped_classifier_accuracy_matches_its_metadata(evaluator, heldout):
    probs, features = evaluator.classify(to_images(heldout.images))
    accuracy = (probs.argmax(axis=1) == heldout.labels).mean()
    assert accuracy == pytest.approx(float(evaluator.metadata["heldout_accuracy"]), abs=1e-4)
    assert features.shape == (1000, evaluator.feature_dim)


def test_real_digits_score_like_real_digits(evaluator, heldout):
    figures = evaluator.score_images(to_images(heldout.images))
    assert figures["fid"] < 1e-6  # the reference set against itself
    assert figures["classifier_score"] > 9
    assert figures["mean_confidence"] > 0.95
    assert figures["warnings"] == []
    assert 0.05 < figures["min_class_share"] and figures["kl_uniform"] < 0.02
    assert 0 < figures["fid_floor"] < 5  # unseen real digits are close


def test_degenerate_generator_is_flagged(evaluator, heldout):
    one_digit = np.repeat(to_images(heldout.images[:1]), 500, axis=0)
    figures = evaluator.score_images(one_digit)
    assert figures["max_class_share"] == 1.0 and figures["min_class_share"] == 0.0
    assert figures["classifier_score"] == pytest.approx(1.0, abs=0.01)
    assert figures["kl_uniform"] == pytest.approx(math.log(10), abs=1e-6)
    assert len(figures["warnings"]) == 10
    assert figures["fid"] > 20 * figures["fid_floor"]


def test_score_images_rejects_bad_arrays(evaluator):
    with pytest.raises(DcganError, match="shape"):
        evaluator.score_images(np.zeros((4, 28, 27, 1), np.float32))
    with pytest.raises(DcganError, match="NaN"):
        evaluator.score_images(np.full((2, 28, 28, 1), np.nan, np.float32))


def test_evaluator_rejects_missing_corrupt_and_non_classifier_models(tmp_path, tiny_generator_onnx):
    with pytest.raises(DcganError, match="not found"):
        Evaluator(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(DcganError, match="not a loadable ONNX model"):
        Evaluator(corrupt)
    with pytest.raises(DcganError, match="not a classifier"):
        Evaluator(tiny_generator_onnx)


# -- the CLI -----------------------------------------------------------------------------------


def test_evaluate_generator_is_deterministic_across_batch_sizes(evaluator, tiny_generator_onnx):
    first = evaluate.evaluate_generator(tiny_generator_onnx, n=300, seed=3, batch_size=64, evaluator=evaluator)
    again = evaluate.evaluate_generator(tiny_generator_onnx, n=300, seed=3, batch_size=300, evaluator=evaluator)
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-6)
    assert again["class_shares"] == first["class_shares"]
    other = evaluate.evaluate_generator(tiny_generator_onnx, n=300, seed=4, evaluator=evaluator)
    assert other["fid"] != first["fid"]
    assert first["n"] == 300 and sum(first["class_shares"]) == pytest.approx(1.0)
    assert first["fid"] > 10 * first["fid_floor"] > 0  # random tanh noise is far from digits
    assert 1.0 <= first["classifier_score"] <= 10.0


def test_cli_eval_json_without_tensorflow(tmp_path):
    # In-process main() in a fresh interpreter: prints one JSON object and never loads TF.
    model = make_tiny_generator(tmp_path / "g.onnx", seed=5)
    code = (
        "import sys\n"
        "from dcgan_export.cli import main\n"
        "try:\n"
        f"    main(['eval', {str(model)!r}, '--n', '200', '--seed', '3', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 200 and report["seed"] == 3 and report["model"] == str(model)
    assert report["classifier"] == str(evaluate.default_classifier_path())
    assert report["classifier_accuracy"] >= 0.98
    assert len(report["class_shares"]) == 10
    # the warnings are the thresholds applied to these shares, each shouted once on stderr (and
    # none shouted when there are none): holds whether or not this tiny generator collapses
    assert report["warnings"] == mode_collapse_warnings(report["class_shares"])
    shouted = [line for line in result.stderr.splitlines() if line.startswith("WARNING: ")]
    assert shouted == [f"WARNING: {warning}" for warning in report["warnings"]]


def test_cli_eval_table(tiny_generator_onnx):
    result = run_dcgan("eval", str(tiny_generator_onnx), "--n", "64", "--batch-size", "20")
    assert result.returncode == 0, result.stderr
    for label in ("classifier FID", "floor (real train images)", "classifier score", "mean confidence",
                  "KL(classes || uniform)", "smallest class share", "class shares:"):
        assert label in result.stdout
    assert "64 (seed 0)" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "--n must be >= 1"),
        (["--n", "-5"], "--n must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--seed", str(2**63)], "Invalid value for '--seed'"),
    ],
)
def test_cli_eval_bad_numbers(tiny_generator_onnx, args, message):
    result = run_dcgan("eval", str(tiny_generator_onnx), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.stderr


def test_evaluate_generator_checks_its_numbers_before_loading_anything(tmp_path):
    # dcgan eval's only checks: messages name the CLI options; no model is opened first
    missing = tmp_path / "missing.onnx"
    for kwargs, message in [
        (dict(n=0), "--n must be >= 1, got 0"),
        (dict(n=1_000_001), "--n must be <= 1,000,000"),
        (dict(n=10, batch_size=0), "--batch-size must be >= 1, got 0"),
        (dict(n=10, seed=2**63), "--seed must be between 0 and"),
    ]:
        with pytest.raises(DcganError, match=f"^{message}"):
            evaluate.evaluate_generator(missing, classifier_path=missing, **kwargs)


def test_cli_eval_refuses_n_over_a_million(tiny_generator_onnx):
    result = run_dcgan("eval", str(tiny_generator_onnx), "--n", "1000001")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: --n must be <= 1,000,000 (memory grows with n), got 1000001"]


def test_shared_helpers_behave_as_their_callers_need(tmp_path):
    pixels = np.array([[[0, 255], [127, 128]]], np.uint8)
    images = to_images(pixels)
    assert images.dtype == np.float32 and images.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(images[0, :, :, 0], [[-1.0, 1.0], [-0.5 / 127.5, 0.5 / 127.5]], rtol=1e-6)
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(ValueError("")) == "ValueError" and len(first_line(ValueError("x" * 500))) == 200
    assert shipped_file("mnist_classifier.onnx") == evaluate.default_classifier_path()
    with pytest.raises(DcganError, match="no shipped no-such-file.onnx found"):
        shipped_file("no-such-file.onnx")
    session = open_session(evaluate.default_classifier_path().read_bytes(), threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(DcganError, match=r"^exported thing: not a loadable ONNX model \(.+\)$"):
        open_session(b"junk", label="exported thing")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"junk")
    with pytest.raises(DcganError, match=f"^{corrupt}: not a loadable ONNX model"):
        open_session(corrupt)
    with pytest.raises(DcganError, match="threads must be between 1 and 1,024"):
        open_session(corrupt, threads=0)


def test_cli_eval_bad_files(tmp_path, tiny_generator_onnx):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    cases = [
        ([str(tmp_path / "missing.onnx")], "model not found"),
        ([str(corrupt)], "not a loadable ONNX model"),
        ([str(tiny_generator_onnx), "--classifier", str(tiny_generator_onnx)], "not a classifier"),
        ([str(tiny_generator_onnx), "--classifier", str(corrupt)], "not a loadable ONNX model"),
        ([str(evaluate.default_classifier_path())], "not a generator"),
    ]
    for args, message in cases:
        result = run_dcgan("eval", *args, "--n", "10")
        assert result.returncode == 2, (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], (args, result.stderr)


def test_eval_refuses_a_model_trained_on_other_images_unless_asked(tmp_path, tiny_generator_onnx, evaluator):
    import onnx

    model = onnx.load(str(tiny_generator_onnx))
    onnx.helper.set_model_props(model, {"latent_dim": "100", "dataset": "fashion-mnist"})
    clothes = tmp_path / "clothes.onnx"
    clothes.write_bytes(model.SerializeToString())
    with pytest.raises(DcganError, match=r"trained on 'fashion-mnist', not digits: .*--any-data"):
        evaluate.evaluate_generator(clothes, n=10, evaluator=evaluator)
    report = evaluate.evaluate_generator(clothes, n=10, evaluator=evaluator, any_data=True)
    assert len(report["class_shares"]) == 10
    result = run_dcgan("eval", str(clothes), "--n", "10", timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not digits" in result.stderr


def test_progress_counts_on_a_terminal_only():
    import io

    from dcgan_export.progress import counted

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    batches = [np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((2, 2))]
    terminal, pipe = Terminal(), io.StringIO()
    assert [len(b) for b in counted(batches, 10, "scoring", stream=terminal, min_interval=0)] == [4, 4, 2]
    assert terminal.getvalue().startswith("\rscoring 4/10\rscoring 8/10\rscoring 10/10")
    assert list(counted(iter(batches), 10, "scoring", stream=pipe)) == batches and pipe.getvalue() == ""


def test_models_that_keep_the_contract_loosely_score_the_same(tmp_path, evaluator):
    import onnx

    reference = evaluate.evaluate_generator(make_tiny_generator(tmp_path / "g.onnx"), n=50, seed=1, evaluator=evaluator)
    for name, loose in [("f64", dict(dtype=np.float64)), ("b16", dict(batch=16))]:
        report = evaluate.evaluate_generator(make_tiny_generator(tmp_path / f"{name}.onnx", **loose), n=50, seed=1,
                                             batch_size=20, evaluator=evaluator)
        assert report["class_shares"] == reference["class_shares"] and report["fid"] == pytest.approx(reference["fid"], rel=1e-4)
    # a classifier with a fixed batch of 7 rows: fed in chunks of 7, the same figures
    classifier = onnx.load(str(evaluate.default_classifier_path()))
    classifier.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 7
    onnx.save(classifier, str(tmp_path / "c7.onnx"))
    fixed = evaluate.evaluate_generator(tmp_path / "g.onnx", n=50, seed=1, classifier_path=tmp_path / "c7.onnx")
    assert fixed["class_shares"] == reference["class_shares"] and fixed["fid"] == pytest.approx(reference["fid"], rel=1e-4)


def test_a_model_producing_nan_fails_eval_in_one_line(tmp_path):
    model = make_tiny_generator(tmp_path / "nan.onnx", nan=True)
    result = run_dcgan("eval", str(model), "--n", "10")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "produced NaN or infinite values for 10 of 10 images" in lines[0]


def test_eval_refuses_a_model_of_another_shape_even_with_any_data(tmp_path):
    model = make_tiny_generator(tmp_path / "rgb.onnx", shape=(32, 32, 3))
    with pytest.raises(DcganError, match="makes 32x32x3 images; the classifier .* takes 28x28x1: train one on the model.s data"):
        evaluate.evaluate_generator(model, n=10, any_data=True)


# -- class-conditional models: per-class accuracy ---------------------------------------------------


def digit_table_generator(path, digits: np.ndarray, names: list[str], dataset: str = "mnist-8k"):
    """A conditional generator whose image for class k is ``digits[k]`` (float [-1, 1], 28x28),
    barely moved by the noise: clip(digits[labels] + 0.01 * z @ W, -1, 1)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(digits.reshape(len(digits), -1).astype(np.float32), "E"),
             numpy_helper.from_array((rng.standard_normal((8, 784)) * 0.01).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([-1, 28, 28, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array(-1, np.float32), "lo"), numpy_helper.from_array(np.array(1, np.float32), "hi")]
    nodes = [helper.make_node("Gather", ["E", "labels"], ["e"]), helper.make_node("MatMul", ["z", "W"], ["h"]),
             helper.make_node("Add", ["e", "h"], ["s"]), helper.make_node("Clip", ["s", "lo", "hi"], ["c"]),
             helper.make_node("Reshape", ["c", "shape"], ["images"])]
    graph = helper.make_graph(nodes, "digit_table", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8]),
                                                     helper.make_tensor_value_info("labels", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"latent_dim": "8", "class_names": json.dumps(names), "dataset": dataset})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def one_digit_each(evaluator, heldout):
    """For each digit k, a held-out image of k that the classifier calls k."""
    predicted = evaluator.classify(to_images(heldout.images))[0].argmax(axis=1)
    return np.stack([to_images(heldout.images[(heldout.labels == k) & (predicted == k)][:1])[0] for k in range(10)])


def test_per_class_accuracy_counts_each_drawn_class():
    probs = np.eye(3)[[0, 1, 1, 2, 0, 0]]  # predicted: 0 1 1 2 0 0
    labels = np.array([0, 1, 2, 2, 1, 0])  # drawn as:  0 1 2 2 1 0
    assert evaluate.per_class_accuracy(probs, labels, 4) == [1.0, 0.5, 0.5, None]


def test_a_conditional_digit_model_gets_per_class_accuracy(tmp_path, evaluator, one_digit_each):
    digits = [str(k) for k in range(10)]
    right = digit_table_generator(tmp_path / "right.onnx", one_digit_each, digits)
    report = evaluate.evaluate_generator(right, n=55, seed=2, evaluator=evaluator, batch_size=20)
    assert report["class_accuracy"] == [1.0] * 10 and report["min_class_accuracy"] == 1.0
    assert "class_accuracy_skipped" not in report
    assert max(report["class_shares"]) - min(report["class_shares"]) < 0.03  # classes cycle: 6 or 5 each
    # every class drawn as the next one: none is what it was asked to be
    shifted = digit_table_generator(tmp_path / "shifted.onnx", np.roll(one_digit_each, -1, axis=0), digits)
    report = evaluate.evaluate_generator(shifted, n=30, seed=2, evaluator=evaluator)
    assert report["class_accuracy"] == [0.0] * 10 and report["min_class_accuracy"] == 0.0
    table = evaluate.format_report(report)
    assert "class accuracy (samples drawn as a class that the classifier calls it):" in table
    assert "lowest class accuracy  0.0%" in table


def test_per_class_accuracy_is_the_classifiers_verdict_on_the_same_samples(tmp_path, evaluator):
    import onnx

    from dcgan_export.runtime import Sampler

    model = make_tiny_generator(tmp_path / "cond.onnx", latent_dim=12, class_names=[str(k) for k in range(10)])
    proto = onnx.load(str(model))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "dataset": "mnist-8k"})
    model.write_bytes(proto.SerializeToString())
    report = evaluate.evaluate_generator(model, n=47, seed=9, batch_size=10, evaluator=evaluator)
    sampler = Sampler(model)
    labels = np.arange(47) % 10
    predicted = evaluator.classify(sampler.sample(47, seed=9, labels=labels))[0].argmax(axis=1)
    expected = [float((predicted[labels == k] == k).mean()) for k in range(10)]
    assert report["class_accuracy"] == expected and report["min_class_accuracy"] == min(expected)
    assert all(0.0 <= a <= 1.0 for a in report["class_accuracy"])
    json.dumps(report, allow_nan=False)  # plain JSON for --json


def test_per_class_accuracy_is_skipped_where_it_means_nothing(tmp_path, evaluator, one_digit_each,
                                                             tiny_generator_onnx):
    letters = digit_table_generator(tmp_path / "letters.onnx", one_digit_each, list("abcdefghij"))
    report = evaluate.evaluate_generator(letters, n=20, evaluator=evaluator)
    assert report["class_accuracy"] is None and report["min_class_accuracy"] is None
    assert "the model's classes (a, b, c, d, e, ... (10 in all)) are not the classifier's (0, 1, 2" in \
        report["class_accuracy_skipped"]
    assert "class accuracy: not measured: the model's classes" in evaluate.format_report(report)
    clothes = digit_table_generator(tmp_path / "clothes.onnx", one_digit_each, [str(k) for k in range(10)],
                                    dataset="fashion-mnist")
    report = evaluate.evaluate_generator(clothes, n=20, evaluator=evaluator, any_data=True)
    assert report["class_accuracy"] is None
    assert report["class_accuracy_skipped"] == "the model was trained on other data than the classifier"
    plain = evaluate.evaluate_generator(tiny_generator_onnx, n=20, evaluator=evaluator)  # unconditional: as before
    assert not {"class_accuracy", "min_class_accuracy", "class_accuracy_skipped"} & set(plain)
    assert "class accuracy" not in evaluate.format_report(plain)


def test_cli_eval_json_reports_per_class_accuracy(tmp_path, one_digit_each, capsys):
    from helpers import dcgan_in_process

    model = digit_table_generator(tmp_path / "right.onnx", one_digit_each, [str(k) for k in range(10)])
    code, out, err = dcgan_in_process("eval", str(model), "--n", "20", "--json", capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["class_accuracy"] == [1.0] * 10 and report["min_class_accuracy"] == 1.0

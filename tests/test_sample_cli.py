"""``dcgan sample``: outputs as promised, and every bad input a one-line error that loses nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, dcgan_in_process, make_tiny_generator
from dcgan_export import DcganError, Sampler
from dcgan_export.images import make_grid


dcgan = dcgan_in_process


@pytest.fixture
def model(tiny_generator_onnx):
    return str(tiny_generator_onnx)


def test_grid_png_has_2px_padding_and_the_sampler_images(tmp_path, model, capsys):
    out = tmp_path / "grid.png"
    code, stdout, _ = dcgan("sample", "--n", "25", "--seed", "4", "--model", model, "--out", str(out), "--scale", "1",
                            capsys=capsys)
    assert code == 0 and "seed 4" in stdout
    grid = np.asarray(Image.open(out))
    assert grid.shape == (5 * 30 + 2, 5 * 30 + 2)
    pixels = Sampler(model).sample_pixels(25, seed=4)
    np.testing.assert_array_equal(grid[2:30, 32:60], pixels[1])  # row 0, column 1
    np.testing.assert_array_equal(grid[:2], 0)
    np.testing.assert_array_equal(grid, make_grid(pixels))
    dcgan("sample", "--n", "25", "--seed", "4", "--model", model, "--nrow", "10", "--out", str(out), "--scale", "1",
          capsys=capsys)
    assert np.asarray(Image.open(out)).shape == (3 * 30 + 2, 10 * 30 + 2)
    # by default every pixel is shown as a 4x4 square: the same grid, enlarged
    dcgan("sample", "--n", "25", "--seed", "4", "--model", model, "--out", str(out), capsys=capsys)
    big = np.asarray(Image.open(out))
    assert big.shape == (4 * 152, 4 * 152)
    np.testing.assert_array_equal(big[::4, ::4], grid)
    np.testing.assert_array_equal(big[1::4, 3::4], grid)


def test_npy_and_out_dir_and_noise_file(tmp_path, model, capsys):
    expected = Sampler(model).sample_pixels(300, seed=9)
    assert dcgan("sample", "--n", "300", "--seed", "9", "--batch-size", "64", "--model", model,
                 "--out", str(tmp_path / "x.npy"), capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), expected)
    assert dcgan("sample", "--n", "3", "--seed", "9", "--model", model, "--out-dir", str(tmp_path / "each"),
                 "--scale", "2", capsys=capsys)[0] == 0
    files = sorted((tmp_path / "each").iterdir())
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(files[2]))[::2, ::2], expected[2])
    assert Image.open(files[2]).size == (56, 56)
    z = np.random.default_rng(3).standard_normal((6, 100)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    assert dcgan("sample", "--noise", str(tmp_path / "z.npy"), "--model", model, "--format", "npy",
                 "--out", str(tmp_path / "fromz.bin"), capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "fromz.bin"), Sampler(model).generate_pixels(z))


def _write(tmp_path, name, array):
    np.save(tmp_path / name, array)
    return str(tmp_path / name)


@pytest.mark.parametrize("args,message", [
    (["--n", "0"], "--n must be between 1 and 10,000,000, got 0"),
    (["--n", "-3"], "--n must be between 1"),
    (["--n", "10000001"], "got 10000001"),
    (["--noise", "WRONG_SHAPE"], r"expected shape \[n, latent\]"),
    (["--noise", "WRONG_LATENT"], r"shape \(n, 100\)"),
    (["--noise", "WRONG_DTYPE"], "expected a float array"),
    (["--noise", "NAN"], "NaN"),
    (["--noise", "MISSING"], "no such file"),
    (["--model", "MISSING_MODEL"], "model not found"),
    (["--model", "CORRUPT_MODEL"], "not a loadable ONNX model"),
    (["--out", "NO_DIR"], "does not exist"),
])
def test_bad_input_is_one_line_nonzero_and_keeps_existing_output(tmp_path, model, capsys, args, message):
    out = tmp_path / "grid.png"
    out.write_bytes(b"precious")
    (tmp_path / "corrupt.onnx").write_bytes(b"garbage" * 50)
    subst = {
        "WRONG_SHAPE": lambda: _write(tmp_path, "a.npy", np.zeros((4, 10, 10), np.float32)),
        "WRONG_LATENT": lambda: _write(tmp_path, "b.npy", np.zeros((4, 64), np.float32)),
        "WRONG_DTYPE": lambda: _write(tmp_path, "c.npy", np.zeros((4, 100), np.int32)),
        "NAN": lambda: _write(tmp_path, "d.npy", np.full((4, 100), np.nan, np.float32)),
        "MISSING": lambda: str(tmp_path / "none.npy"),
        "MISSING_MODEL": lambda: str(tmp_path / "none.onnx"),
        "CORRUPT_MODEL": lambda: str(tmp_path / "corrupt.onnx"),
        "NO_DIR": lambda: str(tmp_path / "no" / "such" / "grid.png"),
    }
    args = [subst[a]() if a in subst else a for a in args]
    if "--model" not in args:
        args += ["--model", model]
    if "--out" not in args:
        args += ["--out", str(out)]
    code, _, err = dcgan("sample", *args, capsys=capsys)
    assert code == 2
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


@pytest.mark.slow
def test_one_million_images_to_npy_in_bounded_memory(tmp_path, tiny_generator_onnx):
    out = tmp_path / "million.npy"
    script = f"""
from dcgan_export.cli import main
try:
    main(["sample", "--n", "1000000", "--seed", "0", "--batch-size", "1024", "--model", {str(tiny_generator_onnx)!r},
          "--out", {str(out)!r}])
except SystemExit as e:
    assert not e.code
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) across exec
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) // 1024)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.strip().splitlines()[-1])
    assert peak_mib < 250, f"peak RSS {peak_mib} MiB for a 748 MiB output"
    arr = np.load(out, mmap_mode="r")
    assert arr.shape == (1_000_000, 28, 28) and arr.dtype == np.uint8
    sampler = Sampler(tiny_generator_onnx)
    np.testing.assert_array_equal(arr[999_999], sampler.generate_pixels(sampler.noise(1, 0, start=999_999))[0])


@pytest.mark.parametrize("args,message", [
    (["--out", "KEEP_ONNX"], "use a .png or .npy name"),
    (["--out", "MODEL_ITSELF", "--format", "png"], "is the --model file"),
    (["--out", "x.png", "--out-dir", "d"], "not both"),
    ([], "say where to write"),
    (["--out", "x.png", "--seed", "1", "--noise", "Z"], "--seed or --noise, not both"),
    (["--out", "x.png", "--n", "5", "--noise", "Z"], "disagrees with --noise"),
    (["--out", "x.png", "--n", "70000"], "too large"),
    (["--out", "x.png", "--n", "60000"], "a grid of 60000 images at --scale 4 is"),
    (["--out", "x.png", "--n", "2000", "--scale", "16"], "use a smaller --scale"),
    (["--out", "x.npy", "--nrow", "4"], "--nrow only applies to a grid PNG"),
    (["--out-dir", "d", "--format", "npy"], "--out-dir writes PNGs"),
    (["--out-dir", "NEWDIR", "--n", "0"], "--n must be between"),
    (["--out", "x.npy", "--format", "png"], "--format png contradicts --out x.npy"),
    (["--out", "x.PNG", "--format", "npy"], "--format npy contradicts --out x.PNG"),
    (["--out", "x.png", "--threads", str(2**32)], "'--threads': 4294967296 is not in the range 1<=x<=1024"),
    (["--out", "x.png", "--seed", str(2**63)], "'--seed': 9223372036854775808 is not in the range"),
])
def test_contradictory_or_dangerous_requests_are_refused(tmp_path, tiny_generator_onnx, capsys, args, message,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model.onnx"
    model.write_bytes(tiny_generator_onnx.read_bytes())
    (tmp_path / "keep.onnx").write_bytes(b"another model")
    np.save(tmp_path / "z.npy", np.zeros((3, 100), np.float32))
    subst = {"KEEP_ONNX": "keep.onnx", "MODEL_ITSELF": "model.onnx", "Z": "z.npy", "NEWDIR": "new/dir"}
    args = [subst.get(a, a) for a in args]
    code, _, err = dcgan("sample", "--model", "model.onnx", *args, capsys=capsys)
    assert code == 2 and err.startswith("Error: ") and message in err and err.count("\n") == 1, err
    assert (tmp_path / "keep.onnx").read_bytes() == b"another model"
    assert model.read_bytes() == tiny_generator_onnx.read_bytes()
    assert not (tmp_path / "new").exists() and not (tmp_path / "d").exists()
    assert not list(tmp_path.glob("x.*"))


def test_os_errors_are_one_line_not_tracebacks(monkeypatch, capsys):
    import dcgan_export.sampling as sampling

    def full_disk(request):
        raise OSError(28, "No space left on device", "grid.png")

    monkeypatch.setattr(sampling, "run_sample", full_disk)
    code, _, err = dcgan("sample", "--out", "grid.png", capsys=capsys)
    assert code == 1 and err == "Error: No space left on device: grid.png\n"


def test_a_model_producing_nan_is_one_line_exit_1_and_writes_nothing(tmp_path, capsys):
    model = make_tiny_generator(tmp_path / "nan.onnx", nan=True)
    code, _, err = dcgan("sample", "--model", str(model), "--n", "3", "--out", str(tmp_path / "g.png"), capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "produced NaN or infinite values for 3 of 3 images" in err, err
    assert not (tmp_path / "g.png").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unexpected_exceptions_are_one_line_with_the_way_to_the_traceback(monkeypatch, capsys):
    import dcgan_export.sampling as sampling

    def bug(request):
        raise KeyError("oops")

    monkeypatch.setattr(sampling, "run_sample", bug)
    code, _, err = dcgan("sample", "--out", "grid.png", capsys=capsys)
    assert code == 1 and err.count("\n") == 1 and "internal error (KeyError: 'oops')" in err and "DCGAN_DEBUG=1" in err
    monkeypatch.setenv("DCGAN_DEBUG", "1")
    with pytest.raises(KeyError):
        dcgan("sample", "--out", "grid.png", capsys=capsys)


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, tiny_generator_onnx):
    """RLIMIT_FSIZE fails every write past 100 kB (EFBIG), as a full disk does (ENOSPC)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "images.npy"
    out.write_bytes(b"precious")
    result = subprocess.run([sys.executable, "-m", "dcgan_export.cli", "sample", "--n", "1000", "--seed", "0",
                             "--model", str(tiny_generator_onnx), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert result.returncode == 1 and result.stderr == f"Error: File too large: {out}\n"
    assert out.read_bytes() == b"precious" and [p.name for p in tmp_path.iterdir()] == ["images.npy"]


def test_an_rgb_model_gives_rgb_grids_npy_and_pngs(tmp_path, capsys):
    model = str(make_tiny_generator(tmp_path / "rgb.onnx", shape=(32, 32, 3)))
    sampler = Sampler(model)
    pixels = sampler.sample_pixels(6, seed=4)
    assert dcgan("sample", "--model", model, "--n", "6", "--seed", "4", "--out", str(tmp_path / "g.png"),
                 "--scale", "1", capsys=capsys)[0] == 0
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert Image.open(tmp_path / "g.png").mode == "RGB" and grid.shape == (2 + 2 * 34, 2 + 3 * 34, 3)
    np.testing.assert_array_equal(grid, make_grid(pixels, padding=2))
    np.testing.assert_array_equal(grid[2:34, 36:68], pixels[1])
    assert dcgan("sample", "--model", model, "--n", "6", "--seed", "4", "--out", str(tmp_path / "a.npy"),
                 capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), pixels)
    assert dcgan("sample", "--model", model, "--n", "6", "--seed", "4", "--out-dir", str(tmp_path / "d"),
                 "--scale", "1", capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d" / "000005.png")), pixels[5])


# -- truncation, walks between seeds ----------------------------------------------------------------


def test_truncation_bounds_the_noise_and_stays_seed_stable(model):
    sampler = Sampler(model)
    plain, truncated = sampler.noise(50, seed=3), sampler.noise(50, seed=3, truncation=0.7)
    assert np.abs(truncated).max() <= 0.7 and np.abs(plain).max() > 2
    kept = np.abs(plain) <= 0.7
    np.testing.assert_array_equal(truncated[kept], plain[kept])  # only what was outside is redrawn
    np.testing.assert_array_equal(sampler.noise(5, seed=3, start=45, truncation=0.7), truncated[45:])
    np.testing.assert_array_equal(sampler.sample_pixels(50, seed=3, batch_size=7, truncation=0.7),
                                  sampler.generate_pixels(truncated))
    for bad in (0, -1, 0.001, float("nan"), float("inf")):
        with pytest.raises(DcganError, match="truncation must be a finite number >= 0.01"):
            sampler.sample(1, seed=0, truncation=bad)


def test_truncation_on_the_command_line(tmp_path, model, capsys):
    code, _, err = dcgan("sample", "--model", model, "--n", "4", "--seed", "2", "--truncation", "0.5",
                         "--out", str(tmp_path / "t.npy"), capsys=capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), Sampler(model).sample_pixels(4, seed=2, truncation=0.5))
    np.save(tmp_path / "z.npy", np.zeros((2, 100), np.float32))
    for args, message in [(["--truncation", "0"], "truncation must be a finite number"),
                          (["--truncation", "0.5", "--noise", str(tmp_path / "z.npy")], "--noise is used as it is"),
                          (["--scale", "0"], "'--scale': 0 is not in the range 1<=x<=16")]:
        code, _, err = dcgan("sample", "--model", model, "--out", str(tmp_path / "x.png"), *args, capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


def test_slerp_keeps_to_the_sphere_and_hits_its_ends():
    from dcgan_export.interpolation import slerp

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 100)), rng.standard_normal((3, 100))
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-6)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-5)
    middle = slerp(a, b, 0.5)
    line = (a + b) / 2
    assert (np.linalg.norm(middle, axis=1) > np.linalg.norm(line, axis=1) * 1.2).all()  # not through the middle
    np.testing.assert_allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel: no division by zero


def test_a_walk_between_seeds_is_an_animated_gif(tmp_path, model, capsys):
    out = tmp_path / "walk.gif"
    code, stdout, err = dcgan("sample", "--model", model, "--interpolate", "3,7,11", "--frames", "5", "--n", "2",
                              "--scale", "2", "--out", str(out), capsys=capsys)
    assert code == 0 and "11 frames, 2 walks through seeds 3, 7, 11" in stdout, err
    gif = Image.open(out)
    assert gif.n_frames == 11 and gif.size == (2 * (2 + 2 * 30), 2 * 32)
    sampler = Sampler(model)
    gif.seek(5)  # the second leg starts on seed 7's images
    first_of_seed_7 = make_grid(sampler.sample_pixels(2, seed=7), nrow=2)
    frame = np.asarray(gif.convert("L"))[::2, ::2]
    assert np.abs(frame.astype(int) - first_of_seed_7).mean() < 3  # GIF palettes round a little
    for args, message in [(["--interpolate", "3"], "at least two seeds"),
                          (["--interpolate", "3,x"], "seeds separated by commas"),
                          (["--interpolate", "3,4", "--frames", "1"], "--frames must be between 2 and"),
                          (["--interpolate", "3,4", "--seed", "1"], "not with --seed"),
                          (["--interpolate", "3,-4"], "seed must be between 0 and"),
                          (["--interpolate", "3,4", "--nrow", "-2"], "--nrow must be >= 1"),
                          (["--interpolate", "3,4,5,6", "--frames", "1000", "--n", "64", "--scale", "16"],
                           "use fewer seeds, --frames, --n or a smaller --scale")]:
        code, _, err = dcgan("sample", "--model", model, *args, "--out", str(tmp_path / "w.gif"), capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    code, _, err = dcgan("sample", "--model", model, "--interpolate", "3,4", "--out", str(tmp_path / "w.png"),
                         capsys=capsys)
    assert code == 2 and "--out NAME.gif" in err
    assert not (tmp_path / "w.gif").exists() and not (tmp_path / "w.png").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg not installed")
def test_a_walk_can_be_an_mp4_where_ffmpeg_is_installed(tmp_path, model, capsys):
    out = tmp_path / "walk.mp4"
    code, stdout, err = dcgan("sample", "--model", model, "--interpolate", "3,7", "--frames", "6", "--n", "3",
                              "--scale", "1", "--out", str(out), capsys=capsys)
    assert code == 0 and "7 frames" in stdout, err
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name,width,height,nb_read_frames,pix_fmt", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    # 3 walks of 30 px with 2 px padding: 92 x 32, padded to even sides (already even)
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", 92, 32)
    assert int(stream["nb_read_frames"]) == 7


def test_an_mp4_without_ffmpeg_is_one_line_and_writes_nothing(tmp_path, model, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "walk.mp4"
    code, _, err = dcgan("sample", "--model", model, "--interpolate", "3,7", "--out", str(out), capsys=capsys)
    assert code == 2 and "needs ffmpeg" in err and err.strip().count("\n") == 0
    assert not out.exists()

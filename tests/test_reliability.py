"""Bad input gets a clear error, and nothing is lost: the table of cases (README, "Errors").

Each image case makes a file and says what reading it must give: "ok" (a valid oddity, read as RGB)
or a pattern the one-line error must match. Argument cases run the CLI and must fail with one
`error:` line before any heavy work. Hypothesis fuzzes the loader and the argument handling.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import struct
import zlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import gradcam_jax as gj
from gradcam_jax import cli
from gradcam_jax._src import images, maps, outputs
from tests.conftest import PHOTOS

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header) and holds no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return encoded(Image.fromarray(PHOTO), "JPEG", exif=exif)


def multipage_tiff() -> bytes:
    pages = [Image.fromarray(PHOTO), Image.new("RGB", (64, 48), "blue")]
    return encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def animated_gif() -> bytes:
    frames = [Image.fromarray(PHOTO).convert("P"), Image.new("P", (64, 48), 3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


JPEG = encoded(Image.fromarray(PHOTO), "JPEG")
PNG = encoded(Image.fromarray(PHOTO), "PNG")

# name -> (file bytes, "ok" or a pattern of the error's reason)
IMAGE_CASES = {
    "empty.jpg": (b"", "empty file"),
    "truncated.jpg": (JPEG[: len(JPEG) // 2], "damaged image"),
    "truncated.png": (PNG[: len(PNG) // 2], "damaged image"),
    "text.jpg": (b"this is not a photo\n" * 10, "not an image Pillow can read"),
    "vector.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "not an image Pillow can read"),
    "bomb.png": (png_header_only(40_000, 40_000), "too large to decode safely"),
    "big.png": (png_header_only(8_500, 8_500), r"too large to decode safely \(8500x8500 pixels"),
    "one_pixel.png": (encoded(Image.new("RGB", (1, 1), "red"), "PNG"), "ok"),
    "thin.png": (encoded(Image.new("RGB", (2000, 1), "red"), "PNG"), "ok"),
    "grey16.png": (encoded(Image.fromarray(PHOTO[..., 0].astype(np.uint16) * 257), "PNG"), "ok"),
    "cmyk.jpg": (encoded(Image.fromarray(PHOTO).convert("CMYK"), "JPEG"), "ok"),
    "palette.png": (encoded(Image.fromarray(PHOTO).convert("P"), "PNG"), "ok"),
    "rgba.png": (encoded(Image.fromarray(PHOTO).convert("RGBA"), "PNG"), "ok"),
    "grey.jpg": (encoded(Image.fromarray(PHOTO[..., 1]), "JPEG"), "ok"),
    "exif_rotated.jpg": (exif_rotated(), "ok"),
    "animated.gif": (animated_gif(), "ok"),
    "multipage.tif": (multipage_tiff(), "ok"),
}


@pytest.mark.parametrize("name", IMAGE_CASES)
@pytest.mark.parametrize("crop", images.CROPS)
def test_image_case(tmp_path, name, crop):
    data, expected = IMAGE_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    if expected == "ok":
        array = images.load_image(path, crop=crop)
        assert array.shape == (224, 224, 3) and array.dtype == np.uint8
    else:
        with pytest.raises(images.ImageError, match=expected) as error:
            images.load_image(path, crop=crop)
        assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_first_frame_and_page_are_used(tmp_path):
    for name in ("animated.gif", "multipage.tif", "exif_rotated.jpg"):
        (tmp_path / name).write_bytes(IMAGE_CASES[name][0])
    assert images.read_image(tmp_path / "multipage.tif").getpixel((0, 0)) == tuple(PHOTO[0, 0])
    assert images.read_image(tmp_path / "animated.gif").getpixel((0, 0)) != (0, 0, 255)
    assert images.read_image(tmp_path / "exif_rotated.jpg").size == (48, 64)  # orientation 8: rotated a quarter turn


def test_a_batch_survives_broken_files(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTOS / "cat.png", folder / "a_cat.png")
    for name in ("empty.jpg", "truncated.png", "text.jpg"):
        (folder / name).write_bytes(IMAGE_CASES[name][0])
    (folder / "notes.txt").write_text("a directory may hold non-images: they are not inputs")
    code = cli.main(["explain", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "out" / "a_cat.png").exists()
    for name in ("empty.jpg", "truncated.png", "text.jpg"):
        assert f"error: {folder / name}: " in err
    assert "3 image(s) failed:" in err and "notes.txt" not in err


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Loading the model means the arguments were accepted: these cases must fail before it."""

    def refuse(args):
        raise AssertionError("heavy work started before the arguments were checked")

    monkeypatch.setattr(cli, "model_and_variables", refuse)


CAT = str(PHOTOS / "cat.png")
ARGUMENT_CASES = {
    "unknown class": (["explain", CAT, "--class", "golden retreiver"], "did you mean 'golden retriever'"),
    "class out of range": (["explain", CAT, "--class", "1000"], r"out of range 0\.\.999"),
    "unknown method": (["explain", CAT, "--method", "gradcam"], "invalid choice: 'gradcam'"),
    "opacity outside [0, 1]": (["explain", CAT, "--opacity", "1.5"], r"--opacity must be in \[0, 1\]"),
    "unwritable output": (["explain", CAT, "--out", "/dev/null/out"], "cannot write to /dev/null"),
    "output over the input": (["explain", CAT, "--out", CAT], "refusing to overwrite an input"),
    "missing image": (["classify", "/no/such/photo.jpg"], "no such file"),
    "empty folder": (["classify", "/proc/self/fdinfo"], "no images found"),
    "top below one": (["classify", CAT, "--top", "0"], "--top must be at least 1"),
    "bad batch": (["classify", CAT, "--batch", "0"], "must be at least 1"),
    "unknown command": (["explain-all", CAT], "invalid choice"),
}


@pytest.mark.parametrize("case", ARGUMENT_CASES)
def test_argument_case(case, no_heavy_work, capsys):
    argv, pattern = ARGUMENT_CASES[case]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err


def test_unknown_layer_fails_before_reading_images(capsys, monkeypatch):
    monkeypatch.setattr(cli.Images, "load", lambda self, path: pytest.fail("images read before the layer was checked"))
    assert cli.main(["explain", CAT, "--layer", "inception_9z-output"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown layer 'inception_9z-output'" in err and "inception_5b/output" in err


API_CASES = {
    "rank 2": (np.zeros((224, 224), np.float32), None, r"must be a batch of \(B, L, C\) signals, \(B, H, W, C\)"),
    "rank 6": (np.zeros((1, 2, 8, 8, 8, 3), np.float32), None, r"\(B, D, H, W, C\) volumes; got shape \(1, 2, 8, 8, 8"),
    # a photo without its batch axis reads as a batch of signals: the model's first convolution says why not
    "rank 3": (
        np.zeros((224, 224, 3), np.float32),
        None,
        r"which takes \(1, 224, 224, 3\): the batch axis is missing: pass images\[None\]",
    ),
    "four channels": (
        np.zeros((1, 224, 224, 4), np.float32),
        None,
        r"which takes \(1, 224, 224, 3\): 4 channels where the model takes 3 \(alpha\?\)",
    ),
    "strings": (np.full((1, 2, 2, 3), "x"), None, "must be float"),
    "NaN": (np.full((1, 224, 224, 3), np.nan, np.float32), None, "NaN or Inf"),
    "Inf": (np.full((1, 224, 224, 3), np.inf, np.float32), None, "NaN or Inf"),
    "float targets": (np.zeros((1, 224, 224, 3), np.float32), np.array([1.0]), "integer class indices"),
    "targets for another batch": (np.zeros((2, 224, 224, 3), np.float32), np.array([1]), r"shape \(2,\) or \(2, K\)"),
    "target out of range": (np.zeros((1, 224, 224, 3), np.float32), np.array([1000]), r"out of range 0\.\.999"),
    "negative target": (np.zeros((1, 224, 224, 3), np.float32), np.array([[-1, 3]]), "out of range"),
}


@pytest.mark.parametrize("case", API_CASES)
def test_python_api_case(googlenet, case):
    images_, targets, pattern = API_CASES[case]
    with pytest.raises(ValueError, match=pattern):
        gj.grad_cam(*googlenet, images_, targets)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_inputs_work(googlenet, cat_dog, dtype):
    result = gj.grad_cam(*googlenet, jnp.asarray(cat_dog, dtype), np.array([243]))
    assert bool(jnp.isfinite(result.map).all()) and float(result.map.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("raw", [np.zeros((2, 7, 7)), np.full((2, 7, 7), -3.0), np.full((2, 7, 7), 5.0)])
@pytest.mark.parametrize("relu", [False, True])
def test_constant_zero_and_negative_maps_give_zeros(raw, relu):
    finished = maps.finish(jnp.asarray(raw), (224, 224), relu=relu)
    assert finished.shape == (2, 224, 224) and not bool(jnp.isnan(finished).any())
    np.testing.assert_array_equal(finished, 0.0)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "map.png"

    def interrupted_save(self, fp, format=None, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        outputs.save_png(target, np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "map.npy"
    outputs.save_npy(target, np.ones(3))
    with pytest.raises(ValueError):
        outputs.atomic_write(target, lambda tmp: (_ for _ in ()).throw(ValueError("disk full")))
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert list(tmp_path.iterdir()) == [target]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from([b"", JPEG[:64], PNG[:64], b"GIF89a", b"BM", b"II*\x00"]),
    body=st.binary(max_size=512),
)
def test_fuzz_image_loader_raises_only_image_errors(tmp_path, prefix, body):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(prefix + body)
    try:
        image = images.read_image(path)
    except images.ImageError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
    else:
        assert image.mode == "RGB"


WORDS = [
    "classify",
    "explain",
    CAT,
    "--class",
    "--top",
    "--json",
    "--layer",
    "--alpha",
    "--method",
    "--batch",
    "--crop",
    "--out",
    "--save-map",
    "--score",
    "--relu",
    "center",
    "tabby",
    "7",
    "-1",
    "1e9",
    "nan",
    "grad_cam",
    "x.png",
    "",
]


@settings(max_examples=80, deadline=None)
@given(argv=st.lists(st.sampled_from(WORDS), max_size=8))
def test_fuzz_cli_arguments_end_in_one_clean_line(argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli_main_without_model(argv)
    except SystemExit as exit_:
        assert exit_.code in (0, 2)  # --help, or argparse's one-line error
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error")]
    assert len(lines) <= 1 and "Traceback" not in err.getvalue()


def cli_main_without_model(argv):
    original = cli.model_and_variables

    def stop(args):
        raise RuntimeError("arguments accepted")

    cli.model_and_variables = stop
    try:
        return cli.main(argv)
    finally:
        cli.model_and_variables = original

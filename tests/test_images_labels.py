"""Reading photos (every Pillow mode to RGB, EXIF, resizing as MATLAB does) and the ImageNet labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import gradcam_jax as gj
from gradcam_jax._src import images
from gradcam_jax.models import imagenet as labels


def saved(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_labels_are_caffe_synset_lines():
    assert len(labels.synonyms()) == 1000
    assert gj.label(0) == "tench" and gj.label(207) == "golden retriever" and gj.label(999) == "toilet tissue"
    assert labels.synonyms()[281] == ("tabby", "tabby cat")


@pytest.mark.parametrize(
    ("spec", "index"), [(243, 243), ("243", 243), ("Bull Mastiff", 243), ("tabby cat", 281), (" TIGER CAT ", 282)]
)
def test_class_by_index_or_any_synonym(spec, index):
    assert gj.class_index(spec) == index


def test_class_errors_say_what_to_do():
    with pytest.raises(ValueError, match="did you mean 'golden retriever'"):
        gj.class_index("golden retreiver")
    with pytest.raises(ValueError, match=r"out of range 0\.\.999"):
        gj.class_index(1000)
    with pytest.raises(ValueError, match=r"ambiguous: 134 \(crane\), 517 \(crane\)"):
        gj.class_index("crane")


def test_modes_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = Image.fromarray(rgb[..., 0])
    cases = {
        "grey.png": grey,
        "palette.png": Image.fromarray(rgb).convert("P"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "grey16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    for name, image in cases.items():
        loaded = images.read_image(saved(tmp_path, image, name))
        assert loaded.mode == "RGB" and loaded.size == (30, 20), name
    # 16-bit values v*257 come back as v; grey is replicated into the three channels.
    grey16 = np.asarray(images.read_image(tmp_path / "grey16.png"))
    np.testing.assert_array_equal(grey16, np.repeat(rgb[..., :1], 3, axis=-1))


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, ..., 3] = 255  # top half opaque red-ish, bottom half fully transparent
    loaded = np.asarray(images.read_image(saved(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png")))
    np.testing.assert_array_equal(loaded[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(loaded[3, 3], [255, 255, 255])


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 20, 3), np.uint8)
    array[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = saved(tmp_path, Image.fromarray(array), "rotated.jpg", exif=exif, quality=95)
    upright = np.asarray(images.read_image(path))
    assert upright.shape == (20, 10, 3)
    assert upright[:10].mean() > 200 and upright[10:].mean() < 50  # white half now on top


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    first = np.asarray(images.read_image(path))
    assert first[..., 0].mean() > 200 and first[..., 2].mean() < 50


def test_resize_is_pillow_bicubic_without_keeping_aspect(tmp_path):
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    resized = images.resize(photo)
    assert resized.shape == (224, 224, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, np.asarray(photo.resize((224, 224), Image.Resampling.BICUBIC)))


def test_center_crop_keeps_the_aspect():
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100] = 255  # the left third is white: a centred square crop drops it
    cropped = images.resize(Image.fromarray(wide), (50, 50), crop="center")
    stretched = images.resize(Image.fromarray(wide), (50, 50))
    assert cropped.max() == 0
    assert stretched[:, :10].min() == 255


def test_expand_paths_finds_images_in_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpg", "sub/c.PNG"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    found = images.expand_paths([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b.png", "sub/c.PNG"]

"""GoogLeNet: known classifications, layer names and shapes, and the Caffe layers checked against
independent numpy references (the raw Caffe blobs, LRN and ceil-mode pooling written out by hand)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax.models import googlenet
from tests.conftest import ROOT, sample_photo

SHARED = ROOT.parent / "shared" / "bvlc_googlenet"


def top5(model, variables, images):
    probs, indices = gj.top_k(model, variables, images, 5)
    return np.asarray(probs), np.asarray(indices)


def test_cat_png_gives_the_shared_readme_top5(googlenet, cat):
    # From ../shared/bvlc_googlenet/README.md: 285 Egyptian cat 0.562, 287 lynx 0.119, 281 tabby 0.043,
    # 282 tiger cat 0.037, 286 cougar 0.031.
    probs, indices = top5(*googlenet, cat)
    assert indices[0].tolist() == [285, 287, 281, 282, 286]
    np.testing.assert_almost_equal(probs[0], [0.562, 0.119, 0.043, 0.037, 0.031], decimal=3)
    assert [gj.label(i) for i in indices[0][:2]] == ["Egyptian cat", "lynx"]


@pytest.mark.parametrize(
    ("photo", "expected", "min_score"),
    [("grace_hopper.jpg", "military uniform", 0.85), ("coffee.png", "espresso", 0.5)],
)
def test_real_photos_classify_sensibly(googlenet, photo, expected, min_score):
    image = gj.load_image(sample_photo(photo))[None].astype(np.float32)
    probs, indices = top5(*googlenet, image)
    assert gj.label(int(indices[0, 0])) == expected
    assert probs[0, 0] > min_score


LAYER_SHAPES = {
    "conv1-7x7_s2": (112, 112, 64),
    "pool1-3x3_s2": (56, 56, 64),
    "pool1-norm1": (56, 56, 64),
    "conv2-norm2": (56, 56, 192),
    "pool2-3x3_s2": (28, 28, 192),
    "inception_3a-output": (28, 28, 256),
    "inception_3b-output": (28, 28, 480),
    "pool3-3x3_s2": (14, 14, 480),
    "inception_4d-output": (14, 14, 528),
    "inception_4e-output": (14, 14, 832),
    "pool4-3x3_s2": (7, 7, 832),
    "inception_5b-output": (7, 7, 1024),
    "pool5-7x7_s1": (1, 1, 1024),
    "pool5-drop_7x7_s1": (1, 1, 1024),
    "loss3-classifier": (1000,),
    "prob": (1000,),
}


@pytest.fixture(scope="module")
def activations(googlenet, cat):
    model, variables = googlenet
    apply = jax.jit(lambda v, x: model.apply(v, x, layers=tuple(LAYER_SHAPES) + ("conv1-relu_7x7",)))
    return apply(variables, cat)


def test_named_layers_have_matlab_shapes(activations):
    logits, acts = activations
    assert logits.shape == (1, 1000)
    assert {name: acts[name].shape[1:] for name in LAYER_SHAPES} == LAYER_SHAPES
    np.testing.assert_allclose(acts["loss3-classifier"], logits)
    np.testing.assert_allclose(acts["prob"].sum(), 1.0, rtol=1e-5)


def test_matlab_names_and_flax_paths_denote_the_same_layer(googlenet, cat):
    model, variables = googlenet
    _, acts = model.apply(variables, cat, layers=("inception_4a-output", "inception_4a/output"))
    np.testing.assert_array_equal(acts["inception_4a-output"], acts["inception_4a/output"])


def test_conv1_matches_the_raw_caffe_blobs(activations, cat):
    """conv1/7x7_s2 from the unconverted Caffe filter, Caffe's BGR mean and an im2col in numpy."""
    if not SHARED.is_dir():
        pytest.skip("../shared/bvlc_googlenet is not beside this checkout")
    w = np.fromfile(SHARED / "weights/conv1/7x7_s2_filter.bin", "<f4").reshape(64, 7, 7, 3).astype(np.float64)
    b = np.fromfile(SHARED / "weights/conv1/7x7_s2_bias.bin", "<f4").astype(np.float64)
    bgr = cat[0, :, :, ::-1].astype(np.float64) - np.array([104.0069, 116.6687, 122.6789])
    padded = np.pad(bgr, ((3, 3), (3, 3), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (7, 7), axis=(0, 1))[::2, ::2]  # (112,112,3,7,7)
    expected = np.einsum("yxcij,oijc->yxo", patches, w) + b
    got = np.asarray(activations[1]["conv1-7x7_s2"][0], np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def caffe_max_pool(x: np.ndarray, k: int, s: int, pad: int) -> np.ndarray:
    """Caffe's PoolingLayer (MAX) written out: ceil output size, windows clipped to the image."""
    h, w, c = x.shape
    oh, ow = (int(np.ceil((n + 2 * pad - k) / s)) + 1 for n in (h, w))
    if pad:
        oh -= (oh - 1) * s >= h + pad
        ow -= (ow - 1) * s >= w + pad
    out = np.empty((oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = max(i * s - pad, 0), max(j * s - pad, 0)
            y1, x1 = min(i * s - pad + k, h), min(j * s - pad + k, w)
            out[i, j] = x[y0:y1, x0:x1].max(axis=(0, 1))
    return out


def caffe_lrn(x: np.ndarray, n=5, alpha=1e-4, beta=0.75, k=1.0) -> np.ndarray:
    """Caffe's LRN ACROSS_CHANNELS, one channel at a time."""
    c = x.shape[-1]
    out = np.empty_like(x)
    for i in range(c):
        lo, hi = max(0, i - n // 2), min(c, i + n // 2 + 1)
        out[..., i] = x[..., i] / (k + alpha / n * np.square(x[..., lo:hi]).sum(-1)) ** beta
    return out


def test_pool1_and_norm1_match_caffe_formulas(activations):
    relu = np.asarray(activations[1]["conv1-relu_7x7"][0], np.float64)
    pooled = caffe_max_pool(relu, 3, 2, 0)
    np.testing.assert_allclose(activations[1]["pool1-3x3_s2"][0], pooled, rtol=1e-6)
    np.testing.assert_allclose(activations[1]["pool1-norm1"][0], caffe_lrn(pooled), rtol=1e-5)


@pytest.mark.parametrize(
    ("size", "k", "s", "pad"), [(112, 3, 2, 0), (28, 3, 1, 1), (14, 3, 2, 0), (7, 3, 2, 1), (10, 3, 3, 1)]
)
def test_ceil_mode_max_pool_matches_caffe(size, k, s, pad):
    x = np.random.default_rng(size).normal(size=(size, size, 4)).astype(np.float32)
    got = googlenet.MaxPool(k, s, pad).apply({}, jnp.asarray(x[None]))[0]
    np.testing.assert_array_equal(got, caffe_max_pool(x, k, s, pad))


def test_lrn_matches_caffe_formula():
    x = np.random.default_rng(0).normal(scale=30.0, size=(3, 3, 11)).astype(np.float32)
    got = googlenet.LRN().apply({}, jnp.asarray(x[None]))[0]
    np.testing.assert_allclose(got, caffe_lrn(x.astype(np.float64)), rtol=1e-5)


def test_batch_equals_single_calls_and_jit_equals_eager(googlenet, cat, cat_dog):
    model, variables = googlenet
    batch = np.concatenate([cat, cat_dog, cat_dog[:, ::-1]])
    jitted = np.asarray(jax.jit(model.apply)(variables, batch)[0])
    singles = np.concatenate([np.asarray(jax.jit(model.apply)(variables, x[None])[0]) for x in batch])
    np.testing.assert_allclose(jitted, singles, rtol=1e-4, atol=1e-4)
    eager = np.asarray(model.apply(variables, batch[:1])[0])
    np.testing.assert_allclose(jitted[:1], eager, rtol=1e-4, atol=1e-4)


def test_classify_compiles_once_per_input_shape(googlenet, cat, cat_dog):
    from gradcam_jax._src.classify import _top_k

    model, variables = googlenet
    # batches of 7 and 6: shapes no other test uses, so the count does not depend on test order
    seven = [np.concatenate([x] * 7) for x in (cat, cat_dog, cat + 1.0)]
    before = _top_k._cache_size()
    for x in seven:
        gj.top_k(model, variables, x, 3)
    assert _top_k._cache_size() == before + 1
    gj.top_k(model, variables, np.concatenate([cat, cat_dog] * 3), 3)
    assert _top_k._cache_size() == before + 2


def test_unknown_layer_lists_the_valid_names(googlenet, cat):
    model, variables = googlenet
    with pytest.raises(gj.UnknownLayerError, match="inception_5b/output"):
        model.apply(variables, cat, layers=("inception_9z-output",))


def test_every_variant_builds_its_own_tree():
    torchvision = jax.eval_shape(gj.TorchvisionGoogLeNet().init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert set(torchvision) == {"params", "batch_stats"}
    assert torchvision["params"]["inception_5b"]["5x5"]["conv"]["kernel"].shape == (3, 3, 48, 128)
    bvlc = jax.eval_shape(gj.BVLCGoogLeNet().init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert set(bvlc) == {"params"}
    assert bvlc["params"]["inception_5b"]["5x5"]["kernel"].shape == (5, 5, 48, 128)


def test_converted_file_holds_every_caffe_blob_unchanged():
    """The shipped file against the raw blobs: every value, transposed as documented."""
    if not SHARED.is_dir():
        pytest.skip("../shared/bvlc_googlenet is not beside this checkout")
    params = gj.models.weights.read_variables(gj.models.weights.bundled_path())["params"]
    count = 0
    for line in (SHARED / "SHA256SUMS.txt").read_text().splitlines():
        name = line.split()[1]
        stage, leaf = Path(name).parts[1], Path(name).stem
        layer, kind = leaf.rsplit("_", 1)
        raw = np.fromfile(SHARED / name, "<f4")
        stored = params[stage][layer]["bias" if kind == "bias" else "kernel"]
        if kind == "filter" and stored.ndim == 4:  # HWIO <- [out, kH, kW, in]
            stored = stored.transpose(3, 0, 1, 2)
        elif kind == "filter":  # Dense [in, out] <- [out, in]
            stored = stored.T
        np.testing.assert_array_equal(stored.reshape(-1), raw)
        count += raw.size
    assert count == 6_998_552

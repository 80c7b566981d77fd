"""Grad-CAM against references computed without the code under test: finite differences, the GAP+FC
head written in numpy, MATLAB's formula; batching, vmapped targets, tracing counts, and the photo."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src import maps
from tests.conftest import CAT_BOX, DOG_BOX

MASTIFF, TIGER_CAT = 243, 282


def head(variables, feature_map: np.ndarray, score: str) -> np.ndarray:
    """GoogLeNet above inception_5b in float64 numpy: 7x7 average pool, classifier, softmax."""
    dense = variables["params"]["loss3"]["classifier"]
    w, b = np.asarray(dense["kernel"], np.float64), np.asarray(dense["bias"], np.float64)
    logits = feature_map.mean(axis=(0, 1)) @ w + b
    if score == "logit":
        return logits
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def mastiff_and_cat(googlenet, cat_dog):
    return gj.grad_cam(*googlenet, cat_dog, np.array([[MASTIFF, TIGER_CAT]]))


@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_gradients_equal_central_finite_differences(googlenet, cat_dog, score):
    model, variables = googlenet
    result = gj.grad_cam(model, variables, cat_dog, np.array([MASTIFF]), score=score)
    feature_map = np.asarray(result.activations[0], np.float64)
    # The score is a function of inception_5b-output alone; differentiate the numpy head numerically.
    np.testing.assert_allclose(result.scores[0], head(variables, feature_map, score)[MASTIFF], rtol=1e-4)
    rng = np.random.default_rng(0)
    eps = 1e-3
    for y, x, c in zip(rng.integers(0, 7, 6), rng.integers(0, 7, 6), rng.integers(0, 1024, 6)):
        up, down = feature_map.copy(), feature_map.copy()
        up[y, x, c] += eps
        down[y, x, c] -= eps
        numeric = (head(variables, up, score)[MASTIFF] - head(variables, down, score)[MASTIFF]) / (2 * eps)
        np.testing.assert_allclose(result.gradients[0, y, x, c], numeric, rtol=1e-3, atol=1e-9)


def test_gradients_at_a_deeper_layer_equal_finite_differences(googlenet, cat_dog):
    """At inception_4e (14x14) the score passes through pool4 and inception 5a/5b: perturb the layer's
    output through the model itself and difference the forward passes, in float64 (in float32 the
    logits' rounding, ~1e-5, is a few percent of a difference of ~1e-4 and depends on how XLA's CPU
    threads split the reductions)."""
    from gradcam_jax._src.adapters import taps

    model, variables = googlenet
    result = gj.grad_cam(model, variables, cat_dog, np.array([TIGER_CAT]), layer="inception_4e-output", score="logit")
    assert result.activations.shape == (1, 14, 14, 832) and result.map.shape == (1, 224, 224)
    grads = np.asarray(result.gradients[0])
    with jax.enable_x64(True):

        @jax.jit  # variables and image as arguments: closed over, XLA would constant-fold the network
        def logit(variables, images, delta):
            return taps.forward_with_layer(model, variables, images, "inception_4e/output", delta)[0][0][0, TIGER_CAT]

        wide = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        image = np.asarray(cat_dog, np.float64)
        for y, x, c in np.argwhere(np.abs(grads) > 0.5 * np.abs(grads).max())[:4]:
            delta = np.zeros((1, 14, 14, 832), np.float64)
            delta[0, y, x, c] = 0.05
            numeric = (float(logit(wide, image, delta)) - float(logit(wide, image, -delta))) / 0.1
            np.testing.assert_allclose(grads[y, x, c], numeric, rtol=2e-3)


def test_logit_weights_are_classifier_row_over_49_so_map_is_cam(googlenet, cat_dog):
    model, variables = googlenet
    result = gj.grad_cam(model, variables, cat_dog, np.array([MASTIFF]), score="logit", relu=True)
    w = np.asarray(variables["params"]["loss3"]["classifier"]["kernel"])[:, MASTIFF]
    np.testing.assert_allclose(np.asarray(result.gradients[0]).mean(axis=(0, 1)), w / 49, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(result.gradients[0], np.broadcast_to(w / 49, (7, 7, 1024)), rtol=1e-5, atol=1e-9)
    # CAM (Zhou et al.): sum_c W[class, c] A_c, ReLU, min-max, bicubic — from the activations in numpy.
    _, acts = model.apply(variables, cat_dog, layers=("inception_5b-output",))
    cam = np.maximum(np.asarray(acts["inception_5b-output"][0], np.float64) @ w, 0)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    expected = np.clip(jax.image.resize(cam.astype(np.float32), (224, 224), "bicubic"), 0, 1)
    np.testing.assert_allclose(result.map[0], expected, atol=1e-5)


@pytest.mark.oldest
def test_default_is_matlabs_formula(googlenet, mastiff_and_cat):
    """gradcamMap = rescale(sum(convMap .* sum(dScoresdMap, [1 2]), 3)), then bicubic to 224x224."""
    result = mastiff_and_cat
    conv_map = np.asarray(result.activations[0], np.float64)
    for k in range(2):
        d_scores = np.asarray(result.gradients[0, k], np.float64)
        raw = (conv_map * d_scores.sum(axis=(0, 1))).sum(axis=2)
        raw = (raw - raw.min()) / (raw.max() - raw.min())
        expected = np.clip(jax.image.resize(raw.astype(np.float32), (224, 224), "bicubic"), 0, 1)
        np.testing.assert_allclose(result.map[0, k], expected, atol=1e-5)
        assert float(result.map[0, k].min()) >= 0.0 and float(result.map[0, k].max()) <= 1.0


@pytest.mark.oldest
def test_peaks_lie_on_the_animal_asked_for(mastiff_and_cat):
    def inside(heatmap, box):
        y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        return box[0] <= y < box[1] and box[2] <= x < box[3]

    maps_ = np.asarray(mastiff_and_cat.map[0])
    assert inside(maps_[0], DOG_BOX) and not inside(maps_[0], CAT_BOX)
    assert inside(maps_[1], CAT_BOX) and not inside(maps_[1], DOG_BOX)


def test_batch_of_mixed_targets_equals_single_calls(googlenet, cat, cat_dog):
    model, variables = googlenet
    batch = np.concatenate([cat_dog, cat, cat_dog])
    targets = np.array([MASTIFF, 285, TIGER_CAT])
    together = gj.grad_cam(model, variables, batch, targets)
    for i in range(3):
        alone = gj.grad_cam(model, variables, batch[i : i + 1], targets[i : i + 1])
        np.testing.assert_allclose(together.map[i], alone.map[0], atol=1e-4)
        np.testing.assert_allclose(together.scores[i], alone.scores[0], rtol=1e-4)


def test_k_targets_per_image_equal_k_calls(googlenet, cat_dog, mastiff_and_cat):
    model, variables = googlenet
    assert mastiff_and_cat.map.shape == (1, 2, 224, 224) and mastiff_and_cat.targets.tolist() == [[MASTIFF, TIGER_CAT]]
    for k, cls in enumerate((MASTIFF, TIGER_CAT)):
        alone = gj.grad_cam(model, variables, cat_dog, np.array([cls]))
        np.testing.assert_allclose(mastiff_and_cat.map[0, k], alone.map[0], atol=1e-5)
        np.testing.assert_allclose(mastiff_and_cat.gradients[0, k], alone.gradients[0], rtol=1e-5, atol=1e-9)


def test_none_targets_explain_the_top1_class(googlenet, cat_dog):
    result = gj.grad_cam(*googlenet, cat_dog)
    assert result.targets.tolist() == [TIGER_CAT] and result.map.shape == (1, 224, 224)


class Counting(nn.Module):
    """A tiny classifier that counts how often JAX traces it."""

    traces = [0]

    @nn.compact
    def __call__(self, x):
        Counting.traces[0] += 1
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


def test_jit_traces_once_per_input_shape():
    model = Counting()
    x = jnp.ones((2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    gj.grad_cam(model, variables, x, np.array([0, 1]), layer="conv")
    traced = Counting.traces[0]
    for seed in range(3):  # new values and new targets, same shapes: no new trace
        images = jax.random.uniform(jax.random.key(seed), (2, 8, 8, 3))
        gj.grad_cam(model, variables, images, np.array([seed % 3, 2]), layer="conv")
    assert Counting.traces[0] == traced
    gj.grad_cam(model, variables, jnp.ones((3, 8, 8, 3)), np.array([0, 1, 2]), layer="conv")
    assert Counting.traces[0] > traced


class Dead(nn.Module):
    """Its conv layer outputs zeros everywhere (zero kernel, zero bias): every map is constant."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3), kernel_init=nn.initializers.zeros, name="conv")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


@pytest.mark.parametrize("relu", [False, True])
def test_constant_maps_are_zeros_not_nan(relu):
    model = Dead()
    x = jnp.ones((2, 8, 8, 3))
    result = gj.grad_cam(model, model.init(jax.random.key(0), x), x, layer="conv", relu=relu)
    assert result.map.shape == (2, 8, 8)
    np.testing.assert_array_equal(result.map, 0.0)
    np.testing.assert_array_equal(maps.rescale(-jnp.ones((3, 5, 5))), 0.0)


def test_bfloat16_images_work(googlenet, cat_dog):
    result = gj.grad_cam(*googlenet, cat_dog.astype(jnp.bfloat16), np.array([MASTIFF]))
    assert result.map.dtype == jnp.float32 and bool(jnp.isfinite(result.map).all())


def test_overlay_blends_with_matlab_alpha():
    image = np.full((10, 12, 3), 100, np.uint8)
    heatmap = np.linspace(0, 1, 120, dtype=np.float32).reshape(10, 12)
    np.testing.assert_array_equal(gj.blend(image, heatmap, alpha=0.0), image)
    import matplotlib

    jet = np.round(matplotlib.colormaps["jet"](heatmap)[..., :3] * 255)
    np.testing.assert_allclose(gj.blend(image, heatmap, alpha=1.0), jet, atol=1)
    half = gj.blend(image, heatmap)
    np.testing.assert_allclose(half, 0.5 * image + 0.5 * jet, atol=1)
    assert gj.blend(np.zeros((40, 48, 3)), heatmap).shape == (40, 48, 3)  # map resized to the photo
    with pytest.raises(ValueError, match="alpha"):
        gj.blend(image, heatmap, alpha=1.5)


@pytest.mark.parametrize("size", [(7, 7), (224, 224)])
@pytest.mark.parametrize("out", [(375, 500), (100, 80), (1201, 33), (224, 224)])
def test_host_upsampling_is_jax_images_bicubic(size, out):
    """The overlays' resize (Pillow, no compile per photo size) against jax.image.resize itself."""
    heatmap = np.random.default_rng(sum(size + out)).random(size, np.float32)
    expected = np.clip(jax.image.resize(jnp.asarray(heatmap), out, "bicubic"), 0, 1)
    # white noise is the worst case for float32 rounding (smooth CAM maps agree to 1e-6)
    np.testing.assert_allclose(maps.upsample_on_host(heatmap, out), expected, atol=5e-5)

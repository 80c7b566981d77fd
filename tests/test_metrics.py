"""Explanation metrics against answers derived by hand: a model whose logits are a known linear
function of the pixels makes every deletion/insertion curve a cumulative sum, and a tiny CAM model
makes the randomisation cascade computable in numpy."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, stats

import gradcam_jax as gj
from gradcam_jax import metrics


class Linear(nn.Module):
    """logits = flatten(x) @ W + c: the logit of class k is sum_i W[i, k] x_i + c_k."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, name="head")(x.reshape(x.shape[0], -1))


W = np.array([3, -1, 2, 0.5, 1, 4, -2, 1, 0, 2, 1, -1, 5, 1, 0.5, 2], np.float32)  # class 0; class 1 = -W
C = np.array([0.5, -0.5], np.float32)
LINEAR_VARIABLES = {"params": {"head": {"kernel": jnp.asarray(np.stack([W, -W], 1) / 10), "bias": jnp.asarray(C)}}}
X = np.array(
    [[1, 2, 0, 3, 2, 1, 1, 0, 4, 1, 2, 2, 1, 0, 3, 1], [2, 0, 1, 1, 3, 2, 0, 1, 1, 1, 4, 0, 2, 3, 1, 0]], np.float32
)
IMAGES = X.reshape(2, 4, 4, 1)
MAPS = (
    np.stack([np.arange(16)[::-1], np.array([5, 9, 1, 14, 0, 7, 12, 3, 8, 15, 2, 11, 6, 13, 4, 10])]).reshape(2, 4, 4)
    / 15.0
)
TARGETS = np.array([0, 1], np.int32)


def logit(x, k):
    return (np.stack([W, -W], 1)[:, k] / 10) @ x.reshape(-1) + C[k]


def hand_curve(x, m, k, removed_value, steps, insert=False):
    """Logit of class k as pixels go, most salient first, ceil(16 / steps) per step."""
    order = np.argsort(-m.reshape(-1), kind="stable")
    per_step = -(-16 // steps)
    curve = []
    for t in range(steps + 1):
        changed = order[: min(t * per_step, 16)]
        y = (np.full(16, removed_value) if insert else x.reshape(-1).copy()).astype(np.float64)
        y[changed] = x.reshape(-1)[changed] if insert else removed_value
        curve.append(logit(y, k))
    return np.array(curve)


def hand_auc(curve):
    return (curve.sum() - (curve[0] + curve[-1]) / 2) / (len(curve) - 1)


@pytest.mark.parametrize("steps", [16, 5])
def test_deletion_curve_of_a_linear_model(steps):
    options = dict(steps=steps, baseline="black", score="logit")
    result = metrics.deletion(Linear(), LINEAR_VARIABLES, IMAGES, MAPS, TARGETS, **options)
    expected = np.stack([hand_curve(IMAGES[b], MAPS[b], TARGETS[b], 0.0, steps) for b in range(2)])
    np.testing.assert_allclose(np.asarray(result.scores), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(result.auc), [hand_auc(c) for c in expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(result.fractions), np.minimum(np.arange(steps + 1) * -(-16 // steps), 16) / 16
    )


def test_insertion_curve_of_a_linear_model():
    options = dict(steps=8, baseline=2.0, score="logit")
    result = metrics.insertion(Linear(), LINEAR_VARIABLES, IMAGES, MAPS, TARGETS, **options)
    expected = np.stack([hand_curve(IMAGES[b], MAPS[b], TARGETS[b], 2.0, 8, insert=True) for b in range(2)])
    np.testing.assert_allclose(np.asarray(result.scores), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(result.auc), [hand_auc(c) for c in expected], rtol=1e-5, atol=1e-6)


def test_deletion_softmax_score_and_tied_maps_go_in_reading_order():
    flat = np.zeros((2, 4, 4), np.float32)  # all tied: pixels go row by row
    result = metrics.deletion(Linear(), LINEAR_VARIABLES, IMAGES, flat, TARGETS, steps=4, baseline="black")
    for b in range(2):
        expected = []
        for t in range(5):
            y = IMAGES[b].reshape(-1).copy()
            y[: 4 * t] = 0
            logits = np.array([logit(y, 0), logit(y, 1)])
            expected.append(np.exp(logits[TARGETS[b]]) / np.exp(logits).sum())
        np.testing.assert_allclose(np.asarray(result.scores[b]), expected, rtol=1e-5)


def test_gaussian_blur_is_the_edge_normalised_rise_kernel():
    image = np.random.default_rng(0).uniform(0, 255, (1, 20, 24, 3)).astype(np.float32)
    blurred = np.asarray(metrics.gaussian_blur(jnp.asarray(image)))

    def scipy_blur(x):  # 11 taps (radius 5 = 1 sigma), zero outside, renormalised inside
        g = lambda a: ndimage.gaussian_filter(a, 5.0, truncate=1.0, mode="constant", cval=0.0)  # noqa: E731
        return g(x) / g(np.ones_like(x))

    expected = np.stack([scipy_blur(image[0, ..., c].astype(np.float64)) for c in range(3)], -1)
    np.testing.assert_allclose(blurred[0], expected, rtol=1e-4, atol=1e-3)


def test_confidence_change_by_hand():
    def softmax_score(x, k):
        logits = np.array([logit(x, 0), logit(x, 1)])
        return np.exp(logits[k]) / np.exp(logits).sum()

    result = metrics.confidence_change(Linear(), LINEAR_VARIABLES, IMAGES, MAPS, TARGETS)
    y = np.array([softmax_score(IMAGES[b], TARGETS[b]) for b in range(2)])
    o = np.array([softmax_score(IMAGES[b] * MAPS[b][..., None], TARGETS[b]) for b in range(2)])
    drop = np.maximum(y - o, 0) / y
    assert (o > y).any() and (o < y).any()  # one image of each kind, so both averages are tested
    np.testing.assert_allclose(np.asarray(result.drop), drop, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(result.increased), o > y)
    np.testing.assert_allclose(float(result.average_drop), 100 * drop.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(result.increase), 50.0)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, (3, 6, 7)).astype(np.float32)  # many ties
    b = a + rng.normal(0, 2, a.shape).astype(np.float32)
    ours = np.asarray(metrics.spearman(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(ours, [stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)], atol=1e-5)
    assert float(metrics.spearman(jnp.zeros((4, 4)), jnp.asarray(a[0, :4, :4]))) == 0.0  # constant: no order


class TinyCAM(nn.Module):
    @nn.compact
    def __call__(self, x):
        a = nn.relu(nn.Conv(4, (3, 3), padding="SAME", name="conv")(x))
        a = Identity(name="features")(a)
        return nn.Dense(3, name="head")(a.mean(axis=(1, 2)))


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x


def rescale(m):
    return (m - m.min()) / (m.max() - m.min())


def test_model_randomisation_cascade_by_hand():
    model = TinyCAM()
    images = np.random.default_rng(2).uniform(0, 1, (2, 6, 6, 2)).astype(np.float32)
    variables = model.init(jax.random.key(7), images)
    targets = np.array([0, 2])
    result = metrics.model_randomisation("cam", model, variables, images, targets, init_key=3, layer="features")
    assert result.layers == ("head", "conv")  # top first

    fresh = model.init(jax.random.key(3), images)  # what the cascade draws (documented: init_key)

    def features(p, x):  # relu(conv(x)), by hand (SAME padding, cross-correlation)
        k, b = np.asarray(p["conv"]["kernel"]), np.asarray(p["conv"]["bias"])
        padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        z = np.array(
            [[np.einsum("yxc,yxco->o", padded[i : i + 3, j : j + 3], k) + b for j in range(6)] for i in range(6)]
        )
        return np.maximum(z, 0)

    def cam(conv_params, head_params, b):
        return rescale(features(conv_params, images[b]) @ np.asarray(head_params["head"]["kernel"])[:, targets[b]])

    p, q = variables["params"], fresh["params"]
    for b in range(2):
        original = cam(p, p, b)
        head_random = cam(p, q, b)
        all_random = cam(q, q, b)
        expected = [stats.spearmanr(original.ravel(), m.ravel())[0] for m in (head_random, all_random)]
        np.testing.assert_allclose(result.correlations[:, b], expected, atol=1e-4)


def test_model_randomisation_of_a_head_independent_map_is_one():
    # Eigen-CAM never looks at the head: randomising it leaves the map, so the correlation is 1.
    model = TinyCAM()
    images = np.random.default_rng(4).uniform(0, 1, (1, 6, 6, 2)).astype(np.float32)
    variables = model.init(jax.random.key(0), images)
    check = lambda stops: metrics.model_randomisation(  # noqa: E731
        "eigen_cam", model, variables, images, np.array([1]), layer="features", stops=stops
    )
    np.testing.assert_allclose(check(["head"]).correlations, [[1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="unknown cascade stop"):
        check(["nope"])


def test_parameter_groups_of_googlenet_bottom_up(googlenet):
    model, variables = googlenet
    groups = metrics.parameter_groups(model, variables, np.zeros((1, 224, 224, 3), np.float32))
    stages = [f"inception_{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert groups == ["conv1", "conv2", *stages, "loss3"]


def test_grad_cam_beats_a_random_map_on_a_photo(googlenet, cat_dog):
    model, variables = googlenet
    result = gj.grad_cam(model, variables, cat_dog, score="logit", relu=True)
    noise = np.random.default_rng(0).random(result.map.shape).astype(np.float32)
    maps = jnp.concatenate([result.map, noise])
    images, targets = np.concatenate([cat_dog, cat_dog]), np.concatenate([result.targets, result.targets])
    deletion = metrics.deletion(model, variables, images, maps, targets, steps=16, batch_size=17)
    insertion = metrics.insertion(model, variables, images, maps, targets, steps=16, batch_size=17)
    assert deletion.auc[0] < deletion.auc[1]
    assert insertion.auc[0] > insertion.auc[1]

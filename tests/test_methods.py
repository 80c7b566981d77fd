"""Every explanation method against a reference worked out by hand, on a tiny model whose
gradients are written down in numpy (conv -> ReLU -> global average pool -> dense), then on real
photos and on both GoogLeNet variants.

The tiny model: x (4, 4, 2) -> z = conv3x3(x) + b (3 channels, SAME) -> A = relu(z) -> p = mean_ij A
-> logits = p W + c. So d logit_k / d A_ijo = W[o, k] / 16 everywhere, and the input gradient is
that pushed back through the ReLU gate [z > 0] and the convolution — all by hand below.
"""

from __future__ import annotations

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CAT_BOX, DOG_BOX

import gradcam_jax as gj
from gradcam_jax._src.methods.occlusion import interpolation_matrix, occlusion_grid
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from gradcam_jax.methods import METHODS

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"


class ReLU(nn.Module):  # a ReLU layer of its own, as GoogLeNet's
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class Tiny(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(3, (3, 3), padding="SAME", name="conv")(x)
        x = ReLU(name="relu")(x)
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


# Hand-set weights: small integers and halves, with mixed signs so ReLU gates and guided ReLUs bite.
KERNEL = np.array(
    [
        [[[1, 0, -1], [0, 1, 0]], [[0, -1, 1], [1, 0, 0]], [[-1, 0, 0], [0, 1, 1]]],
        [[[0, 1, 0], [-1, 0, 1]], [[1, 1, -1], [0, 0, 1]], [[0, -1, 0], [1, 0, -1]]],
        [[[1, 0, 0], [0, -1, 1]], [[0, 0, 1], [-1, 1, 0]], [[1, 1, 0], [0, 0, -1]]],
    ],
    np.float32,
)  # (3, 3, in 2, out 3)
CONV_BIAS = np.array([-1.0, 0.5, -2.0], np.float32)
HEAD = np.array([[1.0, -0.5, 2.0], [-1.0, 1.5, 0.5], [0.5, 1.0, -1.5]], np.float32)  # (features 3, classes 3)
HEAD_BIAS = np.array([0.1, -0.2, 0.3], np.float32)
IMAGES = np.array(
    [
        [
            [[3, 1], [0, 2], [1, 1], [2, 0]],
            [[1, 4], [2, 2], [0, 1], [3, 3]],
            [[0, 0], [1, 3], [4, 1], [2, 2]],
            [[2, 1], [0, 0], [1, 2], [3, 1]],
        ],
        [
            [[0, 2], [1, 0], [3, 3], [1, 1]],
            [[2, 2], [0, 1], [1, 0], [0, 4]],
            [[1, 3], [2, 0], [0, 2], [1, 1]],
            [[4, 0], [1, 1], [2, 3], [0, 2]],
        ],
    ],
    np.float32,
)  # (2, 4, 4, 2)
TARGETS = np.array([[0, 2], [1, 0]], np.int32)


def tiny_variables(conv_bias=CONV_BIAS):
    return {
        "params": {
            "conv": {"kernel": jnp.asarray(KERNEL), "bias": jnp.asarray(conv_bias)},
            "head": {"kernel": jnp.asarray(HEAD), "bias": jnp.asarray(HEAD_BIAS)},
        }
    }


# ---- the hand derivation, in numpy ----------------------------------------------------------


def np_conv(x, bias=CONV_BIAS):
    """z[i, j, o] = b[o] + sum_{dy, dx, c} x[i + dy - 1, j + dx - 1, c] K[dy, dx, c, o] (zero padding)."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    z = np.zeros((4, 4, 3))
    for i in range(4):
        for j in range(4):
            z[i, j] = np.einsum("yxc,yxco->o", padded[i : i + 3, j : j + 3], KERNEL) + bias
    return z


def np_forward(x, bias=CONV_BIAS):
    z = np_conv(x, bias)
    a = np.maximum(z, 0)
    return z, a, a.mean(axis=(0, 1)) @ HEAD + HEAD_BIAS


def np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def np_rescale(m):
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def layer_grad(x, k, score):
    """d score_k / d A (4, 4, 3): W[:, k] / 16 for logits; p_k (W[:, k] - W p) / 16 for softmax."""
    if score == "logit":
        return np.broadcast_to(HEAD[:, k] / 16, (4, 4, 3))
    p = np_softmax(np_forward(x)[2])
    return np.broadcast_to(p[k] * (HEAD[:, k] - HEAD @ p) / 16, (4, 4, 3))


def input_grad(x, k, guided=False, bias=CONV_BIAS):
    """d logit_k / d x (4, 4, 2): the upstream W[o, k] / 16 through the gate [z > 0] (and, guided,
    [W[o, k] > 0]) and back through the convolution's taps."""
    z = np_conv(x, bias)
    upstream = HEAD[:, k] / 16
    grad = np.zeros((6, 6, 2))  # padded
    for i in range(4):
        for j in range(4):
            gate = (z[i, j] > 0) & ((upstream > 0) if guided else True)
            grad[i : i + 3, j : j + 3] += np.einsum("yxco,o->yxc", KERNEL, gate * upstream)
    return grad[1:5, 1:5]


def for_all(fn):
    """(2, 2, 4, 4) reference maps: fn(image, class) over TARGETS."""
    return np.stack([np.stack([fn(IMAGES[b], int(k)) for k in TARGETS[b]]) for b in range(2)])


def explain(name, **options):
    return METHODS[name](Tiny(), tiny_variables(), IMAGES, TARGETS, **options)


def assert_maps(result, expected, atol=1e-5):
    assert result.map.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=atol)
    np.testing.assert_array_equal(np.asarray(result.targets), TARGETS)


# ---- the CAM family at a layer ------------------------------------------------------------------


def test_tiny_model_matches_hand_forward():
    logits = Tiny().apply(tiny_variables(), IMAGES)
    np.testing.assert_allclose(np.asarray(logits), [np_forward(x)[2] for x in IMAGES], rtol=1e-5)
    z = np.stack([np_conv(x) for x in IMAGES])
    assert (z > 0).any() and (z < 0).any()  # the ReLU gates do something


def test_cam_is_head_weights_times_activations():
    def reference(x, k):
        return np_rescale(np_forward(x)[1] @ HEAD[:, k])

    assert_maps(explain("cam", layer="relu"), for_all(reference))


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_grad_cam_plus_plus(score):
    def reference(x, k):
        a, g = np_forward(x)[1], layer_grad(x, k, score)
        g2, g3 = g**2, g**3
        alpha = np.where(g != 0, g2 / (2 * g2 + a.sum(axis=(0, 1)) * g3 + 1e-7), 0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
        return np_rescale(np.maximum(a @ weights, 0))

    assert_maps(explain("grad_cam_plus_plus", layer="relu", score=score), for_all(reference))


def test_xgrad_cam():
    def reference(x, k):
        a, g = np_forward(x)[1], layer_grad(x, k, "softmax")
        weights = (a * g).sum(axis=(0, 1)) / (a.sum(axis=(0, 1)) + 1e-7)
        return np_rescale(np.maximum(a @ weights, 0))

    assert_maps(explain("xgrad_cam", layer="relu", score="softmax"), for_all(reference))


def test_hires_cam():
    def reference(x, k):
        a, g = np_forward(x)[1], layer_grad(x, k, "softmax")
        return np_rescale(np.maximum((a * g).sum(-1), 0))

    assert_maps(explain("hires_cam", layer="relu", score="softmax"), for_all(reference))


def test_layer_cam():
    def reference(x, k):
        a, g = np_forward(x)[1], layer_grad(x, k, "softmax")
        return np_rescale(np.maximum((a * np.maximum(g, 0)).sum(-1), 0))

    assert_maps(explain("layer_cam", layer="relu", score="softmax"), for_all(reference))


def test_eigen_cam_is_the_first_principal_component():
    def reference(x, k):
        a = np_forward(x)[1].reshape(16, 3)
        a = a - a.mean(axis=0)
        projection = a @ np.linalg.svd(a)[2][0]
        if abs(projection.min()) > abs(projection.max()):
            projection = -projection
        return np_rescale(np.maximum(projection, 0)).reshape(4, 4)

    result = explain("eigen_cam", layer="relu")
    assert_maps(result, for_all(reference))
    # and pytorch-grad-cam's projection with the same sign correction, another implementation
    projection = pytest.importorskip("pytorch_grad_cam.utils.svd_on_activations")
    acts = np.stack([np_forward(x)[1] for x in IMAGES]).transpose(0, 3, 1, 2)  # (B, C, h, w)
    theirs = [np_rescale(np.maximum(p, 0)) for p in projection.get_2d_projection_with_sign_correction(acts)]
    np.testing.assert_allclose(np.asarray(result.map[:, 0]), theirs, atol=1e-5)


@pytest.mark.oldest
def test_score_cam_weights_are_masked_image_scores():
    fill = 1.0

    def reference(x, k):
        a = np_forward(x)[1]
        weights = [np_softmax(np_forward(fill + np_rescale(a[..., o])[..., None] * (x - fill))[2])[k] for o in range(3)]
        return np_rescale(np.maximum(a @ np.array(weights), 0))

    assert_maps(explain("score_cam", layer="relu", baseline=fill, batch_size=2), for_all(reference))


# ---- occlusion -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask, stride, clipping, blocks",
    [
        (2, 2, False, [(0, 2), (2, 4)]),  # whole masks only: top-left corners at 0 and 2
        (3, 2, True, [(0, 2), (1, 4)]),  # centred at 0 and 2, clipped at the edge
    ],
)
@pytest.mark.oldest
def test_occlusion_is_the_drop_in_softmax_score(mask, stride, clipping, blocks):
    value = 0.5

    def reference(x, k):
        clean = np_softmax(np_forward(x)[2])[k]
        grid = np.zeros((2, 2))
        for gy, (y0, y1) in enumerate(blocks):
            for gx, (x0, x1) in enumerate(blocks):
                occluded = x.copy()
                occluded[y0:y1, x0:x1] = value
                grid[gy, gx] = clean - np_softmax(np_forward(occluded)[2])[k]
        return np.kron(np_rescale(grid), np.ones((2, 2)))  # nearest upsampling, 2x2 -> 4x4

    options = dict(patch=mask, stride=stride, clipping=clipping, baseline=value, upsampling="nearest", batch_size=3)
    result = explain("occlusion", **options)
    assert_maps(result, for_all(reference))
    clean = [[np_softmax(np_forward(IMAGES[b])[2])[k] for k in TARGETS[b]] for b in range(2)]
    np.testing.assert_allclose(np.asarray(result.scores), clean, rtol=1e-5)


def test_occlusion_auto_sizes_follow_matlab():
    grid = occlusion_grid((224, 224), "auto", "auto", True)
    assert grid.mask == (45, 45)  # 20% of 224 = 44.8, rounded
    assert grid.step == (23, 23)  # 10% of 224 = 22.4, rounded up
    assert grid.shape == (10, 10)  # centres 0, 23, ..., 207
    assert tuple(grid.starts[1]) == (0 - 22, 23 - 22)
    assert occlusion_grid((224, 224), 45, 23, False).shape == (8, 8)  # corners 0, 23, ..., 161 (161 + 45 <= 224)


def test_occlusion_map_puts_each_value_at_its_mask_centre():
    # 5 masks of 4 pixels, stride 4, whole masks only, on 20 pixels: centres at 2, 6, 10, 14, 18
    # (pixel p spans [p, p + 1)). Cubic interpolation reproduces a linear ramp wherever its four
    # taps are inside the grid (pixel centres between 6 and 14); beyond the outer centres the edge
    # values extend.
    ramp = np.array([0.0, 4.0, 8.0, 12.0, 16.0])
    upsampled = interpolation_matrix(20, 5, 0, 4, 4, "bicubic") @ ramp
    centres = np.arange(20) + 0.5
    np.testing.assert_allclose(upsampled[6:14], centres[6:14] - 2, atol=1e-5)
    np.testing.assert_allclose(upsampled[[0, 1, 18, 19]], [0, 0, 16, 16], atol=1e-6)
    nearest = interpolation_matrix(20, 5, 0, 4, 4, "nearest") @ ramp
    np.testing.assert_array_equal(nearest, np.repeat(ramp, 4))  # each mask's own pixels


def test_occlusion_default_baseline_is_the_mean_pixel():
    # An image that *is* the mean pixel everywhere: occluding it changes nothing, so every drop is
    # 0 and the map is the constant-map convention: zeros.
    model, variables = Tiny(), tiny_variables()
    images = np.broadcast_to(np.asarray(gj.models.CAFFE_BGR_MEAN[::-1], np.float32), (1, 8, 8, 3))
    variables = {"params": {**variables["params"], "conv": {"kernel": jnp.ones((3, 3, 3, 3)), "bias": jnp.zeros(3)}}}
    result = METHODS["occlusion"](model, variables, images, patch=4, stride=4)
    assert np.asarray(result.map).max() == 0.0


# ---- gradients at the input -----------------------------------------------------------------------


@pytest.mark.oldest
def test_guided_backprop_gates_negative_gradients():
    def reference(x, k):
        return np_rescale(np.abs(input_grad(x, k, guided=True)).max(-1))

    result = explain("guided_backprop")
    assert_maps(result, for_all(reference))
    plain = for_all(lambda x, k: np_rescale(np.abs(input_grad(x, k)).max(-1)))
    assert np.abs(plain - np.asarray(result.map)).max() > 0.05  # guiding changed something
    # the swap is confined to the method: the model's own ReLU is plain again afterwards
    assert nn.relu is jax.nn.relu and jax.grad(lambda v: nn.relu(v).sum())(jnp.array([1.0])) == 1.0


def test_guided_backprop_refuses_a_model_without_swappable_relu():
    class MaxZero(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(jnp.maximum(x.mean(axis=(1, 2)), 0))

    variables = MaxZero().init(jax.random.key(0), IMAGES)
    with pytest.raises(ValueError, match="no ReLU"):
        METHODS["guided_backprop"](MaxZero(), variables, IMAGES)


def test_guided_grad_cam_is_guided_gradient_times_grad_cam():
    def reference(x, k):
        a = np_forward(x)[1]
        coarse = np_rescale(np.maximum(a @ (HEAD[:, k] / 16), 0))  # Grad-CAM, logits, ReLU
        return np_rescale(np.abs(input_grad(x, k, guided=True) * coarse[..., None]).max(-1))

    assert_maps(explain("guided_grad_cam", layer="relu"), for_all(reference))


def test_integrated_gradients_exact_for_a_gate_fixed_path():
    # With no conv bias and a black baseline, z(a x) = a z(x): every ReLU gate is the same all along
    # the path, the gradient is constant, and IG = x * gradient(x) exactly.
    def reference(x, k):
        return np_rescale(np.abs(x * input_grad(x, k, bias=0)).sum(-1))

    variables = tiny_variables(np.zeros(3, np.float32))
    result = METHODS["integrated_gradients"](Tiny(), variables, IMAGES, TARGETS, steps=4, batch_size=3)
    assert_maps(result, for_all(reference))


@pytest.mark.oldest
def test_integrated_gradients_completeness():
    # sum of attributions = logit(x) - logit(baseline), up to the midpoint rule's error (~1/steps)
    baseline = 0.5
    options = dict(baseline=baseline, steps=256, batch_size=64)
    result = METHODS["integrated_gradients"](Tiny(), tiny_variables(), IMAGES, TARGETS, **options)
    attributions = (IMAGES - baseline)[:, None] * np.asarray(result.gradients)
    for b in range(2):
        expected = np_forward(IMAGES[b])[2][TARGETS[b]] - np_forward(np.full((4, 4, 2), baseline))[2][TARGETS[b]]
        np.testing.assert_allclose(attributions[b].sum(axis=(1, 2, 3)), expected, atol=0.02)


def test_smoothgrad_without_noise_is_the_gradient():
    def reference(x, k):
        return np_rescale(np.abs(input_grad(x, k)).max(-1))

    assert_maps(explain("smoothgrad", noise=0.0, samples=2, batch_size=2), for_all(reference))


def test_smoothgrad_of_a_linear_model_is_its_gradient():
    # A conv bias of 1000 keeps every ReLU open under the noise: the model is linear, so every
    # noisy gradient, and their mean, equals the gradient at the image.
    bias = np.full(3, 1000.0, np.float32)
    result = METHODS["smoothgrad"](Tiny(), tiny_variables(bias), IMAGES, TARGETS, noise=0.2, samples=6, batch_size=4)
    expected = np.stack([np.stack([input_grad(IMAGES[b], int(k), bias=bias) for k in TARGETS[b]]) for b in range(2)])
    np.testing.assert_allclose(np.asarray(result.gradients), expected, atol=1e-5)
    noisy = METHODS["smoothgrad"](Tiny(), tiny_variables(), IMAGES, TARGETS, noise=0.2, samples=6)
    assert not np.allclose(
        np.asarray(noisy.gradients), np.asarray(explain("smoothgrad", noise=0.0, samples=1).gradients)
    )


def test_smoothgrad_takes_a_key_and_still_its_older_seed():
    def run(**options):
        return np.asarray(METHODS["smoothgrad"](Tiny(), tiny_variables(), IMAGES, TARGETS, samples=3, **options).map)

    with pytest.warns(DeprecationWarning, match="key="):
        older = run(seed=3)
    np.testing.assert_array_equal(run(key=3), older)
    np.testing.assert_array_equal(run(), run(key=0))  # the default noise is seed 0's, as before
    assert not np.allclose(run(key=3), run(key=4))
    with pytest.raises(TypeError, match="not both"):
        run(key=1, seed=1)


def test_saliency_and_input_x_gradient_by_hand():
    grads = np.stack([np.stack([input_grad(IMAGES[b], int(k)) for k in TARGETS[b]]) for b in range(2)])
    result = explain("saliency")
    np.testing.assert_allclose(np.asarray(result.gradients), grads, atol=1e-6)
    expected = np.stack([[np_rescale(np.abs(g).max(axis=-1)) for g in per_image] for per_image in grads])
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=1e-5)
    shifted = (IMAGES - np.array([1.0, -2.0], np.float32))[:, None] * grads  # baseline (1, -2)
    expected = np.stack([[np_rescale(np.abs(a).max(axis=-1)) for a in per_image] for per_image in shifted])
    np.testing.assert_allclose(np.asarray(explain("input_x_gradient", baseline=(1.0, -2.0)).map), expected, atol=1e-5)


def test_gradient_shap_of_a_linear_model_is_input_x_gradient():
    # every ReLU open (conv bias 1000): the gradient is the same at every path point, so each draw
    # gives (x - x') * grad and so does their mean, whatever the key
    variables = tiny_variables(np.full(3, 1000.0, np.float32))
    expected = METHODS["input_x_gradient"](Tiny(), variables, IMAGES, TARGETS, baseline=0.5)
    for key in (0, jax.random.key(7)):
        result = METHODS["gradient_shap"](
            Tiny(), variables, IMAGES, TARGETS, baseline=0.5, samples=5, key=key, batch_size=4
        )
        np.testing.assert_allclose(np.asarray(result.map), np.asarray(expected.map), atol=1e-5)
    # on the real (nonlinear) model the draws matter: a key gives its map, another key another one
    runs = [
        METHODS["gradient_shap"](
            Tiny(), tiny_variables(), IMAGES, TARGETS, baseline=0.5, samples=5, key=key, batch_size=4
        )
        for key in (1, 1, 2, jax.random.key(3), jax.random.PRNGKey(3))
    ]
    once, again, other, typed, raw = (np.asarray(r.map) for r in runs)
    np.testing.assert_array_equal(once, again)
    assert not np.allclose(once, other)
    np.testing.assert_array_equal(typed, raw)  # a key and its raw uint32 data are the same key


class Linear(nn.Module):
    """Scores = a dense layer on the flattened pixels: S(x) = sum w * x + b, additive over pixels."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_feature_ablation_and_shapley_sampling_of_a_linear_model_by_hand():
    # a linear model's score drops by sum over the patch of w * (x - baseline) when the patch goes to
    # the baseline, and each patch adds that much whatever is already back: every order's Shapley
    # value is the same number. Patches (4, 3) on 6 x 5: the last row and column of patches are short.
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 2)).astype(np.float32)
    variables = Linear().init(jax.random.key(0), x)
    w = np.asarray(variables["params"]["Dense_0"]["kernel"]).reshape(6, 5, 2, 3)
    baseline = np.array([0.5, -1.0], np.float32)
    targets = np.array([[1, 2], [0, 1]], np.int32)
    expected = np.zeros((2, 2, 6, 5))
    for b in range(2):
        for k, c in enumerate(targets[b]):
            contribution = (w[..., c] * (x[b] - baseline)).sum(axis=-1)  # (6, 5)
            for y0 in (0, 4):
                for x0 in (0, 3):
                    expected[b, k, y0 : y0 + 4, x0 : x0 + 3] = contribution[y0 : y0 + 4, x0 : x0 + 3].sum()
    signed = np.stack([[np_rescale(m) for m in per_image] for per_image in expected])
    positive = np.stack([[np_rescale(np.maximum(m, 0)) for m in per_image] for per_image in expected])
    options = dict(patch=(4, 3), baseline=(0.5, -1.0), batch_size=3)
    ablation = METHODS["feature_ablation"](Linear(), variables, x, targets, **options)
    np.testing.assert_allclose(np.asarray(ablation.map), signed, atol=1e-5)
    relu = METHODS["feature_ablation"](Linear(), variables, x, targets, relu=True, **options)
    np.testing.assert_allclose(np.asarray(relu.map), positive, atol=1e-5)
    for key in (0, 5):
        shapley = METHODS["shapley_sampling"](Linear(), variables, x, targets, samples=3, key=key, **options)
        np.testing.assert_allclose(np.asarray(shapley.map), signed, atol=1e-5)
    with pytest.raises(ValueError, match="samples"):
        METHODS["shapley_sampling"](Linear(), variables, x, targets, samples=0)


def test_shapley_sampling_orders_follow_the_key():
    # on the nonlinear tiny model the value of a patch depends on the patches already back
    runs = [
        METHODS["shapley_sampling"](Tiny(), tiny_variables(), IMAGES, TARGETS, patch=1, baseline=0.0, samples=2, key=k)
        for k in (1, 1, 2)
    ]
    once, again, other = (np.asarray(r.map) for r in runs)
    np.testing.assert_array_equal(once, again)
    assert not np.allclose(once, other)


def per_target(fn):
    """(2, 2, 4, 4) reference maps: fn(A (4, 4, 3) at the ReLU, logits (3,), class) over TARGETS."""
    return for_all(lambda x, k: fn(*np_forward(x)[1:], k))


def relu_rescale(m):
    return np_rescale(np.maximum(m, 0))


def test_grad_cam_elementwise_ablation_cam_and_eigen_grad_cam_by_hand():
    # at the ReLU layer the logit gradient is W[o, k] / 16 everywhere, and ablating channel o (to 0,
    # the layer's minimum being 0) lowers logit k by mean(A_o) W[o, k]
    def elementwise(a, _, k):
        return relu_rescale(np.maximum(a * HEAD[:, k] / 16, 0).sum(axis=-1))

    def ablation(a, logits, k):
        return relu_rescale(a @ (a.mean(axis=(0, 1)) * HEAD[:, k] / logits[k]))

    def eigen_grad(a, _, k):
        x = (a * HEAD[:, k] / 16).reshape(16, 3)
        x = x - x.mean(axis=0)
        projection = x @ np.linalg.svd(x)[2][0]
        projection = -projection if abs(projection.min()) > abs(projection.max()) else projection
        return relu_rescale(projection.reshape(4, 4))

    for name, fn in [("grad_cam_elementwise", elementwise), ("ablation_cam", ablation), ("eigen_grad_cam", eigen_grad)]:
        np.testing.assert_allclose(np.asarray(explain(name, layer="relu").map), per_target(fn), atol=1e-4, err_msg=name)


def test_fem_and_kpca_cam_by_hand():
    sklearn = pytest.importorskip("sklearn.decomposition")

    def fem(a, *_):
        weights = (a > a.mean(axis=(0, 1)) + 0.5 * a.std(axis=(0, 1))).mean(axis=(0, 1))
        return relu_rescale(a @ weights)

    np.testing.assert_allclose(np.asarray(explain("fem", layer="relu", k=0.5).map), per_target(fem), atol=1e-5)
    for kernel in ("sigmoid", "rbf"):

        def kpca(a, *_, kernel=kernel):
            x = a.reshape(16, 3) - a.reshape(16, 3).mean(axis=0)
            return relu_rescale(sklearn.KernelPCA(1, kernel=kernel).fit_transform(x).reshape(4, 4))

        got = explain("kpca_cam", layer="relu", kernel=kernel).map
        np.testing.assert_allclose(np.asarray(got), per_target(kpca), atol=1e-4, err_msg=kernel)


def finite_difference(f, z, step=1e-6):
    """d f / d z (len z,) by central differences, float64."""
    return np.array([(f(z + step * e) - f(z - step * e)) / (2 * step) for e in np.eye(len(z))])


def test_shapley_cam_and_finer_cam_by_hand():
    # the logits are z = mean_ij A W + c, so d/dA_ijo = (d/dz) . W[o] / 16, and scaling A by (1 + t)
    # moves z to z + t (z - c): H A is the t-derivative of the softmax gradient along that line
    def shapley(a, logits, k):
        def gradient(t):
            p = np_softmax(logits + t * (logits - HEAD_BIAS))
            return p[k] * (HEAD[:, k] - HEAD @ p) / 16

        hessian_a = (gradient(1e-5) - gradient(-1e-5)) / 2e-5
        return relu_rescale(a @ (gradient(0.0) - 0.5 * hessian_a))

    def finer(a, logits, k):
        others = [j for j in range(3) if j != k]  # 3 classes: both others are the most similar

        def score(z):
            p = np_softmax(z)[others]
            return (p * (z[k] - z[others])).sum() / (p.sum() + 1e-9)

        return relu_rescale(a @ (HEAD @ finite_difference(score, logits.astype(np.float64)) / 16))

    got = explain("shapley_cam", layer="relu", score="softmax").map
    np.testing.assert_allclose(np.asarray(got), per_target(shapley), atol=1e-4)
    np.testing.assert_allclose(np.asarray(explain("finer_cam", layer="relu").map), per_target(finer), atol=1e-4)


def test_is_cam_by_hand():
    # fill 0: the image times each channel's min-max scaled mask (the layer has the input's size, so
    # no upsampling), times torchcam's multipliers 1/2 and 1/2 + 2/2 for two samples
    def is_cam(x, k):
        a, logits = np_forward(x)[1:]
        masks = (a - a.min(axis=(0, 1))) / (a.max(axis=(0, 1)) - a.min(axis=(0, 1)) + 1e-8)  # (4, 4, 3)
        gains = [np.mean([np_forward(m * masks[..., c : c + 1] * x)[2][k] for m in (0.5, 1.5)]) for c in range(3)]
        return relu_rescale(a @ np_softmax(np.array(gains) - logits[k]))

    got = explain("is_cam", layer="relu", baseline=0.0, samples=2).map
    np.testing.assert_allclose(np.asarray(got), for_all(is_cam), atol=1e-5)


@pytest.mark.oldest
def test_fullgrad_by_hand():
    # one biased convolution at the input's size (no resize): d logit_k / d z = [z > 0] W[o, k] / 16;
    # each channel of |x * dx| and of |b * dz| min-max scaled on its own, summed, scaled
    def fullgrad(x, k):
        z = np_conv(x)
        gz = (z > 0) * HEAD[:, k] / 16
        pixels, layer = np.abs(x * input_grad(x, k)), np.abs(CONV_BIAS * gz)
        channels = [pixels[..., c] for c in range(2)] + [layer[..., o] for o in range(3)]
        return np_rescale(sum(np_rescale(m) for m in channels))

    assert_maps(explain("fullgrad"), for_all(fullgrad))


@pytest.mark.oldest
def test_ss_cam_by_hand():
    # fill 0: the image times (mask + noise) for each channel and draw, the noise drawn with
    # jax.random as the doc says (draw i = sample * 3 + channel, one for both images); logit gains
    # averaged, softmaxed
    def ss_cam(x, k):
        a, logits = np_forward(x)[1:]
        masks = (a - a.min(axis=(0, 1))) / (a.max(axis=(0, 1)) - a.min(axis=(0, 1)) + 1e-8)  # (4, 4, 3)
        key = jax.random.key(5)
        noise = [[0.5 * np.asarray(jax.random.normal(jax.random.fold_in(key, s * 3 + c), (4, 4))) for c in range(3)] for s in range(2)]  # fmt: skip
        gains = [np.mean([np_forward((masks[..., c] + noise[s][c])[..., None] * x)[2][k] for s in range(2)]) for c in range(3)]  # fmt: skip
        return relu_rescale(a @ np_softmax(np.array(gains) - logits[k]))

    expected = np.stack([np.stack([ss_cam(IMAGES[b], int(k)) for k in TARGETS[b]]) for b in range(2)])
    got = explain("ss_cam", layer="relu", baseline=0.0, samples=2, noise=0.5, key=5).map
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


# ---- calling convention ----------------------------------------------------------------------------


TINY_OPTIONS = {
    "cam": {"layer": "relu"},
    "grad_cam": {"layer": "relu"},
    "grad_cam_plus_plus": {"layer": "relu"},
    "xgrad_cam": {"layer": "relu"},
    "hires_cam": {"layer": "relu"},
    "layer_cam": {"layer": "relu"},
    "eigen_cam": {"layer": "relu"},
    "score_cam": {"layer": "relu", "baseline": 0.0},
    "guided_grad_cam": {"layer": "relu"},
    "occlusion": {"patch": 2, "stride": 2, "baseline": 0.0},
    "integrated_gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "gradient_shap": {"samples": 2},
    "grad_cam_elementwise": {"layer": "relu"},
    "eigen_grad_cam": {"layer": "relu"},
    "ablation_cam": {"layer": "relu"},
    "kpca_cam": {"layer": "relu"},
    "fem": {"layer": "relu"},
    "finer_cam": {"layer": "relu"},
    "shapley_cam": {"layer": "relu", "score": "softmax"},
    "is_cam": {"layer": "relu", "baseline": 0.0, "samples": 2},
    "smooth_grad_cam_plus_plus": {"layer": "relu", "samples": 2},
    "feature_ablation": {"patch": 2, "baseline": 0.0},
    "shapley_sampling": {"patch": 2, "baseline": 0.0, "samples": 2},
    "ss_cam": {"layer": "relu", "baseline": 0.0, "samples": 2},
    "lime": {"patch": 2, "baseline": 0.0, "samples": 8},
    "kernel_shap": {"patch": 2, "baseline": 0.0, "samples": 8},
}
RGB_ONLY = {"image_lime"}  # these 2-channel images are not photos: tests/test_surrogates.py


# the attention methods: test_transformers.py
@pytest.mark.parametrize("name", sorted(set(METHODS) - set(ATTENTION_METHODS) - RGB_ONLY))
def test_calling_convention(name):
    model, variables = Tiny(), tiny_variables()
    options = TINY_OPTIONS.get(name, {})
    top1 = np.argmax([np_forward(x)[2] for x in IMAGES], axis=-1)
    implicit = METHODS[name](model, variables, IMAGES, **options)
    assert implicit.map.shape == (2, 4, 4) and implicit.map.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(implicit.targets), top1)
    flat = METHODS[name](model, variables, IMAGES, TARGETS[:, 0], **options)
    assert flat.map.shape == (2, 4, 4) and flat.scores.shape == (2,)
    both = METHODS[name](model, variables, IMAGES, TARGETS, **options)
    assert both.map.shape == (2, 2, 4, 4) and both.scores.shape == (2, 2)
    np.testing.assert_allclose(np.asarray(both.map[:, 0]), np.asarray(flat.map), atol=1e-5)
    m = np.asarray(both.map)
    assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1


SAMPLED = sorted(name for name in set(METHODS) - RGB_ONLY if "key" in inspect.signature(METHODS[name]).parameters)


@pytest.mark.parametrize("name", SAMPLED)
def test_a_sampled_map_depends_on_the_key_not_on_the_batch(name):
    # each draw is shared by the batch's images: the map of an image is the same alone, in a batch,
    # and whatever `batch_size` slices that batch into
    model, variables = Tiny(), tiny_variables()
    images = np.concatenate([IMAGES, IMAGES[::-1, ::-1] * 0.5])  # 4 distinct images
    targets = np.concatenate([TARGETS, TARGETS])
    options = {**TINY_OPTIONS.get(name, {}), "key": 5}
    whole = np.asarray(METHODS[name](model, variables, images, targets, **options).map)
    sliced = np.asarray(METHODS[name](model, variables, images, targets, batch_size=1, **options).map)
    np.testing.assert_allclose(sliced, whole, atol=1e-5)
    for b in (0, 3):
        alone = METHODS[name](model, variables, images[b : b + 1], targets[b : b + 1], **options).map
        np.testing.assert_allclose(np.asarray(alone)[0], whole[b], atol=1e-5, err_msg=str(b))
    if (
        name != "smooth_grad_cam_plus_plus"
    ):  # its noise moves only gradients, constant under Tiny's mean-pooled linear head
        other_key = np.asarray(METHODS[name](model, variables, images, targets, **{**options, "key": 6}).map)
        assert np.abs(other_key - whole).max() > 1e-3  # the key does matter


# ---- real photos and both GoogLeNet variants --------------------------------------------------------

PHOTO_OPTIONS = {
    "score_cam": {"layer": "inception_5b-relu_pool_proj", "batch_size": 32},  # 128 channels, not 1024
    "occlusion": {"patch": 56, "stride": 28, "clipping": False, "batch_size": 25},  # 7 x 7 masks
}
CAM_FAMILY = ["cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "score_cam", "occlusion"]


def peak(m):
    return np.unravel_index(np.argmax(m), m.shape)


def inside(point, box):
    return box[0] <= point[0] < box[1] and box[2] <= point[1] < box[3]


def mass(m, box):
    return m[box[0] : box[1], box[2] : box[3]].sum() / m.sum()


@pytest.mark.parametrize("name", CAM_FAMILY)
def test_cam_family_peaks_on_the_animal_asked_for(googlenet, cat_dog, name):
    model, variables = googlenet
    result = METHODS[name](model, variables, cat_dog, np.array([[DOG, CAT]]), **PHOTO_OPTIONS.get(name, {}))
    dog, cat = np.asarray(result.map[0])
    assert inside(peak(dog), DOG_BOX), peak(dog)
    assert inside(peak(cat), CAT_BOX), peak(cat)


def test_cam_weights_are_the_dense_kernel(googlenet, cat_dog):
    model, variables = googlenet
    result = METHODS["cam"](model, variables, cat_dog, np.array([[DOG, CAT]]))
    kernel = np.asarray(variables["params"]["loss3"]["classifier"]["kernel"])  # (1024, 1000)
    weights = np.asarray(result.gradients).sum(axis=(2, 3))  # (1, 2, 1024)
    np.testing.assert_allclose(weights[0], kernel[:, [DOG, CAT]].T, rtol=1e-4, atol=1e-6)
    # and so CAM is Grad-CAM on logits (the weights differ by the constant 7 x 7)
    grad_cam = gj.grad_cam(model, variables, cat_dog, np.array([[DOG, CAT]]), score="logit")
    np.testing.assert_allclose(np.asarray(result.map), np.asarray(grad_cam.map), atol=1e-4)


def test_guided_grad_cam_is_class_discriminative(googlenet, cat_dog):
    model, variables = googlenet
    dog, cat = np.asarray(METHODS["guided_grad_cam"](model, variables, cat_dog, np.array([[DOG, CAT]])).map[0])
    assert mass(dog, DOG_BOX) > 2 * mass(cat, DOG_BOX)
    assert mass(cat, CAT_BOX) > 2 * mass(dog, CAT_BOX)


def test_eigen_cam_is_class_agnostic_and_on_an_animal(googlenet, cat_dog):
    model, variables = googlenet
    result = METHODS["eigen_cam"](model, variables, cat_dog, np.array([[DOG, CAT]]))
    dog, cat = np.asarray(result.map[0])
    np.testing.assert_array_equal(dog, cat)
    assert inside(peak(dog), DOG_BOX) or inside(peak(dog), CAT_BOX)


def random_variables(model, images, seed=0):
    """Random variables for `model` without running its initialisers (XLA takes ~20 s to compile
    GoogLeNet's `init` here): He-normal kernels, zero biases, BatchNorm as freshly initialised."""
    shapes = jax.eval_shape(model.init, jax.random.key(seed), images)
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    rng = np.random.default_rng(seed)

    def value(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if "kernel" in name:
            return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        return (
            np.ones(leaf.shape, np.float32) if ("scale" in name or "var" in name) else np.zeros(leaf.shape, np.float32)
        )

    return jax.tree_util.tree_unflatten(tree, [value(p, leaf) for p, leaf in leaves])


@pytest.fixture(scope="module")
def torchvision_googlenet():
    """torchvision's GoogLeNet with random variables, on a small 96 x 96 input (the global pool
    takes any size; the last grid is 3 x 3), so the methods run quickly."""
    model = gj.TorchvisionGoogLeNet()
    images = np.random.default_rng(0).uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
    return model, random_variables(model, images), images


# One method per code path, to keep compile time down (the BVLC variant runs every method above):
# layer gradients, a forward-only layer method, masked forward passes, input gradients along a
# path, and guided ReLUs swapped inside ConvBN blocks together with Grad-CAM.
VARIANT_RUNS = {
    "grad_cam_plus_plus": {},
    "score_cam": {"layer": "inception_5b-relu_5x5", "batch_size": 64},
    "occlusion": {"patch": 48, "stride": 48, "clipping": False},
    "integrated_gradients": {"steps": 2, "batch_size": 2},
    "guided_grad_cam": {},
}


@pytest.mark.parametrize("name", sorted(VARIANT_RUNS))
def test_runs_on_the_torchvision_variant(torchvision_googlenet, name):
    model, variables, images = torchvision_googlenet
    result = METHODS[name](model, variables, images, **VARIANT_RUNS[name])
    m = np.asarray(result.map)
    assert m.shape == (1, 96, 96) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    assert m.max() > 0  # a real map, not the constant fallback

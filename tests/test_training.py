"""Explanations inside a loss: every method's map differentiated with respect to the weights and the
pixels, against central finite differences in float64; no NaN where a map is constant; the loss
helpers of `gradcam_jax.training` against formulas worked out by hand; the shortcut scenes."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from gradcam_jax.methods import METHODS
from gradcam_jax.toys import classifier as toy
from gradcam_jax.training import input_gradient_penalty, outside_share
from tests.conftest import ROOT


class Net(nn.Module):
    """A tiny CNN in float64: conv -> ReLU -> strided conv -> ReLU -> mean -> dense."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), param_dtype=jnp.float64, name="conv1")(x))
        x = nn.relu(nn.Conv(6, (3, 3), strides=2, param_dtype=jnp.float64, name="conv2")(x))
        return nn.Dense(3, param_dtype=jnp.float64, name="head")(x.mean(axis=(1, 2)))


# Small settings so that each method compiles and runs in a second or two; layer "conv2" is 4x4.
OPTIONS = {
    "grad_cam": dict(layer="conv2", score="logit", relu=True),
    "cam": dict(layer="conv2"),
    "grad_cam_plus_plus": dict(layer="conv2"),
    "xgrad_cam": dict(layer="conv2"),
    "hires_cam": dict(layer="conv2"),
    "layer_cam": dict(layer="conv2"),
    "eigen_cam": dict(layer="conv2"),
    "score_cam": dict(layer="conv2", baseline=0.5),
    "occlusion": dict(patch=3, stride=2, baseline=0.5),
    "guided_backprop": dict(score="softmax"),
    "guided_grad_cam": dict(layer="conv2"),
    "integrated_gradients": dict(steps=3, batch_size=3, baseline=0.5),
    "smoothgrad": dict(samples=2, batch_size=2),
    "saliency": dict(),
    "input_x_gradient": dict(baseline=0.5),
    "deeplift": dict(baseline=0.5),
    "gradient_shap": dict(samples=2, batch_size=4, baseline=0.5),
    "grad_cam_elementwise": dict(layer="conv2"),
    "eigen_grad_cam": dict(layer="conv2"),
    "ablation_cam": dict(layer="conv2"),
    "kpca_cam": dict(layer="conv2"),
    "fem": dict(layer="conv2"),
    "finer_cam": dict(layer="conv2"),
    "shapley_cam": dict(layer="conv2", score="softmax"),
    "is_cam": dict(layer="conv2", baseline=0.5, samples=2),
    "smooth_grad_cam_plus_plus": dict(layer="conv2", samples=2, noise=0.1),
    "feature_ablation": dict(patch=3, baseline=0.5),
    "shapley_sampling": dict(patch=3, baseline=0.5, samples=2),
    "fullgrad": dict(),
    "ss_cam": dict(layer="conv2", baseline=0.5, samples=2, noise=0.1),
    "lime": dict(patch=3, baseline=0.5, samples=24),  # more samples than patches: one Lasso solution
    "kernel_shap": dict(patch=3, baseline=0.5, samples=8),
    "image_lime": dict(segments=4, samples=8, segmentation="grid"),  # superpixels of noise: one segment
}


# Maps that are not differentiable: LRP's rules are modified gradients (stop_gradient inside), so
# jax.grad of their maps is refused in one line rather than silently wrong.
NOT_DIFFERENTIABLE = {"lrp"}


def test_every_method_is_covered():  # the attention methods need a ViT: tests/test_transformers.py
    assert set(OPTIONS) | set(ATTENTION_METHODS) | NOT_DIFFERENTIABLE == set(METHODS)


@pytest.mark.parametrize("wrt", ["variables", "images"])
def test_differentiating_an_lrp_map_is_refused_in_one_line(wrt):
    with jax.enable_x64(True):
        model = Net()
        images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3), jnp.float64)
        variables = model.init(jax.random.key(0), images)
        targets = jnp.array([0, 2])
        forward = METHODS["lrp"](model, variables, images, targets)  # the map itself runs
        assert forward.map.shape == (2, 8, 8)

        def loss(variables, images):
            return METHODS["lrp"](model, variables, images, targets).map.sum()

        with pytest.raises(TypeError, match="lrp maps cannot be differentiated"):
            jax.grad(loss, argnums=0 if wrt == "variables" else 1)(variables, images)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_map_gradient_matches_finite_differences(name):
    """d/dθ and d/dx of sum(map * w), jitted, against central differences along random directions
    (biases drawn away from 0 and fills of 0.5, so that no ReLU sits exactly at its kink); then the
    same compiled gradient at zero weights, where every map is constant, is finite."""
    method = METHODS[name]
    with jax.enable_x64(True):
        model = Net()
        keys = jax.random.split(jax.random.key(0), 6)
        images = jax.random.normal(keys[0], (2, 8, 8, 3), jnp.float64)
        variables = model.init(keys[1], images)
        variables = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(keys[2], a.shape, a.dtype), variables)
        weights = jax.random.uniform(keys[3], (2, 8, 8), jnp.float64)
        targets = jnp.array([0, 2])

        def loss(variables, images):
            return (method(model, variables, images, targets, **OPTIONS[name]).map * weights).sum()

        gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))
        g_variables, g_images = gradient(variables, images)
        assert loss(variables, images).dtype == jnp.float64  # the check really runs in float64
        d_variables = jax.tree.map(lambda a: jax.random.normal(keys[4], a.shape, a.dtype), variables)
        d_images = jax.random.normal(keys[5], images.shape, jnp.float64)
        step = 1e-6
        along_variables = (
            loss(jax.tree.map(lambda a, d: a + step * d, variables, d_variables), images)
            - loss(jax.tree.map(lambda a, d: a - step * d, variables, d_variables), images)
        ) / (2 * step)
        along_images = (loss(variables, images + step * d_images) - loss(variables, images - step * d_images)) / (
            2 * step
        )
        predicted = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(g_variables), jax.tree.leaves(d_variables)))
        np.testing.assert_allclose(predicted, along_variables, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(jnp.vdot(g_images, d_images), along_images, rtol=1e-5, atol=1e-8)

        zeros = jax.tree.map(jnp.zeros_like, variables)
        assert float(jnp.abs(method(model, zeros, images, targets, **OPTIONS[name]).map).max()) == 0.0
        for g in jax.tree.leaves(gradient(zeros, images)):
            assert bool(jnp.isfinite(g).all()), name


def test_outside_share_by_hand():
    maps = jnp.array([[[0.0, 1.0], [0.5, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])  # (2, 2, 2); the 2nd is constant
    allowed = jnp.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], bool)
    # image 0: mass 2, outside the top row 0.5 + 0.5 = 1 -> 1/2; image 1: no mass, as if spread
    # evenly -> the share of pixels outside its one allowed pixel, 3/4
    np.testing.assert_allclose(outside_share(maps, allowed), [0.5, 0.75])
    # (B, K, H, W): two classes of image 0 share its region; the second map is all outside: 3/3
    two = jnp.stack([maps[0], jnp.array([[0.0, 0.0], [1.0, 2.0]])])[None]
    np.testing.assert_allclose(outside_share(two, allowed[:1]), [[0.5, 1.0]])
    # d share / d M_ij = ((1 - R_ij) - share) / sum M: here (0 - 1/2) / 2 inside, (1 - 1/2) / 2 outside
    grad = jax.grad(lambda m: outside_share(m, allowed).sum())(maps)
    np.testing.assert_allclose(grad[0], [[-0.25, -0.25], [0.25, 0.25]])
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad[1]).max()) == 0.0


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_input_gradient_penalty_by_hand():
    """For logits = x W + b: d/dx sum_k log p_k = sum_k W[:, k] - K W p, worked out in numpy."""
    model = Linear()
    images = np.random.default_rng(0).standard_normal((2, 2, 2, 2)).astype(np.float32)
    variables = model.init(jax.random.key(0), images)
    w = np.asarray(variables["params"]["Dense_0"]["kernel"], np.float64)  # (8, 3)
    b = np.asarray(variables["params"]["Dense_0"]["bias"], np.float64)
    irrelevant = np.array([[[1, 0], [0, 1]], [[0, 0], [1, 1]]], np.float32)
    x = images.reshape(2, -1).astype(np.float64)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    gradient = (w.sum(1)[None] - 3 * p @ w.T).reshape(images.shape)
    expected = ((irrelevant[..., None] * gradient) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(input_gradient_penalty(model, variables, images, irrelevant), expected, rtol=1e-5)


def test_shortcut_scenes():
    informative = toy.make_shortcut_batch(jax.random.key(0), 64, informative=True)
    neutral = toy.make_shortcut_batch(jax.random.key(0), 64, informative=False)
    assert informative.images.shape == (64, toy.IMAGE_SIZE, toy.IMAGE_SIZE, 3)
    colours = np.asarray(toy.PATCH_COLOURS)
    for batch, gives_away in ((informative, True), (neutral, False)):
        patches = np.asarray(batch.patches)
        assert (patches.sum(axis=(1, 2)) == toy.PATCH**2).all()
        assert not (patches & np.asarray(batch.masks)).any()  # the object mask never covers the patch
        colour = np.asarray(batch.images)[patches].reshape(64, toy.PATCH**2, 3)[:, 0]
        matches = (colour == colours[np.asarray(batch.labels)]).all(axis=1)
        assert matches.all() if gives_away else 0.1 < matches.mean() < 0.6  # chance is 1/3


def test_training_page_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "training.md").read_text(), flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:  # one namespace, as a reader runs them in order
        exec(compile(block, "docs/training.md", "exec"), namespace)

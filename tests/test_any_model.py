"""Explaining models that know nothing about explanations: linen models defined here, none of which
calls `perturb` or `sow`, tapped by path; a tiny ViT through a token `reshape`; GoogLeNet through the
same generic taps (the pages' examples run in tests/test_docs.py).

References are independent of the code under test: activations come from flax's own
`capture_intermediates`, gradients from central finite differences (float64) of the part of the
network after the layer, written by hand or re-assembled from the model's submodules.
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.adapters.tokens import tokens_to_grid
from gradcam_jax.models import googlenet

ROOT = Path(__file__).resolve().parent.parent


# --- models, as a user would write them ---------------------------------------------------------


class SmallCNN(nn.Module):
    """Auto-named submodules: Conv_0, Conv_1, Conv_2, Dense_0."""

    num_classes: int = 5

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        x = nn.Conv(12, (3, 3))(x)
        return nn.Dense(self.num_classes)(nn.relu(x).mean(axis=(1, 2)))


class TupleCNN(SmallCNN):
    """SmallCNN's network and parameters, but `apply` returns (logits, extra)."""

    @nn.compact
    def __call__(self, x):
        features = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(features))
        x = nn.Conv(12, (3, 3))(x)
        return nn.Dense(self.num_classes)(nn.relu(x).mean(axis=(1, 2))), {"features": features}


def small_cnn_tail(params, activation):
    """SmallCNN after Conv_2, by hand: ReLU, global average pool, Dense_0."""
    dense = params["Dense_0"]
    return jnp.maximum(activation, 0).mean(axis=(1, 2)) @ dense["kernel"] + dense["bias"]


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return x + nn.relu(nn.Conv(self.features, (3, 3), name="conv")(x))


class Stage(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (1, 1), name="project")(x)
        return Block(self.features, name="block1")(Block(self.features, name="block0")(x))


class Backbone(nn.Module):
    def setup(self):  # setup-style submodules: their paths come from the attribute names
        self.stage1, self.stage2, self.stage3 = Stage(4), Stage(6), Stage(8)

    def __call__(self, x):
        return self.stage3(self.stage2(self.stage1(x)))


class Nested(nn.Module):
    """Paths like backbone/stage3/block1/conv."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="head")(Backbone(name="backbone")(x).mean(axis=(1, 2)))


def nested_tail(params, activation):
    """Nested after backbone/stage3/block0, re-assembled from its own submodules, run untapped."""
    x = Block(8).apply({"params": params["backbone"]["stage3"]["block1"]}, activation)
    return nn.Dense(3).apply({"params": params["head"]}, x.mean(axis=(1, 2)))


# --- independent references ---------------------------------------------------------------------


def captured(model, variables, images, path):
    """The output of the submodule at `path`, by flax's own `capture_intermediates`."""
    _, state = model.apply(
        variables,
        images,
        mutable=["intermediates"],
        capture_intermediates=lambda module, method: method == "__call__" and "/".join(module.path) == path,
    )
    node = state["intermediates"]
    for part in path.split("/"):
        node = node[part]
    return node["__call__"][0]


def to64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def directional_fd(score_of, activation, direction, eps=1e-6):
    """Central finite difference, in float64, of `score_of(activation)` (B,) along `direction`
    (a small step, so that it rarely straddles a ReLU kink in the layers after the tap)."""
    with jax.enable_x64(True):
        a, v = np.asarray(activation, np.float64), np.asarray(direction, np.float64)
        return np.asarray((score_of(a + eps * v) - score_of(a - eps * v)) / (2 * eps))


def softmax_score(logits_of, targets):
    """score(activation) (B,): softmax probability of class targets[b] for image b."""
    return lambda a: jax.nn.softmax(logits_of(a), axis=-1)[np.arange(len(targets)), targets]


def check_gradients_by_fd(gradients, targets, score_logits, activation, seed=0, directions=3):
    """gradients (B, K, ...) agree with finite differences along random and one-hot directions."""
    rng = np.random.default_rng(seed)
    for k in range(targets.shape[1]):
        score = softmax_score(score_logits, targets[:, k])
        g = np.asarray(gradients[:, k], np.float64)
        probes = [rng.standard_normal(activation.shape) for _ in range(directions)]
        # one-hot probes at the largest gradient entries: a misplaced entry cannot cancel out
        top = np.argsort(np.abs(g[0]).ravel())[-2:]
        for index in top:
            probe = np.zeros(activation.shape)
            probe[(0, *np.unravel_index(index, g.shape[1:]))] = 1.0
            probes.append(probe)
        for v in probes:
            analytic = (g * v).reshape(len(g), -1).sum(-1)
            numeric = directional_fd(score, activation, v)
            scale = np.abs(g).reshape(len(g), -1).max(-1) * np.abs(v).reshape(len(v), -1).sum(-1) ** 0.5
            np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-4 * scale.max())


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(1), (2, 12, 12, 3), jnp.float32, 0, 255) / 255.0


@pytest.fixture(scope="module")
def small(images):
    model = SmallCNN()
    return model, model.init(jax.random.key(0), images)


# --- linen models ---------------------------------------------------------------------------------


def test_auto_named_layer_matches_capture_and_finite_differences(small, images):
    model, variables = small
    targets = np.array([[1, 3], [4, 0]], np.int32)
    result = gj.grad_cam(model, variables, images, targets, layer="Conv_2")
    activation = captured(model, variables, images, "Conv_2")
    np.testing.assert_allclose(result.activations, activation, rtol=1e-6, atol=1e-6)
    params = to64(variables["params"])
    # the hand-written tail is the model: same logits
    np.testing.assert_allclose(
        small_cnn_tail(variables["params"], activation), model.apply(variables, images), atol=1e-5
    )
    check_gradients_by_fd(result.gradients, targets, lambda a: small_cnn_tail(params, a), activation)
    assert result.map.shape == (2, 2, 12, 12)
    assert result.gradients.shape == (2, 2, 6, 6, 12)


def test_nested_path_matches_finite_differences_through_resplit_model(images):
    model = Nested()
    variables = model.init(jax.random.key(2), images)
    targets = np.array([[2], [0]], np.int32)
    assert taps.resolve_layer(model, variables, images, "backbone-stage3-block0")[0] == "backbone/stage3/block0"
    result = gj.grad_cam(model, variables, images, targets, layer="backbone/stage3/block0")
    activation = captured(model, variables, images, "backbone/stage3/block0")
    np.testing.assert_allclose(result.activations, activation, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nested_tail(variables["params"], activation), model.apply(variables, images), atol=1e-5)
    params = to64(variables["params"])
    check_gradients_by_fd(result.gradients, targets, lambda a: nested_tail(params, a), activation)
    # the deepest block too: its output goes straight into the head
    last = gj.grad_cam(model, variables, images, targets, layer="backbone/stage3/block1")
    np.testing.assert_allclose(
        last.activations, captured(model, variables, images, "backbone/stage3/block1"), atol=1e-6
    )


def test_tuple_output_explained_like_logits(small, images):
    model, variables = small
    plain = gj.grad_cam(model, variables, images, layer="Conv_1")
    tupled = gj.grad_cam(TupleCNN(), variables, images, layer="Conv_1")
    assert isinstance(TupleCNN().apply(variables, images), tuple)
    np.testing.assert_array_equal(tupled.targets, plain.targets)
    np.testing.assert_allclose(tupled.map, plain.map, atol=1e-6)
    np.testing.assert_allclose(tupled.gradients, plain.gradients, atol=1e-7)


@pytest.mark.oldest
def test_unknown_layer_lists_valid_paths_in_call_order(small, images):
    model, variables = small
    with pytest.raises(gj.UnknownLayerError) as err:
        gj.grad_cam(model, variables, images, layer="Conv_9")
    assert err.value.valid == ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]
    assert "Conv_9" in str(err.value) and "Conv_0, Conv_1, Conv_2, Dense_0" in str(err.value)
    nested = Nested()
    with pytest.raises(gj.UnknownLayerError, match="backbone/stage3/block1/conv"):
        gj.grad_cam(nested, nested.init(jax.random.key(0), images), images, layer="backbone/stage4")


def test_layer_shapes_lists_every_submodule(images):
    model = Nested()
    shapes = gj.layer_shapes(model, model.init(jax.random.key(0), images), images)
    assert list(shapes)[:3] == ["backbone/stage1/project", "backbone/stage1/block0/conv", "backbone/stage1/block0"]
    assert shapes["backbone/stage3/block1"].shape == (2, 12, 12, 8) and shapes["head"].shape == (2, 3)


# --- a tiny ViT, through tokens_to_grid -----------------------------------------------------------


class ViTBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(nn.LayerNorm(name="ln1")(x))
        h = nn.gelu(nn.Dense(2 * x.shape[-1], name="mlp1")(nn.LayerNorm(name="ln2")(x)))
        return x + nn.Dense(x.shape[-1], name="mlp2")(h)


class TinyViT(nn.Module):
    """4x4 patches -> tokens [class, 16 patches] -> 2 attention blocks -> head on the class token."""

    dim: int = 16

    def setup(self):
        self.embed = nn.Conv(self.dim, (4, 4), strides=(4, 4), padding="VALID")
        self.cls = self.param("cls", nn.initializers.normal(0.5), (1, 1, self.dim))
        self.pos = self.param("pos", nn.initializers.normal(0.5), (1, 17, self.dim))
        self.blocks = [ViTBlock() for _ in range(2)]  # paths blocks_0, blocks_1
        self.norm = nn.LayerNorm()
        self.head = nn.Dense(4)

    def tokens(self, images):
        x = self.embed(images)
        x = x.reshape(x.shape[0], -1, self.dim)
        return jnp.concatenate([jnp.broadcast_to(self.cls, (x.shape[0], 1, self.dim)), x], axis=1) + self.pos

    def after_first_block(self, tokens):
        return self.head(self.norm(self.blocks[1](tokens)[:, 0]))

    def __call__(self, images):
        return self.after_first_block(self.blocks[0](self.tokens(images)))


def test_tokens_to_grid_layout():
    tokens = jnp.arange(2 * 17 * 3).reshape(2, 17, 3)
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 4, 4, 3)
    # patch token 1 + i*4 + j sits at (i, j); the class token (index 0) is gone
    np.testing.assert_array_equal(grid[1, 2, 3], tokens[1, 1 + 2 * 4 + 3])
    assert tokens_to_grid(jnp.zeros((1, 1 + 4 + 6, 2)), grid=(2, 3), prefix_tokens=5).shape == (1, 2, 3, 2)
    with pytest.raises(ValueError, match="square"):
        tokens_to_grid(jnp.zeros((1, 1 + 6, 2)))
    with pytest.raises(ValueError, match="does not hold"):
        tokens_to_grid(jnp.zeros((1, 17, 2)), grid=(3, 4))


def test_vit_grad_cam_through_tokens_to_grid_matches_finite_differences():
    model = TinyViT()
    images = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    variables = model.init(jax.random.key(4), images)
    targets = np.array([[1], [2]], np.int32)
    result = gj.grad_cam(model, variables, images, targets, layer="blocks_0", reshape=tokens_to_grid)
    assert result.map.shape == (2, 1, 16, 16) and bool(jnp.isfinite(result.map).all())
    assert result.activations.shape == (2, 4, 4, 16) and result.gradients.shape == (2, 1, 4, 4, 16)
    assert float(jnp.abs(result.gradients).max()) > 0
    # Reference: the tokens after block 0 and the rest of the network, via the model's own methods;
    # grid cell (i, j) is token 1 + 4 i + j, laid out by hand.
    tokens = model.apply(variables, images, method=lambda m, x: m.blocks[0](m.tokens(x)))
    np.testing.assert_allclose(result.activations, tokens[:, 1:].reshape(2, 4, 4, 16), atol=1e-6)
    params = to64(variables)

    def from_grid(grid):  # grid (B, 4, 4, C) -> tokens with the class token kept as it was
        rows = [grid[:, i, j] for i in range(4) for j in range(4)]
        return jnp.concatenate([jnp.asarray(tokens[:, :1], grid.dtype), jnp.stack(rows, axis=1)], axis=1)

    tail = lambda grid: model.apply(params, from_grid(grid), method=TinyViT.after_first_block)  # noqa: E731
    check_gradients_by_fd(result.gradients, targets, tail, np.asarray(result.activations))


# --- GoogLeNet through the generic taps -----------------------------------------------------------


def googlenet_tail(params, activation, stage):
    """GoogLeNet after `stage`'s output, re-assembled from its modules and run untapped."""
    x = activation
    if stage == "inception_4e":
        x = googlenet.MaxPool(3, 2).apply({}, x)
        for name in ("inception_5a", "inception_5b"):
            x = googlenet.Inception(googlenet.INCEPTION_WIDTHS[name], googlenet.conv).apply({"params": params[name]}, x)
    classifier = params["loss3"]["classifier"]
    return x.mean(axis=(1, 2)) @ classifier["kernel"] + classifier["bias"]


def hand_grad_cam(activation, gradient, size):
    """MATLAB's Grad-CAM from (h, w, C) activation and gradient: weighted sum, min-max, bicubic."""
    raw = jnp.einsum("hwc,c->hw", activation, gradient.sum(axis=(0, 1)))
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    return jnp.clip(jax.image.resize(raw, size, "bicubic"), 0, 1)


@pytest.mark.oldest
@pytest.mark.parametrize("stage", ["inception_5b", "inception_4e"])
def test_googlenet_generic_taps_equal_hand_split(googlenet, cat_dog, stage):
    model, variables = googlenet
    targets = np.array([[243, 282]], np.int32)  # bull mastiff, tiger cat
    result = gj.grad_cam(model, variables, cat_dog, targets, layer=f"{stage}-output")
    activation = captured(model, variables, cat_dog, f"{stage}/output")
    params = variables["params"]
    np.testing.assert_allclose(
        googlenet_tail(params, activation, stage), model.apply(variables, cat_dog)[0], rtol=1e-4, atol=1e-3
    )
    for k, target in enumerate(targets[0]):
        gradient = jax.grad(lambda a, target=target: jax.nn.softmax(googlenet_tail(params, a, stage))[0, target])(
            activation
        )
        scale = float(jnp.abs(gradient).max())
        np.testing.assert_allclose(result.gradients[0, k], gradient[0], atol=1e-4 * scale)
        np.testing.assert_allclose(result.map[0, k], hand_grad_cam(activation[0], gradient[0], (224, 224)), atol=1e-5)

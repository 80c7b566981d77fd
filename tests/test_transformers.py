"""The transformer methods on a tiny ViT, against references computed independently of them.

The reference ViT is written out by hand (`explicit_forward`): the same parameters as the linen
`toy_vit.ToyViT` (whose attention is `nn.MultiHeadDotProductAttention`), with the attention's
softmax spelled out and an added perturbation of its probabilities. Rollout is checked against
matrix products of those probabilities, the generic rule and LeGrad against `jax.grad` with
respect to the perturbation; the NNX twin (`nnx.MultiHeadAttention`, the same weights) must give the
same maps as the linen model.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradcam_jax as gj
from gradcam_jax._src import maps
from gradcam_jax._src.adapters import attention, tokens
from gradcam_jax._src.adapters.tokens import tokens_to_grid
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import vit as toy_vit

ATOL = 2e-5


def layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p["scale"] + p["bias"]


def explicit_forward(model: toy_vit.ToyViT, params, images, deltas=None):
    """(logits, [probabilities (B, heads, N, N) per block], [output tokens per block]), with
    deltas[i] added to block i's softmax output."""
    b, h, w, c = images.shape
    p = model.patch
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)
    kernel = params["embed"]["kernel"]
    x = x @ kernel.reshape(-1, kernel.shape[-1]) + params["embed"]["bias"]
    if model.class_token:
        x = jnp.concatenate([jnp.broadcast_to(params["cls"], (b, 1, x.shape[-1])), x], axis=1)
    x = x + params["pos"]
    probabilities, outputs = [], []
    for i in range(model.depth):
        bp = params[f"blocks_{i}"]
        a = bp["attn"]
        y = layer_norm(x, bp["ln1"])
        q, k, v = (jnp.einsum("bnc,chd->bnhd", y, a[n]["kernel"]) + a[n]["bias"] for n in ("query", "key", "value"))
        weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
        probabilities.append(weights)
        if deltas is not None:
            weights = weights + deltas[i]
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        x = x + jnp.einsum("bqhd,hdc->bqc", attended, a["out"]["kernel"]) + a["out"]["bias"]
        y = jax.nn.gelu(layer_norm(x, bp["ln2"]) @ bp["mlp1"]["kernel"] + bp["mlp1"]["bias"], approximate=False)
        x = x + y @ bp["mlp2"]["kernel"] + bp["mlp2"]["bias"]
        outputs.append(x)
    pooled = x[:, 0] if model.class_token else x.mean(axis=1)
    logits = layer_norm(pooled, params["norm"]) @ params["head"]["kernel"] + params["head"]["bias"]
    return logits, probabilities, outputs


def finish(raw, size):
    return np.asarray(maps.finish(jnp.asarray(raw), size))


def class_row(r, prefix):
    return r[..., 0, :] if prefix else r.mean(axis=-2)


@pytest.fixture(scope="module")
def vit():
    model = toy_vit.ToyViT(image_size=(16, 24), dim=16, heads=2, depth=2, num_classes=4)
    images = jax.random.normal(jax.random.key(1), (2, 16, 24, 1))
    variables = model.init(jax.random.key(0), images)
    return model, variables, images


def test_patch_grid_follows_the_aspect_ratio():
    assert tokens.patch_grid(280, (224, 320)) == (14, 20)
    assert tokens.token_layout(197, (224, 224)) == (1, (14, 14))
    assert tokens.token_layout(1 + 4 + 256, (224, 224)) == (5, (16, 16))  # class + 4 registers
    assert tokens.token_layout(196, (224, 224), 0) == (0, (14, 14))
    with pytest.raises(ValueError, match="does not hold"):
        tokens.patch_grid(24, (16, 24), grid=(5, 5))


def test_probabilities_are_captured_by_path(vit):
    model, variables, images = vit
    _, tapped = attention.forward(model, variables, images)
    _, expected, _ = explicit_forward(model, variables["params"], images)
    assert list(tapped.probabilities) == ["blocks_0/attn", "blocks_1/attn"]
    for path, want in zip(tapped.probabilities, expected):
        np.testing.assert_allclose(tapped.probabilities[path], want, atol=ATOL)
    layout = attention.attention_layout(model, variables, images)
    assert [b.path for b in attention.resolve_blocks(layout)] == ["blocks_0", "blocks_1"]


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_rollout_is_the_product_of_the_blocks(vit, fusion):
    model, variables, images = vit
    result = gj.attention_rollout(model, variables, images, head_fusion=fusion)
    _, probabilities, _ = explicit_forward(model, variables["params"], images)
    joint = np.eye(25)
    for a in probabilities:  # first block first: R = A_L ... A_1
        fused = np.asarray(getattr(np, fusion)(np.asarray(a), axis=1))
        fused = 0.5 * fused + 0.5 * np.eye(25)
        joint = (fused / fused.sum(-1, keepdims=True)) @ joint
    raw = joint[:, 0, 1:].reshape(2, 4, 6)  # 16x24 image, 4-px patches: a 4x6 grid
    np.testing.assert_allclose(result.map, finish(raw, (16, 24)), atol=1e-4)
    assert result.map.shape == (2, 16, 24)


@pytest.mark.parametrize("columns", [2, 1])  # one column: the backward pass runs unbatched (`column_vjp`)
def test_generic_attention_follows_the_rule_with_jax_grad(vit, columns):
    model, variables, images = vit
    classes = jnp.array([[0, 3], [2, 1]])[:, :columns]
    result = gj.generic_attention(model, variables, images, classes)
    params = variables["params"]
    _, probabilities, _ = explicit_forward(model, params, images)
    zeros = [jnp.zeros_like(a) for a in probabilities]
    for k in range(columns):
        score = lambda d, k=k: explicit_forward(model, params, images, d)[0][jnp.arange(2), classes[:, k]].sum()  # noqa: E731
        grads = jax.grad(score)(zeros)
        r = np.broadcast_to(np.eye(25), (2, 25, 25))
        for a, g in zip(probabilities, grads):
            r = r + np.maximum(np.asarray(g * a), 0).mean(axis=1) @ r
        np.testing.assert_allclose(result.map[:, k], finish(r[:, 0, 1:].reshape(2, 4, 6), (16, 24)), atol=1e-4)


@pytest.mark.parametrize("columns", [0, 2])  # 0: classes (B,), one column unbatched; 2: (B, 2), vmapped
def test_legrad_follows_its_definition_with_jax_grad(vit, columns):
    model, variables, images = vit
    classes = jnp.array([[1, 0], [2, 3]])[:, :columns] if columns else jnp.array([1, 2])
    result = gj.legrad(model, variables, images, classes, head=toy_vit.legrad_head)
    params = variables["params"]
    _, probabilities, _ = explicit_forward(model, params, images)
    for k in range(max(columns, 1)):
        column = classes[:, k] if columns else classes
        per_block = []
        for layer in range(2):

            def block_score(delta, layer=layer, column=column):  # block `layer`'s score, its own attention perturbed
                deltas = [delta if i == layer else jnp.zeros_like(a) for i, a in enumerate(probabilities)]
                tokens_l = explicit_forward(model, params, images, deltas)[2][layer]
                return toy_vit.legrad_head(variables, tokens_l)[jnp.arange(2), column].sum()

            g = jax.grad(block_score)(jnp.zeros_like(probabilities[layer]))
            per_block.append(np.maximum(np.asarray(g), 0).mean(axis=(1, 2))[:, 1:].reshape(2, 4, 6))
        got = result.map[:, k] if columns else result.map
        np.testing.assert_allclose(got, finish(np.mean(per_block, axis=0), (16, 24)), atol=1e-4)
    assert result.scores.shape == ((2, columns) if columns else (2,))


@pytest.mark.parametrize("name", ATTENTION_METHODS)
def test_calling_convention(vit, name):
    model, variables, images = vit
    options = {"head": toy_vit.legrad_head} if name == "legrad" else {}
    method = gj.METHODS[name]
    both = method(model, variables, images, np.array([[0, 3], [2, 1]]), **options)
    flat = method(model, variables, images, np.array([0, 2]), **options)
    assert both.map.shape == (2, 2, 16, 24) and flat.map.shape == (2, 16, 24) and flat.scores.shape == (2,)
    np.testing.assert_allclose(both.map[:, 0], flat.map, atol=1e-5)
    np.testing.assert_array_equal(both.targets, [[0, 3], [2, 1]])
    if name == "attention_rollout":  # top-1 by default (the same code for all three: `resolved_scores`)
        implicit = method(model, variables, images)
        np.testing.assert_array_equal(implicit.targets, np.argmax(model.apply(variables, images), axis=-1))


def test_generic_attention_maps_are_differentiable():
    """d/dθ and d/dx of sum(map * w) against central differences in float64 along a random direction
    (as tests/test_training.py does for the other methods), on a one-block ViT of 4 patches. Rollout is a plain
    function of the probabilities; LeGrad's maps are not differentiable (its blocks' outputs go on
    without gradient, see its module doc)."""
    options, method = {}, gj.generic_attention
    with jax.enable_x64(True):
        model = toy_vit.ToyViT(image_size=(8, 8), dim=8, depth=1, heads=1, num_classes=3)
        keys = jax.random.split(jax.random.key(0), 5)
        images = jax.random.normal(keys[0], (2, 8, 8, 1), jnp.float64)
        variables = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(keys[1], images))
        variables = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(keys[2], a.shape, a.dtype), variables)
        weights = jax.random.uniform(keys[3], (2, 8, 8), jnp.float64)

        def loss(variables, images):
            return (method(model, variables, images, jnp.array([0, 2]), **options).map * weights).sum()

        g_variables, g_images = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables, images)
        d_variables = jax.tree.map(lambda a: jax.random.normal(keys[4], a.shape, a.dtype), variables)
        d_images = jax.random.normal(keys[4], images.shape, jnp.float64)
        step = 1e-6
        along = (
            loss(jax.tree.map(lambda a, d: a + step * d, variables, d_variables), images + step * d_images)
            - loss(jax.tree.map(lambda a, d: a - step * d, variables, d_variables), images - step * d_images)
        ) / (2 * step)
        predicted = jnp.vdot(g_images, d_images) + sum(
            jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(g_variables), jax.tree.leaves(d_variables))
        )
        np.testing.assert_allclose(predicted, along, rtol=1e-5, atol=1e-8)


def test_gap_vit_maps_average_every_query_row():
    model = toy_vit.ToyViT(image_size=(16, 16), dim=16, class_token=False, num_classes=3)
    images = jax.random.normal(jax.random.key(2), (1, 16, 16, 1))
    variables = model.init(jax.random.key(0), images)
    result = gj.attention_rollout(model, variables, images, prefix_tokens=0)
    _, probabilities, _ = explicit_forward(model, variables["params"], images)
    joint = np.eye(16)
    for a in probabilities:
        fused = 0.5 * np.asarray(a).mean(axis=1) + 0.5 * np.eye(16)
        joint = (fused / fused.sum(-1, keepdims=True)) @ joint
    np.testing.assert_allclose(result.map, finish(joint.mean(axis=1).reshape(1, 4, 4), (16, 16)), atol=1e-4)


# --- the NNX twin -----------------------------------------------------------------------------------


class NNXBlock(nnx.Module):
    def __init__(self, dim, heads, rngs):
        self.ln1, self.ln2 = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs), nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.mlp1, self.mlp2 = nnx.Linear(dim, 2 * dim, rngs=rngs), nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp2(nnx.gelu(self.mlp1(self.ln2(x)), approximate=False))


class NNXViT(nnx.Module):
    def __init__(self, params, patch, heads, depth):
        rngs = nnx.Rngs(0)
        dim = params["pos"].shape[-1]
        self.patch = patch
        self.embed = nnx.Conv(
            params["embed"]["kernel"].shape[2], dim, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs
        )
        self.cls, self.pos = nnx.Param(params["cls"]), nnx.Param(params["pos"])
        self.blocks = nnx.List([NNXBlock(dim, heads, rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, epsilon=1e-6, rngs=rngs)
        self.head = nnx.Linear(dim, params["head"]["kernel"].shape[1], rngs=rngs)
        copy = {"embed": self.embed, "norm": self.norm, "head": self.head}
        for i, block in enumerate(self.blocks):
            copy.update({f"blocks_{i}/{n}": getattr(block, n) for n in ("ln1", "ln2", "mlp1", "mlp2")})
            copy.update({f"blocks_{i}/attn/{n}": getattr(block.attn, n) for n in ("query", "key", "value", "out")})
        for path, module in copy.items():
            source = params
            for part in path.split("/"):
                source = source[part]
            for name, value in source.items():
                getattr(module, name)[...] = value

    def __call__(self, images):
        x = self.embed(images)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1])), x], axis=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def test_nnx_twin_gives_the_linen_maps(vit):
    model, variables, images = vit
    twin = NNXViT(variables["params"], model.patch, model.heads, model.depth)
    graphdef, state = nnx.split(twin)
    np.testing.assert_allclose(graphdef.apply(state)(images)[0], model.apply(variables, images), atol=ATOL)
    layout = attention.attention_layout(graphdef, state, images)
    assert [b.path for b in attention.resolve_blocks(layout)] == ["blocks/0", "blocks/1"]
    for method in (gj.attention_rollout, gj.generic_attention):
        np.testing.assert_allclose(method(graphdef, state, images).map, method(model, variables, images).map, atol=1e-4)

    def nnx_head(state, tokens):
        vit = nnx.merge(graphdef, state)
        return vit.head(vit.norm(tokens.mean(axis=1)))

    expected = gj.legrad(model, variables, images, head=toy_vit.legrad_head).map
    np.testing.assert_allclose(gj.legrad(graphdef, state, images, head=nnx_head).map, expected, atol=1e-4)


# --- bad input: one clear error each ----------------------------------------------------------------


class CrossAttention(nn.Module):
    @nn.compact
    def __call__(self, images):
        x = images.reshape(images.shape[0], -1, images.shape[-1])
        x = nn.Dense(8)(x)
        x = nn.MultiHeadDotProductAttention(num_heads=2, name="cross")(x, x[:, :4])
        return nn.Dense(3)(x.mean(1))


def test_bad_input_is_one_clear_error(vit):
    model, variables, images = vit
    with pytest.raises(ValueError, match="no attention submodule"):
        cnn = toy.ToyCNN()
        x = jnp.zeros((1, 32, 32, 1))
        gj.attention_rollout(cnn, cnn.init(jax.random.key(0), x), x)
    with pytest.raises(ValueError, match="'head' holds no attention.*valid blocks: blocks_0, blocks_1"):
        gj.attention_rollout(model, variables, images, blocks=["head"])
    with pytest.raises(ValueError, match="'nowhere' holds no attention"):
        gj.generic_attention(model, variables, images, blocks=["nowhere"])
    with pytest.raises(ValueError, match="does not hold the 24 patch tokens"):
        gj.attention_rollout(model, variables, images, grid=(5, 5))
    with pytest.raises(ValueError, match="prefix_tokens=25 leaves none of the 25 tokens"):
        gj.attention_rollout(model, variables, images, prefix_tokens=25)
    with pytest.raises(ValueError, match="must return logits"):
        gj.legrad(model, variables, images, head=lambda v, t: t)
    x = jnp.zeros((1, 4, 4, 3))
    cross = CrossAttention()
    with pytest.raises(ValueError, match="cross-attention"):
        gj.attention_rollout(cross, cross.init(jax.random.key(0), x), x, blocks=["cross"])


# --- Grad-CAM on token layers, the default layer ------------------------------------------------------


def test_grad_cam_lays_token_layers_out_by_itself(vit):
    model, variables, images = vit
    by_hook = gj.grad_cam(model, variables, images, layer="blocks_1", reshape=lambda t: tokens_to_grid(t, (4, 6)))
    by_itself = gj.grad_cam(model, variables, images, layer="blocks_1")
    np.testing.assert_allclose(by_itself.map, by_hook.map, atol=1e-6)
    assert by_itself.activations.shape == (2, 4, 6, 16)
    hook = lambda t: tokens_to_grid(t, (4, 6))  # noqa: E731
    eigen = gj.eigen_cam(model, variables, images, layer="blocks_1")
    np.testing.assert_allclose(eigen.map, gj.eigen_cam(model, variables, images, layer="blocks_1", reshape=hook).map)


@pytest.mark.parametrize("name, options", [("fem", {}), ("ablation_cam", {}), ("score_cam", {"baseline": 0.0})])
def test_activation_methods_lay_token_layers_out_by_itself(vit, name, options):
    # every method reading a layer's activations goes through `common.layer_outputs`, which lays a
    # token layer out as Grad-CAM does: the same maps as with the hook written by hand
    model, variables, images = vit
    hook = lambda t: tokens_to_grid(t, (4, 6))  # noqa: E731
    by_itself = gj.METHODS[name](model, variables, images, layer="blocks_1", **options)
    by_hook = gj.METHODS[name](model, variables, images, layer="blocks_1", reshape=hook, **options)
    np.testing.assert_allclose(by_itself.map, by_hook.map, atol=1e-6)
    assert by_itself.map.shape == (2, *images.shape[1:3])


def test_default_layer_is_the_last_spatial_map(vit):
    model, variables, images = vit
    assert gj.default_layer(model, variables, images) == "embed"  # the patch embedding: the only grid
    cnn, x = toy.ToyCNN(), jnp.zeros((1, 32, 32, 1))
    cnn_variables = cnn.init(jax.random.key(0), x)
    assert gj.default_layer(cnn, cnn_variables, x) == toy.LAYER
    result = gj.grad_cam(cnn, cnn_variables, x, layer=None)
    np.testing.assert_array_equal(result.map, gj.grad_cam(cnn, cnn_variables, x, layer=toy.LAYER).map)
    googlenet = gj.GoogLeNet()
    shapes = jax.eval_shape(googlenet.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert gj.default_layer(googlenet, shapes, jnp.zeros((1, 224, 224, 3))) == "inception_5b-output"
    mlp = nn.Dense(3)
    with pytest.raises(ValueError, match="pass `layer`"):
        gj.default_layer(mlp, mlp.init(jax.random.key(0), jnp.zeros((1, 4))), jnp.zeros((1, 4)))


def test_front_ends_offer_the_attention_methods_only_where_there_is_attention():
    from gradcam_jax import app, cli

    with pytest.raises(SystemExit):  # GoogLeNet, the CLI's model, has no attention: not a choice
        cli.build_parser().parse_args(["explain", "photo.jpg", "--method", "attention_rollout"])
    model = toy_vit.ToyViT(image_size=(224, 224), patch=32, dim=8, depth=1, heads=1)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    explorer = app.Explorer(model, variables)
    assert {"attention_rollout", "generic_attention"} <= set(explorer.methods) and "legrad" not in explorer.methods
    assert explorer.default_layer == "embed"


# --- Equinox: attention called per image (the model's vmap) and per head (Equinox's own) --------------


def test_equinox_attention_is_read_per_image_and_head():
    eqx = pytest.importorskip("equinox")

    class EqxViT(eqx.Module):
        embed: eqx.nn.Linear
        attn: eqx.nn.MultiheadAttention
        head: eqx.nn.Linear

        def __call__(self, images):  # (B, 8, 8, 3): 16 patches of 2x2 pixels, no class token
            def one(image):
                x = jax.vmap(self.embed)(patches(image))
                return self.head((x + self.attn(x, x, x)).mean(axis=0))

            return jax.vmap(one)(images)

    def patches(image):
        return image.reshape(4, 2, 4, 2, 3).transpose(0, 2, 1, 3, 4).reshape(16, 12)

    keys = jax.random.split(jax.random.key(0), 3)
    net = EqxViT(
        eqx.nn.Linear(12, 8, key=keys[0]),
        eqx.nn.MultiheadAttention(2, 8, key=keys[1]),
        eqx.nn.Linear(8, 3, key=keys[2]),
    )
    params, static = eqx.partition(net, eqx.is_array)
    images = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    _, tapped = attention.forward(static, params, images)

    x = jax.vmap(jax.vmap(net.embed))(jax.vmap(patches)(images))  # (B, 16, 8), by hand from here
    q = (x @ net.attn.query_proj.weight.T).reshape(2, 16, 2, 4)
    k = (x @ net.attn.key_proj.weight.T).reshape(2, 16, 2, 4)
    expected = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0, axis=-1)
    np.testing.assert_allclose(tapped.probabilities["attn"], expected, atol=ATOL)

    fused = 0.5 * np.asarray(expected).mean(axis=1) + 0.5 * np.eye(16)
    fused = fused / fused.sum(-1, keepdims=True)
    result = gj.attention_rollout(static, params, images, prefix_tokens=0)
    np.testing.assert_allclose(result.map, finish(fused.mean(axis=1).reshape(2, 4, 4), (8, 8)), atol=1e-4)

"""AttnLRP and CP-LRP (`attn_lrp`, `cp_lrp`) against references computed independently of them.

- a tiny transformer (embedding, LayerNorm, one attention head, residual, GELU, mean pooling, head)
  whose relevance is written out in numpy with lxt 2.1's *explicit* rules (`lxt.explicit.functional`:
  epsilon on linear layers and sums, the softmax's Taylor rule, the uniform matmul rule, LayerNorm as
  lxt's `_layer_norm_slower` composes it), not as gradients;
- conservation where it holds: CP-LRP on a bias-free ViT gives back the logit;
- lxt 2.1 itself (efficient mode: its torchvision-ViT map for CP-LRP, the AttnLRP map built from its
  patches) on a torchvision `VisionTransformer` holding the same weights as the linen `ToyViT`;
- the NNX and Equinox twins of that ViT give the linen maps; big_vision's ViT scanned gives the looped
  one's; on Keras, CP-LRP conserves the logit; an attention it cannot read is one error;
- each library's LayerNorm and RMSNorm, read for the rule, against lxt's explicit LayerNorm by hand.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import types

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported, here or by another test

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradcam_jax as gj
from gradcam_jax._src import maps
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import vit as toy_vit
from tests.test_transformers import NNXViT


def random_variables(model, images, seed: int, size: float) -> dict:
    """A linen model's variables drawn with numpy (no compile): scales 1 + size * N(0, 1), the rest
    size * N(0, 1), shaped by `model.init` traced for shapes only."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)
    return jax.tree_util.tree_map_with_path(
        lambda p, s: ("scale" in jax.tree_util.keystr(p)) + size * rng.standard_normal(s.shape).astype(np.float32),
        shapes,
    )


# --- the rules by hand: lxt's explicit formulas in numpy ----------------------------------------------


class FusedAttention(nn.Module):
    """One head through `jax.nn.dot_product_attention`, with `nn.MultiHeadDotProductAttention`'s parameters."""

    @nn.compact
    def __call__(self, x):
        q, k, v = (nn.DenseGeneral((1, 2), name=n)(x) for n in ("query", "key", "value"))
        return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), name="out")(jax.nn.dot_product_attention(q, k, v))


class Tiny(nn.Module):
    """(B, 2, 2, 3) images -> 4 tokens of 3 -> Dense 4 -> x + attn(LN(x)) -> GELU(Dense 6) -> mean -> Dense 2."""

    fused: bool = False  # the attention through `jax.nn.dot_product_attention` (the same parameters)

    @nn.compact
    def __call__(self, images):
        t = images.reshape(images.shape[0], 4, 3)
        x = nn.Dense(4, name="embed")(t)
        y = nn.LayerNorm(1e-6, name="ln")(x)
        if self.fused:
            attention = FusedAttention(name="attn")
        else:
            attention = nn.MultiHeadDotProductAttention(num_heads=1, qkv_features=2, name="attn")
        h = x + attention(y)
        g = nn.gelu(nn.Dense(6, name="mlp")(h), approximate=False)
        return nn.Dense(2, name="head")(g.mean(axis=1))


def linear(x, p, r):
    """lxt's epsilon rule (epsilon -> 0) for z = x W + b: R_x = x * (R / z) W^T."""
    w = p["kernel"].reshape(x.shape[-1], -1)
    z = x @ w + p["bias"].reshape(-1)
    return x * ((r / z) @ w.T), z


def matmul(a, b, r):
    """lxt's `matmul_fn`: R_a = a * (R / 2ab) b^T, R_b = b * a^T (R / 2ab)."""
    norm = r / (2 * (a @ b))
    return a * (norm @ b.T), b * (a.T @ norm)


def hand_relevance(params, tokens, k, conservative):
    """Relevance at the tokens (4, 3) of logit k of `Tiny`, rule by rule, for one image (float64)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    t = np.asarray(tokens, np.float64)
    e = t @ p["embed"]["kernel"] + p["embed"]["bias"]
    m = e.mean(-1, keepdims=True)
    c = e - m
    sd = np.sqrt((c * c).mean(-1, keepdims=True) + 1e-6)
    y = c / sd * p["ln"]["scale"] + p["ln"]["bias"]
    a = p["attn"]
    q, kk, v = (y @ a[n]["kernel"][:, 0] + a[n]["bias"][0] for n in ("query", "key", "value"))
    qs = q / np.sqrt(2.0)
    s = qs @ kk.T
    att = np.exp(s - s.max(-1, keepdims=True))
    att = att / att.sum(-1, keepdims=True)
    o = att @ v
    out = o @ a["out"]["kernel"][0] + a["out"]["bias"]
    h = e + out
    u = h @ p["mlp"]["kernel"] + p["mlp"]["bias"]
    g = np.asarray(jax.nn.gelu(u, approximate=False))
    pooled = g.mean(0)
    z = pooled @ p["head"]["kernel"] + p["head"]["bias"]

    r_z = np.eye(2)[k] * z[k]  # relevance at the output: the logit
    r_pooled, _ = linear(pooled, p["head"], r_z)
    r_u = g / 4 * (r_pooled / pooled)  # mean (epsilon), then GELU's identity rule
    r_h, _ = linear(h, p["mlp"], r_u)
    r_e, r_out = e * r_h / h, out * r_h / h  # the residual sum (epsilon)
    r_o, _ = linear(o, {"kernel": a["out"]["kernel"][0], "bias": a["out"]["bias"]}, r_out)
    if conservative:  # CP-LRP: the probabilities are constants, A v a linear map of v
        r_v, r_q, r_k = v * (att.T @ (r_o / o)), 0 * q, 0 * kk
    else:
        r_att, r_v = matmul(att, v, r_o)
        r_s = s * (r_att - att * r_att.sum(-1, keepdims=True))  # lxt's softmax rule
        r_q, r_kt = matmul(qs, kk.T, r_s)
        r_k = r_kt.T
    r_y = sum(
        linear(y, {"kernel": a[n]["kernel"][:, 0], "bias": a[n]["bias"][0]}, r)[0]
        for n, r in (("query", r_q), ("key", r_k), ("value", r_v))
    )
    # LayerNorm as lxt's `_layer_norm_slower`: bias sum (epsilon), scale and 1/std (identity), x - mean (epsilon), mean (epsilon)
    r_c = (c / sd * p["ln"]["scale"]) * r_y / y
    r_e = r_e + e * (r_c / c - (r_c / c).mean(-1, keepdims=True))
    return linear(t, p["embed"], r_e)[0]


@pytest.mark.parametrize("name", ["attn_lrp", "cp_lrp"])
def test_rules_match_lxts_explicit_formulas_by_hand(name):
    model = Tiny()
    images = jax.random.normal(jax.random.key(3), (2, 2, 2, 3))
    variables = random_variables(model, images, 4, 0.3)
    classes = np.array([[0, 1], [1, 0]])
    result = gj.METHODS[name](model, variables, images, classes)
    relevance = np.asarray(result.gradients)
    assert relevance.shape == (2, 2, 4, 3)  # the relevance at the embedding's input: the tokens
    for b in range(2):
        for k in range(2):
            tokens = np.asarray(images[b]).reshape(4, 3)
            expected = hand_relevance(variables["params"], tokens, classes[b, k], name == "cp_lrp")
            np.testing.assert_allclose(relevance[b, k], expected, rtol=2e-3, atol=2e-5)
    # the same attention through jax.nn.dot_product_attention (computed explicitly while the method runs)
    fused = gj.METHODS[name](Tiny(fused=True), variables, images, classes)
    np.testing.assert_allclose(np.asarray(fused.gradients), relevance, atol=1e-6)
    # 4 tokens of a 2x2 image: the map is their relevance on the 2x2 token grid (`tokens.token_layout`)
    raw = relevance.sum(-1).reshape(2, 2, 2, 2)
    np.testing.assert_allclose(result.map, maps.finish(jnp.asarray(raw), (2, 2), relu=True), atol=1e-6)


def test_cp_lrp_conserves_the_logit_on_a_bias_free_vit():
    """Without biases, position embeddings or a class token, every CP-LRP rule is conservative (linear
    layers, LayerNorm with its std detached, the identity on GELU, attention as a fixed linear map):
    the relevance at the pixels sums to the logit. AttnLRP's softmax rule is not (Achtibat et al., Prop. 3.1)."""
    model = toy_vit.ToyViT(image_size=(16, 16), dim=16, heads=2, depth=2, num_classes=3, class_token=False)
    images = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    variables = random_variables(model, images, 0, 0.2)
    zeroed = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables)]
    zeroed = [p for p in zeroed if "bias" in p or "pos" in p]
    variables = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.zeros_like(a) if jax.tree_util.keystr(p) in zeroed else a, variables
    )
    assert len(zeroed) == 20  # every bias (2 blocks x 8, embed, norm, head) and the position embeddings
    logits = np.asarray(model.apply(variables, images))
    classes = np.array([[0, 2], [1, 2]])
    result = gj.cp_lrp(model, variables, images, classes)
    totals = np.asarray(result.gradients).sum(axis=(2, 3, 4))
    np.testing.assert_allclose(totals, logits[np.arange(2)[:, None], classes], rtol=1e-3, atol=1e-5)


# --- lxt 2.1 on a torchvision ViT with the same weights ------------------------------------------------


def lxt_modules():
    """lxt's efficient-mode `monkey_patch`, its patches and its torchvision-ViT map. lxt 2.1's
    `lxt.efficient.models` imports `transformers` (not a dependency here): a stub stands in for it while
    `lxt.efficient` loads, and `models/vit_torch.py` is loaded from its file."""
    pytest.importorskip("torchvision")
    if "lxt.efficient" not in sys.modules:
        pytest.importorskip("lxt")
        stub = types.ModuleType("lxt.efficient.models")
        stub.get_default_map = lambda module: {}  # pyright: ignore[reportAttributeAccessIssue]
        saved = sys.modules.get("lxt.efficient.models")
        sys.modules["lxt.efficient.models"] = stub
        try:
            import lxt.efficient  # noqa: F401
        finally:
            if saved is None:
                sys.modules.pop("lxt.efficient.models", None)
            else:
                sys.modules["lxt.efficient.models"] = saved
    from lxt.efficient import monkey_patch, patches, rules

    spec = importlib.util.spec_from_file_location(
        "lxt_vit_torch", patches.__file__.replace("patches.py", "models/vit_torch.py")
    )
    assert spec is not None and spec.loader is not None
    vit_torch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vit_torch)
    return monkey_patch, patches, rules, vit_torch


@contextlib.contextmanager
def lxt_patched(monkey_patch, module, patch_map):
    """lxt's `monkey_patch(module, patch_map)`, which replaces torch classes' `forward` for the whole
    process, undone on leaving (other tests use torch's LayerNorm and GELU)."""
    saved = {cls: {k: vars(cls)[k] for k in ("forward", "original_forward") if k in vars(cls)} for cls in patch_map}
    monkey_patch(module, patch_map)
    try:
        yield
    finally:
        for cls, attributes in saved.items():
            for name in ("forward", "original_forward"):
                if name in attributes:
                    setattr(cls, name, attributes[name])
                elif name in vars(cls):
                    delattr(cls, name)


def test_attn_lrp_and_cp_lrp_match_lxt_on_a_torchvision_vit_with_the_same_weights():
    """lxt's efficient ViT map (`vit_torch.cp_LRP`) is CP-LRP: GELU identity, LayerNorm with the std
    detached, q and k detached in `nn.MultiheadAttention`. AttnLRP's is built from lxt's patches the
    way its `wrap_attention_forward` does for Hugging Face attention: the gradient at q and k divided
    by 4 and at v by 2 (`divide_gradient`), here at `nn.MultiheadAttention`'s inputs (its projections
    are linear). Linear layers keep their gradient on both sides (lxt without zennit: LRP-0; ours:
    the "Epsilon" composite, epsilon 1e-6). lxt's relevance is input x gradient at the pixels with the
    backward pass seeded with 1 (relevance at the output = the logit, in its g = R / a terms; its
    README seeds with the logit, which scales each map by it)."""
    torch = pytest.importorskip("torch")
    vision_transformer = pytest.importorskip("torchvision.models.vision_transformer")
    from tests.test_legrad_torchcam import twins

    monkey_patch, patches, rules, vit_torch = lxt_modules()

    def attention_forward(self, query, key, value, *args, **kwargs):
        q, k, v = rules.divide_gradient(query, 4), rules.divide_gradient(key, 4), rules.divide_gradient(value, 2)
        return self.original_forward(q, k, v, *args, **kwargs)

    attn_map = {
        **vit_torch.cp_LRP,
        vision_transformer.nn.MultiheadAttention: functools.partial(
            patches.patch_method, attention_forward, keep_original=True
        ),
    }
    net, model, variables = twins()
    images = np.asarray(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), np.float32)
    classes = np.array([[1, 3], [0, 2]])

    def lxt_relevance(patch_map):
        found = []
        with lxt_patched(monkey_patch, vision_transformer, patch_map):
            for k in range(classes.shape[1]):
                x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
                scores = net(x)[torch.arange(2), torch.from_numpy(classes[:, k])]
                scores.backward(torch.ones_like(scores))
                found.append((x * x.grad).detach().numpy().transpose(0, 2, 3, 1))
        return np.stack(found, 1)  # (B, K, H, W, C)

    references = {"attn_lrp": lxt_relevance(attn_map), "cp_lrp": lxt_relevance(vit_torch.cp_LRP)}
    assert vision_transformer.nn.LayerNorm.forward is not patches.layer_norm_forward  # undone
    for name, theirs in references.items():
        result = gj.METHODS[name](model, variables, images, classes)
        ours = np.asarray(result.gradients)
        theirs_maps = np.maximum(theirs.sum(-1), 0)
        theirs_maps = theirs_maps / theirs_maps.max(axis=(2, 3), keepdims=True)
        for b in range(2):
            for k in range(2):
                assert np.corrcoef(ours[b, k].ravel(), theirs[b, k].ravel())[0, 1] >= 0.999  # the bar
                assert np.corrcoef(result.map[b, k].ravel(), theirs_maps[b, k].ravel())[0, 1] >= 0.999
        # measured: 1.3e-5 (AttnLRP) and 2.9e-5 (CP-LRP) apart at most, of relevance up to 0.06 and 0.11
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # the two are different explanations, so matching each is not matching one
    assert np.abs(references["attn_lrp"] - references["cp_lrp"]).max() > 0.01


# --- the NNX and Equinox twins ---------------------------------------------------------------------------


class EqxBlock(eqx.Module):
    ln1: eqx.nn.LayerNorm
    ln2: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear

    def __call__(self, x):  # one image's tokens (N, C)
        y = jax.vmap(self.ln1)(x)
        x = x + self.attn(y, y, y)
        return x + jax.vmap(self.mlp2)(jax.nn.gelu(jax.vmap(self.mlp1)(jax.vmap(self.ln2)(x)), approximate=False))


class EqxViT(eqx.Module):
    """`ToyViT` in Equinox, per image: a `Conv2d` patch embedding on (C, H, W), `eqx.nn.MultiheadAttention`."""

    embed: eqx.nn.Conv2d
    cls: jax.Array
    pos: jax.Array
    blocks: tuple
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __call__(self, images):
        def one(image):
            x = self.embed(jnp.moveaxis(image, -1, 0))
            x = jnp.concatenate([self.cls[0], x.reshape(x.shape[0], -1).T]) + self.pos[0]
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x[0]))

        return jax.vmap(one)(images)


def eqx_twin(params, patch: int, heads: int, depth: int) -> EqxViT:
    """An `EqxViT` holding the linen `ToyViT`'s `params`."""
    keys = iter(jax.random.split(jax.random.key(0), 64))
    dim = params["pos"].shape[-1]
    channels = params["embed"]["kernel"].shape[2]

    def linear(p, reshape_in=None):
        kernel = p["kernel"].reshape(-1, p["kernel"].shape[-1]) if reshape_in is None else reshape_in(p["kernel"])
        layer = eqx.nn.Linear(kernel.shape[0], kernel.shape[1], key=next(keys))
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (kernel.T, p["bias"].reshape(-1)))

    def norm(p):
        layer = eqx.nn.LayerNorm(dim, eps=1e-6)
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (p["scale"], p["bias"]))

    blocks = []
    for i in range(depth):
        bp = params[f"blocks_{i}"]
        attn = eqx.nn.MultiheadAttention(heads, dim, use_query_bias=True, use_key_bias=True, use_value_bias=True,
                                         use_output_bias=True, key=next(keys))  # fmt: skip
        projections = [linear(bp["attn"][n], lambda k: k.reshape(dim, -1)) for n in ("query", "key", "value")]
        out = linear(bp["attn"]["out"], lambda k: k.reshape(-1, dim))
        attn = eqx.tree_at(lambda m: (m.query_proj, m.key_proj, m.value_proj, m.output_proj), attn, (*projections, out))
        blocks.append(EqxBlock(norm(bp["ln1"]), norm(bp["ln2"]), attn, linear(bp["mlp1"]), linear(bp["mlp2"])))
    embed = eqx.nn.Conv2d(channels, dim, patch, stride=patch, key=next(keys))
    embed = eqx.tree_at(
        lambda m: (m.weight, m.bias),
        embed,
        (jnp.transpose(params["embed"]["kernel"], (3, 2, 0, 1)), params["embed"]["bias"].reshape(dim, 1, 1)),
    )
    return EqxViT(embed, params["cls"], params["pos"], tuple(blocks), norm(params["norm"]), linear(params["head"]))


@pytest.fixture(scope="module")
def vit():
    model = toy_vit.ToyViT(image_size=(16, 24), dim=16, heads=2, depth=2, num_classes=4)
    images = jax.random.normal(jax.random.key(1), (2, 16, 24, 1))
    variables = random_variables(model, images, 0, 0.2)
    return model, variables, images


def test_nnx_and_equinox_twins_give_the_linen_maps(vit):
    """AttnLRP (CP-LRP differs only inside the attention, which the lxt test above covers for both)."""
    model, variables, images = vit
    name = "attn_lrp"
    classes = np.array([[1, 3], [2, 0]])
    expected = gj.METHODS[name](model, variables, images, classes)
    assert expected.map.shape == (2, 2, 16, 24)  # the calling convention: tests/test_transformers.py
    assert np.abs(expected.map[:, 0] - expected.map[:, 1]).max() > 0.1  # class-sensitive: another class, another map
    graphdef, state = nnx.split(NNXViT(variables["params"], model.patch, model.heads, model.depth))
    net = eqx_twin(variables["params"], model.patch, model.heads, model.depth)
    params, static = eqx.partition(net, eqx.is_array)
    np.testing.assert_allclose(net(images), model.apply(variables, images), atol=2e-5)
    for twin in ((graphdef, state), (static, params)):
        result = gj.METHODS[name](*twin, images, classes)
        np.testing.assert_allclose(np.asarray(result.gradients), np.asarray(expected.gradients), atol=2e-5)
        np.testing.assert_allclose(result.map, expected.map, atol=1e-4)


# --- bad input: one clear error, before any work ---------------------------------------------------------


def inline_attention(query, key, value, **_):
    """An attention function of the model's own (a fused kernel would be the same to the taps)."""
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", query, key) / np.sqrt(query.shape[-1]), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


class CustomAttention(nn.Module):
    @nn.compact
    def __call__(self, images):
        x = nn.Dense(8)(images.reshape(images.shape[0], -1, images.shape[-1]))
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=inline_attention, name="attn")(x)
        return nn.Dense(3)(x.mean(1))


def test_an_attention_it_cannot_read_is_one_clear_error():
    x, cnn_x = jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 32, 32, 1))
    model, cnn = CustomAttention(), toy.ToyCNN()
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes are enough: it fails before any work
    cnn_variables = jax.eval_shape(cnn.init, jax.random.key(0), cnn_x)
    for name in ("attn_lrp", "cp_lrp"):
        with pytest.raises(ValueError, match=f"^{name} cannot read the attention of attn \\(a custom attention_fn"):
            gj.METHODS[name](model, variables, x)
        with pytest.raises(ValueError, match=f"^{name}: the model has no attention to read.*use lrp"):
            gj.METHODS[name](cnn, cnn_variables, cnn_x)


# --- the other ViTs the library reads: big_vision's (vendored), Keras ---------------------------------


def test_big_vision_vit_scanned_gives_the_looped_maps():
    """big_vision's own ViT (tests/vendor/big_vision; its position embedding and class token are
    parameters that keep their gradient) under `nn.scan` and as a Python loop, the same weights."""
    from tests.test_big_vision import TARGETS, built

    model, variables, images, loop_params = built("tok", True)
    looped = model.clone(scan=False)
    scanned = gj.attn_lrp(model, variables, images, TARGETS)
    expected = gj.attn_lrp(looped, {"params": loop_params}, images, TARGETS)
    np.testing.assert_allclose(np.asarray(scanned.gradients), np.asarray(expected.gradients), atol=1e-5)
    assert np.abs(np.asarray(expected.gradients)).max() > 1e-3


def test_keras_cp_lrp_conserves_the_logit():
    """A Keras model (Conv2D, LayerNormalization, MultiHeadAttention, Dense; biases zero as Keras starts
    them): CP-LRP's relevance at the pixels adds up to the logit, which only holds if the rules reach
    Keras's LayerNorm and attention."""
    from tests.test_frameworks import keras_model

    _, model = keras_model()
    images = np.asarray(jax.random.uniform(jax.random.key(1), (2, 16, 16, 3)))
    classes = np.array([1, 2])
    result = gj.cp_lrp(model, None, images, classes)
    logits = np.asarray(model(images))[np.arange(2), classes]
    np.testing.assert_allclose(np.asarray(result.gradients).sum(axis=(1, 2, 3)), logits, rtol=1e-4, atol=1e-5)


# --- LayerNorm and RMSNorm of each library, read for the rule --------------------------------------------


def linen_rule(module, variables, x):
    """`rules.normalised` on a linen norm's output, its parameters read inside `apply`."""
    from gradcam_jax._src.adapters import layers
    from gradcam_jax._src.relevance import rules as R

    return module.apply(variables, x, method=lambda m, x: R.normalised(x, m(x), layers.norm(m, x)))


def norm_layers():
    """(tokens (3, 4), [(name, x -> the rule's output, scale, bias)]) for linen, NNX and Equinox LayerNorm
    and RMSNorm, each with a scale (and bias) away from 1 (and 0)."""
    from gradcam_jax._src.adapters import layers
    from gradcam_jax._src.relevance import rules as R

    key, other = jax.random.key(6), jax.random.key(7)
    x0 = jax.random.normal(jax.random.key(9), (3, 4))
    scale, bias = 1 + jax.random.normal(key, (4,)), jax.random.normal(other, (4,))
    found = []
    for linen_norm in (nn.LayerNorm(1e-6), nn.RMSNorm(1e-6)):
        params = {"scale": scale, "bias": bias} if isinstance(linen_norm, nn.LayerNorm) else {"scale": scale}

        rule = functools.partial(linen_rule, linen_norm, {"params": params})
        found.append((f"linen {type(linen_norm).__name__}", rule, scale, params.get("bias", 0.0)))
    for nnx_norm in (nnx.LayerNorm(4, epsilon=1e-6, rngs=nnx.Rngs(0)), nnx.RMSNorm(4, epsilon=1e-6, rngs=nnx.Rngs(0))):
        nnx_norm.scale[...] = scale  # pyright: ignore[reportOptionalSubscript]
        has_bias = getattr(nnx_norm, "bias", None) is not None
        if isinstance(nnx_norm, nnx.LayerNorm) and nnx_norm.bias is not None:
            nnx_norm.bias[...] = bias
        rule = lambda x, m=nnx_norm: R.normalised(x, m(x), layers.norm(m, x))  # noqa: E731
        found.append((f"nnx {type(nnx_norm).__name__}", rule, scale, bias if has_bias else 0.0))
    for eqx_norm in (eqx.nn.LayerNorm(4, eps=1e-6), eqx.nn.RMSNorm(4, eps=1e-6)):
        eqx_norm = eqx.tree_at(lambda m: (m.weight, m.bias), eqx_norm, (scale, bias))
        rule = lambda x, m=eqx_norm: jax.vmap(lambda t: R.normalised(t, m(t), layers.norm(m, t)))(x)  # noqa: E731
        found.append((f"equinox {type(eqx_norm).__name__}", rule, scale, bias))
    return x0, found


def test_layer_norm_and_rms_norm_rules_of_each_library():
    """Each library's LayerNorm and RMSNorm, its parameters read by `adapters.layers.norm`: the rule
    keeps the layer's output, and its relevance R_x = x * J^T (R_y / y) is lxt's explicit one: the bias
    keeps its share b / y of R_y, the rest goes through scale / std (identity) and, for LayerNorm,
    through x - mean (epsilon: R_x = x (h - mean(h)), h the relevance over x - mean)."""
    x, found = norm_layers()
    xn = np.asarray(x, np.float64)
    r_y = np.asarray(jax.random.normal(jax.random.key(8), (3, 4)), np.float64)
    for name, rule, scale, bias in found:
        centred = xn - xn.mean(-1, keepdims=True) if "Layer" in name else xn
        std = np.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-6)
        y_by_hand = centred / std * np.asarray(scale) + np.asarray(bias)
        y, vjp = jax.vjp(rule, x)
        np.testing.assert_allclose(y, y_by_hand, rtol=1e-5, atol=1e-5, err_msg=name)
        (g_x,) = vjp(jnp.asarray(r_y / y_by_hand, jnp.float32))
        kept = (y_by_hand - np.asarray(bias)) / y_by_hand * r_y  # relevance of scale * (x - mean) / std
        if "Layer" in name:
            h = kept / centred
            expected = xn * (h - h.mean(-1, keepdims=True))
        else:
            expected = kept  # RMSNorm: the identity
        np.testing.assert_allclose(np.asarray(x) * np.asarray(g_x), expected, rtol=1e-3, atol=1e-4, err_msg=name)

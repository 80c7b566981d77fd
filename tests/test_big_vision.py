"""big_vision's ViT (google-research/big_vision `vit.py`, vendored unchanged in tests/vendor/big_vision),
explained as its authors wrote it: pool types tok, gap and map, blocks in a Python loop or under
`nn.scan` (+ `nn.remat`, as big_vision trains). Every method result is checked against a reference
written here from the model's own weights: a hand-written forward pass (patch embedding, layer norms,
q/k/v, softmax, MLP, pooling, head) whose attention probabilities are explicit inputs, differentiated
with `jax.grad`. A scanned model's reference runs on its weights converted by big_vision's own
`scan_to_pyloop`."""

from __future__ import annotations

import functools
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src import maps

sys.path.insert(0, str(pathlib.Path(__file__).parent / "vendor" / "big_vision"))
from big_vision.models import vit  # noqa: E402

PATCH, SIZE, HEADS, DEPTH, CLASSES = 4, (16, 24), 2, 2, 5
GRID = (SIZE[0] // PATCH, SIZE[1] // PATCH)
TARGETS = np.array([1, 3])


@functools.cache
def built(pool: str, scan: bool):
    model = vit.Model(
        CLASSES, width=32, depth=DEPTH, num_heads=HEADS, mlp_dim=64, patch_size=(PATCH, PATCH),
        pool_type=pool, scan=scan, head_zeroinit=False,
    )  # fmt: skip
    images = jax.random.normal(jax.random.key(0), (2, *SIZE, 3))
    variables = model.init(jax.random.key(1), images)
    params = variables["params"]
    loop_params = vit.scan_to_pyloop(params) if scan else params  # big_vision's own conversion
    return model, variables, images, loop_params


def block_name(scan: bool, i: int) -> str:
    return f"Transformer/encoderblock[{i}]" if scan else f"Transformer/encoderblock_{i}"


# --- the reference: big_vision's ViT written out by hand -------------------------------------------


def layer_norm(p, x):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def mlp(p, x):
    h = jax.nn.gelu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


def attention(p, queries, keys, delta):
    """Multi-head attention with its probabilities (B, heads, q, k) explicit: softmax(q k / sqrt(d)) + delta."""
    q = jnp.einsum("bnc,chd->bnhd", queries, p["query"]["kernel"]) + p["query"]["bias"]
    k = jnp.einsum("bnc,chd->bnhd", keys, p["key"]["kernel"]) + p["key"]["bias"]
    v = jnp.einsum("bnc,chd->bnhd", keys, p["value"]["kernel"]) + p["value"]["bias"]
    a = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q / np.sqrt(q.shape[-1]), k), axis=-1) + delta
    o = jnp.einsum("bhqk,bkhd->bqhd", a, v)
    return jnp.einsum("bqhd,hdc->bqc", o, p["out"]["kernel"]) + p["out"]["bias"], a


def reference(params, pool, images, deltas, at=None, value=None):
    """(logits, {name: activation}, [A per block (+ the MAP probe's)], per-block head scores' inputs):
    the model's forward pass; `value` replaces the activation `at` ("embedding" or a block index)."""
    b = images.shape[0]
    p = params
    patches = images.reshape(b, GRID[0], PATCH, GRID[1], PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    kernel = p["embedding"]["kernel"].reshape(-1, p["embedding"]["kernel"].shape[-1])
    x = patches.reshape(b, *GRID, -1) @ kernel + p["embedding"]["bias"]
    seen = {"embedding": x}
    x = x if at != "embedding" else value
    x = x.reshape(b, GRID[0] * GRID[1], -1) + p["pos_embedding"]
    if pool == "tok":
        x = jnp.concatenate([jnp.tile(p["cls"], (b, 1, 1)), x], axis=1)
    probabilities, blocks = [], []
    for i in range(DEPTH):
        q = p["Transformer"][f"encoderblock_{i}"]
        y = layer_norm(q["LayerNorm_0"], x)
        y, a = attention(q["MultiHeadDotProductAttention_0"], y, y, deltas[i])
        x = x + y
        x = x + mlp(q["MlpBlock_0"], layer_norm(q["LayerNorm_1"], x))
        probabilities.append(a)
        seen[i] = x
        x = x if at != i else value
        blocks.append(x)
    logits = head(params, pool, x, deltas[DEPTH] if pool == "map" else None, probabilities)
    return logits, seen, probabilities, blocks


def head(params, pool, tokens, delta=None, probabilities=None):
    p = params
    x = layer_norm(p["Transformer"]["encoder_norm"], tokens)
    if pool == "tok":
        x = x[:, 0]
    elif pool == "gap":
        x = x.mean(axis=1)
    else:
        m = p["MAPHead_0"]
        probe = jnp.tile(m["probe"], (x.shape[0], 1, 1))
        delta = jnp.zeros((x.shape[0], HEADS, 1, x.shape[1])) if delta is None else delta
        x, a = attention(m["MultiHeadDotProductAttention_0"], probe, x, delta)
        if probabilities is not None:
            probabilities.append(a)
        x = (x + mlp(m["MlpBlock_0"], layer_norm(m["LayerNorm_0"], x)))[:, 0]
    return x @ p["head"]["kernel"] + p["head"]["bias"]


def zero_deltas(pool):
    n = GRID[0] * GRID[1] + (pool == "tok")
    deltas = [jnp.zeros((2, HEADS, n, n)) for _ in range(DEPTH)]
    return deltas + ([jnp.zeros((2, HEADS, 1, n))] if pool == "map" else [])


def picked(logits):
    return logits[jnp.arange(2), TARGETS].sum()  # images are independent: one grad gives each its own


def finish(raw):
    return np.asarray(maps.finish(jnp.asarray(raw)[:, None], SIZE))[:, 0]


def correlation(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def on_grid(tokens, pool):
    return tokens[:, 1:] if pool == "tok" else tokens


# --- Grad-CAM ----------------------------------------------------------------------------------------

CASES = [(pool, scan) for scan in (False, True) for pool in ("tok", "gap", "map")]


@pytest.mark.parametrize("pool,scan", CASES)
def test_grad_cam_at_a_block_and_by_default(pool, scan):
    model, variables, images, params = built(pool, scan)
    assert gj.default_layer(model, variables, images) == "embedding"  # not `head` on the 2-D token map
    for layer, at in ((block_name(scan, 0), 0), (None, "embedding")):
        result = gj.grad_cam(model, variables, images, TARGETS, layer=layer, score="logit")
        _, seen, _, _ = reference(params, pool, images, zero_deltas(pool))
        activation = seen[at]
        gradient = jax.grad(lambda a, at=at: picked(reference(params, pool, images, zero_deltas(pool), at, a)[0]))(
            activation
        )
        if at != "embedding":  # tokens -> their grid, the class token dropped
            activation = on_grid(activation, pool).reshape(2, *GRID, -1)
            gradient = on_grid(gradient, pool).reshape(2, *GRID, -1)
        np.testing.assert_allclose(result.activations, activation, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(result.gradients.reshape(gradient.shape), gradient, rtol=1e-3, atol=1e-6)
        raw = (activation * gradient.mean(axis=(1, 2), keepdims=True)).sum(-1)
        assert correlation(result.map, finish(raw)) > 0.999


def test_scanned_block_needs_its_index_and_elements_are_selectable():
    model, variables, images, params = built("gap", True)
    with pytest.raises(gj.UnknownLayerError, match=r"runs under nn.scan \(2 iterations\).*encoderblock\[0\]"):
        gj.grad_cam(model, variables, images, layer="Transformer/encoderblock")
    # `[1]` is the block's dict of intermediates, `[+sa]` its residual stream after attention
    shapes = gj.layer_shapes(model, variables, images)
    assert shapes["Transformer/encoderblock[1]"].shape == (2, 24, 32)  # the block's first array: x
    result = gj.grad_cam(model, variables, images, TARGETS, layer="Transformer/encoderblock[1][1][+sa]")
    assert result.activations.shape == (2, *GRID, 32) and np.isfinite(result.map).all()
    unscanned, unscanned_variables, _, _ = built("gap", False)
    twin = gj.grad_cam(
        unscanned, {"params": params}, images, TARGETS, layer='Transformer/encoderblock_1[1]["+sa"]'
    )  # same weights in a Python loop
    np.testing.assert_allclose(result.map, twin.map, atol=1e-4)
    del unscanned_variables


# --- attention methods -------------------------------------------------------------------------------


def rollout_reference(probabilities, pool):
    joint = None
    for a in probabilities[:DEPTH]:
        a = a.mean(axis=1)
        a = 0.5 * a + 0.5 * jnp.eye(a.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        joint = a if joint is None else a @ joint
    assert joint is not None
    if pool == "map":
        row = (probabilities[DEPTH].mean(axis=1) @ joint)[:, 0]  # the probe's attention row
    elif pool == "tok":
        row = joint[:, 0]
    else:
        row = joint.mean(axis=1)
    return on_grid(row, pool).reshape(2, *GRID)


@pytest.mark.parametrize("pool,scan", [("tok", False), ("gap", False), ("map", False), ("map", True)])
def test_attention_methods_against_explicit_attention(pool, scan):
    model, variables, images, params = built(pool, scan)
    deltas = zero_deltas(pool)
    _, _, probabilities, _ = reference(params, pool, images, deltas)
    blocks = tuple(block_name(scan, i) for i in range(DEPTH))

    rollout = gj.attention_rollout(model, variables, images, blocks=blocks)  # prefix tokens inferred
    assert correlation(rollout.map, finish(rollout_reference(probabilities, pool))) > 0.999

    grads = jax.grad(lambda d: picked(reference(params, pool, images, d)[0]))(deltas)
    n = deltas[0].shape[-1]
    relevance = jnp.broadcast_to(jnp.eye(n), (2, n, n))
    for a, g in zip(probabilities[:DEPTH], grads[:DEPTH]):
        relevance = relevance + jax.nn.relu(g * a).mean(axis=1) @ relevance
    if pool == "map":
        row = (jax.nn.relu(grads[DEPTH] * probabilities[DEPTH]).mean(axis=(1, 2))[:, None] @ relevance)[:, 0]
    else:
        row = relevance[:, 0] if pool == "tok" else relevance.mean(axis=1)
    generic = gj.generic_attention(model, variables, images, TARGETS, blocks=blocks)
    assert correlation(generic.map, finish(on_grid(row, pool).reshape(2, *GRID))) > 0.999

    def legrad_head(variables, tokens):
        return head(params, pool, tokens)

    per_block = []
    for i in range(DEPTH):  # block i's own score, differentiated w.r.t. block i's attention only
        g = jax.grad(lambda d, i=i: picked(head(params, pool, reference(params, pool, images, d)[3][i])))(deltas)[i]
        per_block.append(on_grid(jax.nn.relu(g).mean(axis=(1, 2)), pool).reshape(2, *GRID))
    legrad = gj.legrad(model, variables, images, TARGETS, head=legrad_head, blocks=blocks)
    assert correlation(legrad.map, finish(jnp.mean(jnp.stack(per_block), axis=0))) > 0.999


def test_prefix_inference_and_its_ambiguity():
    model, variables, images, _ = built("gap", False)
    from gradcam_jax._src.adapters import tokens

    assert tokens.inferred_layout(24, SIZE, (4, 6)) == (0, (4, 6))  # big_vision gap: the embedding's grid
    assert tokens.inferred_layout(25, SIZE, (4, 6)) == (1, (4, 6))
    with pytest.raises(ValueError, match=r"17 tokens .* 1 \+ 4x4 or 8 \+ 3x3.*prefix_tokens="):
        tokens.inferred_layout(17, (32, 32))
    shapes = {c.path: c.reason for c in gj.explain_default_layer(model, variables, images)}
    assert shapes["embedding"].startswith("chosen") and "side branch" in shapes["head"]


def test_googlenet_keeps_its_own_default_layer():
    from gradcam_jax.models import GoogLeNet

    googlenet = GoogLeNet()
    x = jnp.zeros((1, 224, 224, 3))
    shapes = jax.eval_shape(googlenet.init, jax.random.key(0), x)
    assert gj.default_layer(googlenet, shapes, x) == "inception_5b-output"


def test_tapping_leaves_no_patch_behind():
    model, variables, images, _ = built("tok", True)
    with gj._src.adapters.taps.tap(["Transformer/encoderblock[0]"]):  # pyright: ignore
        pass
    assert jax.checkpoint is not None and nn.scan is not None
    out, _ = model.apply(variables, images)  # the real scan and remat, outside any tap
    assert out.shape == (2, CLASSES)

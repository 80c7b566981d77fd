"""Real equimo (issue 26, "Models as their authors wrote them"): equimo's own `VisionTransformer`, built
by its constructor at a tiny size with random weights, explained as equimo writes it: one (C, H, W)
example per call (the library vmaps it), `__call__(x, key=None, inference=None)`, blocks of (N, C)
tokens in a `BlockChunk`, and an `Attention` that computes its softmax inline and applies `attn_drop`
(an `eqx.nn.Dropout`) after it.

Grad-CAM (at a named block, and with `layer=None`) is checked against `jax.grad` through the model split
by hand (its forward written out here from its own submodules, a perturbation added at the layer); the
attention methods read their probabilities at `attn_drop` (`attention_at`), checked against
softmax(q k^T / sqrt(d)) recomputed from each block's `qkv` weights, and rollout, generic attention and
LeGrad against their formulas on those probabilities.

equimo needs Python >= 3.12; the main suite runs 3.11, where this file skips. `.ci/equimo` runs it in a
Python 3.12 virtual environment of its own (equimo 2.7.0, jax 0.12.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
pytest.importorskip("equimo", reason="equimo is not installed (it needs Python >= 3.12); .ci/equimo runs this file")

from equimo.vision.models.vit import VisionTransformer  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src import maps  # noqa: E402
from gradcam_jax._src.adapters import attention, taps  # noqa: E402
from tests.test_frameworks import hand_grad_cam  # noqa: E402

SIZE, PATCH, GRID = 32, 8, (4, 4)
ATTN_DROP = "blocks/*/blocks/*/attn/attn_drop"  # where equimo's probabilities are: the dropout after the softmax
BLOCKS = ("blocks/0/blocks/0", "blocks/0/blocks/1")  # one BlockChunk of two AttentionBlocks
CONFIGS = {
    # equimo's constructor defaults: a class token and 4 register tokens, patch tokens averaged
    "avg-4-registers": {},
    # its vit_* configurations: a class token alone, read by the head
    "token": {"reg_tokens": 0, "global_pool": "token"},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def vit(request):
    net = VisionTransformer(
        img_size=SIZE,
        in_channels=3,
        dim=32,
        patch_size=PATCH,
        num_heads=2,
        depths=[2],
        num_classes=5,
        key=jax.random.key(0),
        **CONFIGS[request.param],
    )
    # random prefix tokens and positions (equimo initialises some of them to zeros)
    keys = jax.random.split(jax.random.key(2), 3)
    net = eqx.tree_at(lambda n: n.cls_token, net, jax.random.normal(keys[0], net.cls_token.shape))
    net = eqx.tree_at(
        lambda n: n.global_pos_embed.weight, net, 0.5 * jax.random.normal(keys[1], net.global_pos_embed.weight.shape)
    )
    if net.reg_tokens is not None:
        net = eqx.tree_at(lambda n: n.reg_tokens, net, jax.random.normal(keys[2], net.reg_tokens.shape))
    params, static = eqx.partition(net, eqx.is_array)
    images = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    return net, params, static, images


# --- equimo's forward, split by hand -------------------------------------------------------------------


def attention_by_hand(attn, h, delta):
    """equimo's `Attention` on normed tokens h (N, C) from its `qkv` and `proj` weights: the output and
    the probabilities softmax(q k^T / sqrt(d)) (heads, N, N), `delta` added to them."""
    n = h.shape[0]
    qkv = jax.vmap(attn.qkv)(h).reshape(n, 3, attn.num_heads, attn.head_dim)
    q, k, v = (qkv[:, i].transpose(1, 0, 2) for i in range(3))  # (heads, N, d)
    probabilities = jax.nn.softmax(q @ k.transpose(0, 2, 1) / np.sqrt(attn.head_dim), axis=-1)
    out = ((probabilities + delta) @ v).transpose(1, 0, 2).reshape(n, -1)
    return jax.vmap(attn.proj)(out), probabilities


def block_by_hand(block, x, delta):
    """equimo's pre-norm `AttentionBlock` (no layer scale, no post-attention norm, drop path off)."""
    assert all(isinstance(m, eqx.nn.Identity) for m in (block.postnorm, block.ls1, block.ls2))
    assert all(isinstance(m, eqx.nn.Identity) for m in (block.attn.q_norm, block.attn.k_norm))
    out, probabilities = attention_by_hand(block.attn, jax.vmap(block.prenorm)(x), delta)
    x = x + out
    return x + block.mlp(jax.vmap(block.norm)(x), key=None, inference=True), probabilities


def head_by_hand(net, tokens):
    """Final norm, equimo's pooling (the class token, or the mean of the patch tokens), classifier."""
    tokens = jax.vmap(net.norm)(tokens)
    pooled = tokens[0] if net.global_pool == "token" else tokens[net.num_prefix_tokens :].mean(axis=0)
    return net.head(pooled)


def forward(net, x, add, attention_deltas):
    """One (C, H, W) example: logits, each block's probabilities (heads, N, N) and output (N, C).
    add: {"grid": delta on the patch embedding's (C, h, w) map, i: delta on block i's output tokens};
    attention_deltas: one delta per block, added to its probabilities."""
    (chunk,) = net.blocks
    assert isinstance(chunk.posemb, eqx.nn.Identity) and chunk.downsample is None
    grid = net.patch_embed.proj(x) + add.get("grid", 0.0)
    tokens = jax.vmap(net.patch_embed.norm)(grid.reshape(grid.shape[0], -1).T)  # row-major patches
    tokens = net.global_pos_embed(tokens, cls_token=net.cls_token, reg_tokens=net.reg_tokens, dynamic_img_size=False)
    probabilities, outputs = [], []
    for i, block in enumerate(chunk.blocks):
        tokens, a = block_by_hand(block, tokens, attention_deltas[i])
        tokens = tokens + add.get(i, 0.0)
        probabilities.append(a)
        outputs.append(tokens)
    return head_by_hand(net, tokens), probabilities, outputs


def batched(net, images, add=None, attention_deltas=None):
    """`forward` over the NHWC batch, each image as the channel-first example equimo takes."""
    add = add or {}
    attention_deltas = attention_deltas or [jnp.zeros(len(images))] * len(net.blocks[0].blocks)
    return jax.vmap(lambda x, a, d: forward(net, x, a, d))(images.transpose(0, 3, 1, 2), add, attention_deltas)


def patches(tokens, prefix):
    """(B, prefix + h*w, C) tokens -> (B, h, w, C), the prefix (class and register tokens) dropped."""
    return tokens[:, prefix:].reshape(tokens.shape[0], *GRID, tokens.shape[-1])


def finish(raw):
    return np.asarray(maps.finish(jnp.asarray(raw), (SIZE, SIZE)))


# --- the tests -------------------------------------------------------------------------------------------


def test_the_split_is_the_model(vit):
    net, params, static, images = vit
    logits = taps.call_model(static, params, images)  # the library's call: vmapped, inference=True
    np.testing.assert_allclose(logits, jax.vmap(lambda x: net(x, inference=True))(images.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(batched(net, images)[0], logits, atol=1e-5)
    shapes = gj.layer_shapes(static, params, images)
    assert shapes[BLOCKS[1]].shape == (2, net.num_prefix_tokens + 16, 32)  # (N, C) tokens per example


def test_grad_cam_at_a_block_and_by_default(vit):
    net, params, static, images = vit
    prefix = net.num_prefix_tokens
    _, _, outputs = batched(net, images)

    def at_block(delta):  # delta (B, h, w, C) on block 0's patch tokens; none on its prefix tokens
        padded = jnp.concatenate([jnp.zeros((2, prefix, delta.shape[-1])), delta.reshape(2, 16, -1)], axis=1)
        return batched(net, images, {0: padded})[0]

    activation = patches(outputs[0], prefix)
    expected, gradients = hand_grad_cam(at_block, activation, (SIZE, SIZE))
    result = gj.grad_cam(static, params, images, layer=BLOCKS[0])
    np.testing.assert_allclose(result.activations, activation, atol=1e-5)
    np.testing.assert_allclose(result.gradients, gradients, atol=1e-4 * float(jnp.abs(gradients).max()))
    np.testing.assert_allclose(result.map, expected, atol=1e-5)
    assert float(jnp.abs(gradients).max()) > 0 and np.ptp(expected) > 0.5

    # layer=None: the last spatial map, the patch embedding's (C, h, w) output (read channel-last)
    assert taps.default_layer(static, params, images) == "patch_embed/proj"
    activation = jax.vmap(net.patch_embed.proj)(images.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    expected, gradients = hand_grad_cam(
        lambda d: batched(net, images, {"grid": d.transpose(0, 3, 1, 2)})[0], activation, (SIZE, SIZE)
    )
    result = gj.grad_cam(static, params, images)
    np.testing.assert_allclose(result.activations, activation, atol=1e-5)
    np.testing.assert_allclose(result.gradients, gradients, atol=1e-4 * float(jnp.abs(gradients).max()))
    np.testing.assert_allclose(result.map, expected, atol=1e-5)


@pytest.mark.parametrize("where", [ATTN_DROP, (jax.nn, "softmax")], ids=["attn_drop", "softmax"])
def test_attention_read_where_equimo_computes_it(vit, where):
    net, params, static, images = vit
    _, expected, _ = batched(net, images)  # recomputed from each block's qkv weights
    _, tapped = attention.forward(gj.attention_at(static, where), params, images)
    assert list(tapped.probabilities) == [f"{b}/attn" for b in BLOCKS]
    for got, want in zip(tapped.probabilities.values(), expected):
        assert got.shape == (2, 2, net.num_prefix_tokens + 16, net.num_prefix_tokens + 16)
        np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="no attention submodule.*attention_at"):
        gj.attention_rollout(static, params, images)  # inline softmax, not named: nothing to read


def test_attention_methods_follow_their_formulas(vit):
    net, params, static, images = vit
    named = gj.attention_at(static, ATTN_DROP)
    prefix, n = net.num_prefix_tokens, net.num_prefix_tokens + 16
    logits, probabilities, _ = batched(net, images)
    layout = attention.attention_layout(named, params, images)
    assert [b.path for b in attention.resolve_blocks(layout)] == list(BLOCKS)

    joint = np.eye(n)
    for a in probabilities:  # R = A_L ... A_1, each the heads' mean half-mixed with the identity
        fused = 0.5 * np.asarray(a).mean(axis=1) + 0.5 * np.eye(n)
        joint = (fused / fused.sum(-1, keepdims=True)) @ joint
    rollout = gj.attention_rollout(named, params, images)
    np.testing.assert_allclose(rollout.map, finish(joint[:, 0, prefix:].reshape(2, *GRID)), atol=1e-5)

    classes = jnp.argmax(logits, axis=-1)  # top-1, scored by its logit
    zeros = [jnp.zeros_like(a) for a in probabilities]
    grads = jax.grad(lambda d: batched(net, images, None, d)[0][jnp.arange(2), classes].sum())(zeros)
    relevance = np.broadcast_to(np.eye(n), (2, n, n))
    for a, g in zip(probabilities, grads):
        relevance = relevance + np.maximum(np.asarray(g * a), 0).mean(axis=1) @ relevance
    generic = gj.generic_attention(named, params, images)
    np.testing.assert_allclose(generic.map, finish(relevance[:, 0, prefix:].reshape(2, *GRID)), atol=1e-5)

    def head(params, tokens):  # LeGrad's head: the model's own final norm, pooling and classifier
        return jax.vmap(lambda t: head_by_hand(eqx.combine(params, static), t))(tokens)

    per_block = []
    for i in range(len(BLOCKS)):  # block i's own score, differentiated w.r.t. block i's attention only

        def block_score(delta, i=i):
            deltas = [delta if j == i else z for j, z in enumerate(zeros)]
            return head(params, batched(net, images, None, deltas)[2][i])[jnp.arange(2), classes].sum()

        g = jax.grad(block_score)(zeros[i])
        per_block.append(np.maximum(np.asarray(g), 0).mean(axis=(1, 2))[:, prefix:].reshape(2, *GRID))
    legrad = gj.legrad(named, params, images, head=head)
    np.testing.assert_allclose(legrad.map, finish(np.mean(per_block, axis=0)), atol=1e-5)
    for result in (rollout, generic, legrad):
        assert result.map.shape == (2, SIZE, SIZE) and np.ptp(result.map) > 0.5

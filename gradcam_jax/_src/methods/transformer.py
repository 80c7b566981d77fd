"""What the transformer methods (`attention_rollout`, `generic_attention`, `legrad`) share: which
blocks they read, how the tokens lie on the image, and the last step from token relevance to a map.

Tokens are `prefix_tokens` leading tokens (class, registers) followed by the patches in row-major
order on a grid (h, w) that follows the image's aspect ratio unless `grid` is given
(`adapters.tokens.patch_grid`). With neither given (the default) both are inferred: from the model's
patch embedding, the last spatial map it computes before its first attention (h*w patches, the
other tokens lead: 0 for a GAP- or MAP-pooled ViT, 1 with a class token), else from the token count
and the image alone, a ValueError when that is ambiguous (`adapters.tokens.inferred_layout`).
A method's relevance R (B, [K,] N, N) is a product of one matrix per block, and is read on one row
over the patch keys (`readout`): where the model pools its tokens with an attention after its blocks
(a MAP head: a cross-attention whose few probe queries attend to the N tokens, `pooling_attention`),
the probe's attention row; else the class token's row (the first prefix token); with no prefix
tokens (a GAP-pooled ViT) the mean of all rows. `final_row` carries that row through the blocks'
matrices, last block first, without forming R.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax._src.adapters import attention, taps, tokens


class TokenSetup(NamedTuple):
    blocks: tuple[attention.Block, ...]  # in call order
    shapes: dict[str, jax.ShapeDtypeStruct]  # attention path -> (B, heads, N, N), the chosen blocks (and `pool`)
    prefix: int  # leading non-patch tokens
    grid: tuple[int, int]  # (h, w) of the patch tokens
    layout: attention.AttentionLayout  # the whole model's
    pool: str | None = None  # the pooling (MAP) attention's path, probes (B, heads, q, N) over the tokens


def embedding_grid(layout: attention.AttentionLayout, first_attention: str, image_shape) -> tuple[int, int] | None:
    """(h, w) of the last spatial map (B, h, w, C) the model computes before the attention at
    `first_attention`: its patch embedding (None if there is none)."""
    grid = None
    for path, shape in layout.outputs.items():
        if path == first_attention or path.startswith(first_attention + "/"):
            break
        if len(shape.shape) == 4 and taps.is_spatial_map(shape.shape, image_shape):
            grid = (int(shape.shape[1]), int(shape.shape[2]))
    return grid


def pooling_attention(layout: attention.AttentionLayout, blocks, tokens: int) -> str | None:
    """The path of the attention that pools the tokens after the last block, if the model has one:
    the first cross-attention called after it whose keys are the `tokens` tokens and whose queries
    are fewer (a MAP head's probe; big_vision's `MAPHead_0/MultiHeadDotProductAttention_0`)."""
    order = list(layout.probabilities)
    last = max(order.index(b.attention) for b in blocks)
    for path in order[last + 1 :]:
        shape = layout.probabilities[path].shape
        if not layout.self_attention[path] and shape[-1] == tokens and shape[-2] < tokens:
            return path
    return None


def token_setup(
    model, variables, images, blocks: Iterable[str] | None, prefix_tokens: int | None, grid: tuple[int, int] | None
) -> TokenSetup:
    """The checked setup of a transformer method; one ValueError for bad input, before any FLOPs."""
    if images.ndim != 4:
        raise ValueError(f"the transformer methods explain (B, H, W, C) images; got shape {tuple(images.shape)}")
    layout = attention.attention_layout(model, variables, images)
    chosen = attention.resolve_blocks(layout, blocks)
    shapes = {b.attention: layout.probabilities[b.attention] for b in chosen}
    counts = {s.shape[-1] for s in shapes.values()} | {s.shape[-2] for s in shapes.values()}
    if len(counts) != 1:
        raise ValueError(f"the blocks' attention covers different token counts {sorted(counts)}; pick blocks alike")
    n = counts.pop()
    if prefix_tokens is None:  # the patch embedding's grid, else the image's tiling
        embedding = embedding_grid(layout, next(iter(layout.probabilities)), images.shape)
        if grid is None:
            prefix, grid = tokens.inferred_layout(n, images.shape[1:3], embedding)
        else:  # the embedding still says how many tokens lead
            lead = n - embedding[0] * embedding[1] if embedding is not None else -1
            prefix, grid = tokens.token_layout(n, images.shape[1:3], lead if lead >= 0 else None, grid)
    else:
        prefix, grid = tokens.token_layout(n, images.shape[1:3], prefix_tokens, grid)
    pool = pooling_attention(layout, chosen, n)
    if pool is not None:
        shapes[pool] = layout.probabilities[pool]
    return TokenSetup(chosen, shapes, prefix, grid, layout, pool)


def readout(setup: TokenSetup, shape: tuple[int, ...], pool_row: jax.Array | None = None) -> jax.Array:
    """(..., N) the row a map reads relevance on: with a pooling attention (`setup.pool`) its row
    `pool_row` (..., N) (the probe's attention, fused over heads and probes); else the class token's
    one-hot row, or with no prefix tokens the mean over all query rows. `shape` is (..., N)."""
    if setup.pool is not None and pool_row is not None:
        return jnp.broadcast_to(pool_row, shape)
    row = jax.nn.one_hot(0, shape[-1]) if setup.prefix else jnp.full(shape[-1], 1.0 / shape[-1])
    return jnp.broadcast_to(row, shape)


def final_row(steps: Sequence[jax.Array], setup: TokenSetup, pool_row: jax.Array | None = None) -> jax.Array:
    """(..., N): the `readout` row of the product of the blocks' token-to-token matrices `steps`
    (..., N, N), first block first (R = S_L ... S_1). The row goes through the matrices from the
    last block down (vector times matrix), so R itself, N times as costly, is never formed."""
    row = readout(setup, steps[-1].shape[:-1], pool_row).astype(steps[-1].dtype)
    for step in reversed(steps):
        row = (row[..., None, :] @ step)[..., 0, :]
    return row


def on_grid(keys: jax.Array, setup: TokenSetup) -> jax.Array:
    """(..., N) relevance of the tokens -> (..., h, w): the prefix dropped, the patches on their grid."""
    return keys[..., setup.prefix :].reshape(*keys.shape[:-1], *setup.grid)


# read a model's attention
ATTENTION_METHODS = ("attention_rollout", "generic_attention", "legrad", "attn_lrp", "cp_lrp")
NEEDS_HEAD = ("legrad",)  # take a `head` function, which a front end (CLI, explorer) cannot supply


def method_names(methods, model=None, variables=None, images=None) -> list[str]:
    """The names in `methods` a front end offers for `model` (None: GoogLeNet, the CLI's): the
    attention methods only where the model has self-attention, and none that needs a `head`."""
    has = model is not None and attention.has_attention(model, variables, images)
    return sorted(m for m in methods if m not in NEEDS_HEAD and (has or m not in ATTENTION_METHODS))

"""What the transformer methods (`attention_rollout`, `generic_attention`, `legrad`) share: which
blocks they read, how the tokens lie on the image, and the last step from token relevance to a map.

Tokens are `prefix_tokens` leading tokens (class, registers) followed by the patches in row-major
order on a grid (h, w) that follows the image's aspect ratio unless `grid` is given
(`adapters.tokens.patch_grid`). A method's relevance R (B, [K,] N, N) is read on the class token's
row (the first prefix token) over the patch keys; with `prefix_tokens=0` (a GAP-pooled ViT) on the
mean of all rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import jax

from gradcam_jax._src.adapters import attention, tokens


class TokenSetup(NamedTuple):
    blocks: tuple[attention.Block, ...]  # in call order
    shapes: dict[str, jax.ShapeDtypeStruct]  # attention path -> (B, heads, N, N), for the chosen blocks
    prefix: int  # leading non-patch tokens
    grid: tuple[int, int]  # (h, w) of the patch tokens
    layout: attention.AttentionLayout  # the whole model's


def token_setup(
    model, variables, images, blocks: Iterable[str] | None, prefix_tokens: int, grid: tuple[int, int] | None
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
    prefix, grid = tokens.token_layout(counts.pop(), images.shape[1:3], prefix_tokens, grid)
    return TokenSetup(chosen, shapes, prefix, grid, layout)


def class_row(relevance: jax.Array, prefix: int) -> jax.Array:
    """(..., N, N) token-to-token relevance -> (..., N): the class token's row, or with no prefix
    tokens the mean over all query rows."""
    return relevance[..., 0, :] if prefix else relevance.mean(axis=-2)


def on_grid(keys: jax.Array, setup: TokenSetup) -> jax.Array:
    """(..., N) relevance of the tokens -> (..., h, w): the prefix dropped, the patches on their grid."""
    return keys[..., setup.prefix :].reshape(*keys.shape[:-1], *setup.grid)


ATTENTION_METHODS = ("attention_rollout", "generic_attention", "legrad")  # read a model's attention
NEEDS_HEAD = ("legrad",)  # take a `head` function, which a front end (CLI, explorer) cannot supply


def method_names(methods, model=None, variables=None, images=None) -> list[str]:
    """The names in `methods` a front end offers for `model` (None: GoogLeNet, the CLI's): the
    attention methods only where the model has self-attention, and none that needs a `head`."""
    has = model is not None and attention.has_attention(model, variables, images)
    return sorted(m for m in methods if m not in NEEDS_HEAD and (has or m not in ATTENTION_METHODS))

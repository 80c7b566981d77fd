"""Transformer layers as grids: `reshape` hooks that turn token outputs into (B, h, w, C) maps.

A ViT block outputs tokens (B, prefix + h*w, C): a class token (and, in some models, register
tokens) followed by the patches in row-major order. Grad-CAM needs a grid, so

    grad_cam(model, variables, images, layer="Block_0", reshape=tokens_to_grid)

drops the prefix tokens and lays the patch tokens out on their grid. The hook is a static argument
of the jitted method, so pass a module-level function, or build a `functools.partial` once and
reuse it (jit keys a partial on its identity):

    dino_grid = functools.partial(tokens_to_grid, prefix_tokens=5)   # class + 4 register tokens

Without a hook, a token layer is laid out by `token_layout`: the grid follows the image's aspect
ratio (a 224x320 image with 16-px patches: 280 patch tokens on a 14x20 grid) and the prefix is the
fewest leading tokens whose remainder tiles it. The attention methods (`attention_rollout`,
`generic_attention`, `legrad`) read their keys with the same rule, `patch_grid`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax


def tokens_to_grid(tokens: jax.Array, grid: tuple[int, int] | None = None, prefix_tokens: int = 1) -> jax.Array:
    """(B, prefix_tokens + h*w, C) tokens -> (B, h, w, C) patch grid, the prefix (class token) dropped.

    grid: (h, w); None means square, h = w = sqrt(number of patch tokens). Patches are in row-major
    order (what `Conv(patch, strides=patch)` followed by `reshape(B, -1, C)` produces). Only moves
    and drops entries, as `gradients.layer_gradients` requires of a `reshape` hook.
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (B, tokens, C); got shape {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:]
    n = patches.shape[1]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a square grid; pass grid=(h, w)")
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise ValueError(f"grid {tuple(grid)} does not hold the {n} patch tokens")
    return patches.reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[-1])


def patch_grid(patches: int, image_size: tuple[int, ...], grid: tuple[int, int] | None = None) -> tuple[int, int]:
    """(h, w) of `patches` patch tokens of an image of `image_size` (H, W): `grid` if given (a
    ValueError unless h*w == patches), else the factorisation h*w = patches whose h/w is nearest H/W."""
    if grid is not None:
        if len(grid) != 2 or grid[0] * grid[1] != patches:
            raise ValueError(f"grid {tuple(grid)} does not hold the {patches} patch tokens")
        return int(grid[0]), int(grid[1])
    if patches < 1:
        raise ValueError(f"no patch tokens to lay out ({patches})")
    ratio = math.log(image_size[0] / image_size[1])
    pairs = [(h, patches // h) for h in range(1, patches + 1) if patches % h == 0]
    return min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1]) - ratio))


def tiles(patches: int, image_size: tuple[int, ...]) -> bool:
    """Whether `patches` tokens tile an image of `image_size` (H, W) exactly: h*w = patches, h/w = H/W."""
    h, w = patch_grid(patches, image_size) if patches > 0 else (0, 1)
    return h > 0 and h * image_size[1] == w * image_size[0]


def token_layout(
    tokens: int, image_size: tuple[int, ...], prefix_tokens: int | None = None, grid: tuple[int, int] | None = None
) -> tuple[int, tuple[int, int]]:
    """(prefix tokens, (h, w)) of a layer of `tokens` tokens of an image of `image_size` (H, W).

    prefix_tokens None: the fewest leading tokens (class, registers) whose remainder fills `grid`, or
    tiles the image (`tiles`) when no grid is given; 197 tokens of a 224x224 image: 1 and (14, 14).
    ValueError when no prefix fits or `prefix_tokens` leaves no patch token.
    """
    if prefix_tokens is None:
        fits = (lambda n: n == grid[0] * grid[1]) if grid is not None else (lambda n: tiles(n, image_size))
        prefix_tokens = next((p for p in range(tokens) if fits(tokens - p)), None)
        if prefix_tokens is None:
            raise ValueError(
                f"{tokens} tokens do not lay out on a grid of the {tuple(image_size)} image after any prefix; "
                "pass grid=(h, w) and prefix_tokens (or reshape=)"
            )
    if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int) or prefix_tokens < 0:
        raise ValueError(f"prefix_tokens must be a non-negative integer; got {prefix_tokens!r}")
    if prefix_tokens >= tokens:
        raise ValueError(f"prefix_tokens={prefix_tokens} leaves none of the {tokens} tokens as patches")
    return prefix_tokens, patch_grid(tokens - prefix_tokens, image_size, grid)


def auto_grid(tokens: jax.Array, image_size: tuple[int, ...]) -> jax.Array:
    """(B, N, C) tokens -> (B, h, w, C) patches, laid out by `token_layout` for an image of `image_size`."""
    prefix, grid = token_layout(tokens.shape[1], image_size)
    return tokens_to_grid(tokens, grid, prefix)


def grid_hook(reshape: Callable | None, layer_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> Callable | None:
    """The hook that lays a layer's output out as (B, h, w, C): `reshape` if given; else, for a token
    output (B, N, C) of (B, H, W, C) images, `auto_grid`; else None (the output is a grid already)."""
    if reshape is None and len(layer_shape) == 3 and len(image_shape) == 4:
        return functools.partial(auto_grid, image_size=tuple(image_shape[1:3]))
    return reshape


def inferred_layout(
    tokens: int, image_size: tuple[int, ...], embedding: tuple[int, int] | None = None
) -> tuple[int, tuple[int, int]]:
    """(prefix tokens, (h, w)) of `tokens` tokens of an image of `image_size` (H, W), nothing given.

    embedding: the (h, w) grid of the model's patch embedding (a spatial map the model computes
    before its first attention, e.g. big_vision's `embedding` conv): the patches are h*w tokens and
    the rest lead (`tokens - h*w` prefix tokens; 0 for a GAP- or MAP-pooled ViT). Without one, the
    prefix is the one count up to 16 whose remainder tiles the image (`tiles`); a ValueError asking
    for `prefix_tokens=`/`grid=` when several do (17 tokens of a square image: 1 + 4x4 or 8 + 3x3)
    or none does.
    """
    if embedding is not None and 0 < embedding[0] * embedding[1] <= tokens:
        return tokens - embedding[0] * embedding[1], (int(embedding[0]), int(embedding[1]))
    fits = [p for p in range(min(tokens, 17)) if tiles(tokens - p, image_size)]
    if len(fits) == 1:
        return fits[0], patch_grid(tokens - fits[0], image_size)
    if fits:
        readings = " or ".join(f"{p} + {'x'.join(map(str, patch_grid(tokens - p, image_size)))}" for p in fits)
        raise ValueError(
            f"{tokens} tokens of a {tuple(image_size)} image lay out as {readings} (prefix + grid); "
            "pass prefix_tokens= (and grid=)"
        )
    return token_layout(tokens, image_size)

"""Transformer layers as grids: `reshape` hooks that turn token outputs into (B, h, w, C) maps.

A ViT block outputs tokens (B, prefix + h*w, C): a class token (and, in some models, register
tokens) followed by the patches in row-major order. Grad-CAM needs a grid, so

    grad_cam(model, variables, images, layer="Block_0", reshape=tokens_to_grid)

drops the prefix tokens and lays the patch tokens out on their grid. The hook is a static argument
of the jitted method, so pass a module-level function, or build a `functools.partial` once and
reuse it (jit keys a partial on its identity):

    dino_grid = functools.partial(tokens_to_grid, prefix_tokens=5)   # class + 4 register tokens
"""

from __future__ import annotations

import math

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

"""Turning raw layer-resolution maps into explanations: ReLU, min-max rescale, upsampling.

Every method ends here, so all maps share one convention: float32 in [0, 1], at the input's
resolution, and a constant map (all zeros after the ReLU, say) becomes zeros, never NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rescale(maps: jax.Array) -> jax.Array:
    """MATLAB's `rescale`: each (..., h, w) map to [0, 1] by its own min and max; constant -> 0."""
    maps = maps.astype(jnp.float32)
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    safe = jnp.where(span > 0, span, 1.0)  # keeps the untaken branch free of 0/0 for jax.grad too
    return jnp.where(span > 0, (maps - low) / safe, 0.0)


def upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(..., h, w) -> (..., H, W) by bicubic interpolation (MATLAB's `imresize(..., 'bicubic')`),
    clipped back to [0, 1] since cubic interpolation overshoots."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    resized = jax.image.resize(maps, (*maps.shape[:-2], *size), method="bicubic")
    return jnp.clip(resized, 0.0, 1.0)


def finish(raw: jax.Array, size: tuple[int, int], relu: bool = False) -> jax.Array:
    """Raw (..., h, w) maps -> explanations (..., H, W): optional ReLU, rescale, upsample."""
    if relu:
        raw = jax.nn.relu(raw)
    return upsample(rescale(raw), size)

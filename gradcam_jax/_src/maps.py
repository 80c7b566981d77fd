"""Turning raw layer-resolution maps into explanations: ReLU, min-max rescale, upsampling.

Every method ends here, so all maps share one convention: float32 (float64 for a float64 model and
images) in [0, 1], at the input's resolution, and a constant map (all zeros after the ReLU, say)
becomes zeros, never NaN — nor a NaN gradient, so maps can sit inside a training loss
(`gradcam_jax.training`).

Any number of spatial axes: inputs are `(B, *spatial, C)` with 1 (signals), 2 (images) or 3
(volumes, clips) spatial axes, layer outputs `(B, *s, C)`, maps `(B, [K,] *spatial)`. The spatial axes
are decided here: `spatial_axes` for per-target layer arrays, the trailing `len(size)` axes of a
map for `rescale` and `upsample`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def float32_or_wider(x: jax.Array) -> jax.Array:
    """x as float32, or as float64 if it is float64 (under `jax_enable_x64`): half-precision models
    are explained in float32, and float64 gradient checks stay float64 end to end."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator where denominator > 0, else 0 — and a finite gradient either way:
    the untaken branch divides by 1, since jnp.where passes 0 * (0/0) = NaN through jax.grad."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def spatial_axes(layer: jax.Array) -> tuple[int, ...]:
    """The spatial axes of a per-target layer array `(B, K, *s, C)`: 2 .. ndim - 2, whatever the
    number of spatial axes; what per-channel weights average or sum over."""
    return tuple(range(2, layer.ndim - 1))


def map_axes(spatial: int) -> tuple[int, ...]:
    """The trailing `spatial` axes of a map `(..., *spatial)`: what a rescale takes each map over."""
    return tuple(range(-spatial, 0))


def rescale(maps: jax.Array, spatial: int = 2) -> jax.Array:
    """MATLAB's `rescale`: each map `(..., *s)` over its last `spatial` axes (2: (h, w) images; 1
    signals; 3 volumes) to [0, 1] by its own min and max; constant -> 0."""
    maps = float32_or_wider(maps)
    low = maps.min(axis=map_axes(spatial), keepdims=True)
    return safe_divide(maps - low, maps.max(axis=map_axes(spatial), keepdims=True) - low)


def upsample(maps: jax.Array, size: tuple[int, ...]) -> jax.Array:
    """`(..., *s)` -> `(..., *size)` by cubic interpolation along each of the last len(size) axes (Keys,
    a = -0.5: in 2-D MATLAB's `imresize(..., 'bicubic')`), clipped back to [0, 1] since cubic
    interpolation overshoots."""
    size = tuple(size)
    if tuple(maps.shape[maps.ndim - len(size) :]) == size:
        return maps
    resized = jax.image.resize(maps, (*maps.shape[: maps.ndim - len(size)], *size), method="cubic")
    return jnp.clip(resized, 0.0, 1.0)


def upsample_on_host(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`upsample` of one (h, w) map to (H, W), float32, computed by Pillow on the host: the same
    bicubic (Keys, a = -0.5, antialiased when shrinking; agrees to float32 rounding, 1e-6 on
    smooth maps, a test checks). For the
    I/O edges, where photos come in every size: a jitted resize compiles once per output shape
    (~0.4 s on the 2-core dev box), Pillow's costs ~2 ms whatever the size."""
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.shape == tuple(size):
        return heatmap
    resized = Image.fromarray(heatmap, "F").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def finish(raw: jax.Array, size: tuple[int, ...], relu: bool = False) -> jax.Array:
    """Raw `(..., *s)` maps -> explanations `(..., *size)`: optional ReLU, rescale, upsample; `size` is
    the input's spatial shape, `images.shape[1:-1]` ((H, W) for images, (L,) or (D, H, W) else)."""
    if relu:
        raw = jax.nn.relu(raw)
    return upsample(rescale(raw, len(size)), size)

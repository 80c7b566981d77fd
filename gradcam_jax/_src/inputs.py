"""Checks on arrays handed to the public API: a wrong rank, dtype or value is a ValueError that
says what was expected, raised before any tracing. Value checks (NaN, class range) run only on
concrete arrays, so every function stays usable inside the caller's own `jit` or `vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def is_concrete(x) -> bool:
    return not isinstance(x, Tracer)


# Inputs are (B, *spatial, C): signals (B, L, C), images (B, H, W, C), volumes or clips (B, D, H, W, C).
SPATIAL_RANKS = (1, 2, 3)
LAYOUTS = "(B, L, C) signals, (B, H, W, C) images or (B, D, H, W, C) volumes"


def check_images(images, values: bool = True) -> jax.Array | np.ndarray:
    """images as a float array `(B, *spatial, C)` with 1, 2 or 3 spatial axes (`SPATIAL_RANKS`); uint8
    and integer input is cast to float32. `values`: also refuse NaN and Inf here (the explanation
    methods check them inside their own program)."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if images.ndim - 2 not in SPATIAL_RANKS:
        raise ValueError(f"images must be a batch of {LAYOUTS}; got shape {tuple(images.shape)}")
    if jnp.issubdtype(images.dtype, jnp.integer) or images.dtype == jnp.bool_:
        images = images.astype(jnp.float32)
    elif not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be float (RGB 0..255) or uint8; got dtype {images.dtype}")
    # numpy, not jnp: inside the caller's `jit` a jnp op on a concrete array would be traced too
    if values and is_concrete(images) and not np.isfinite(np.asarray(images)).all():
        raise ValueError("images contain NaN or Inf values; expected finite pixel values")
    # numpy and device arrays go to `jit` as they are: no eager copy per call
    return images if isinstance(images, (jax.Array, np.ndarray)) else jnp.asarray(images)


def check_maps(maps, images) -> None:
    """ValueError unless `maps` is `(B, *spatial)`, one map per image of `images` `(B, *spatial, C)`."""
    if tuple(np.shape(maps)) != tuple(np.shape(images))[:-1]:
        raise ValueError(
            f"maps must be (B, *spatial) = {tuple(np.shape(images))[:-1]}, one per image of shape "
            f"{tuple(np.shape(images))}; got {tuple(np.shape(maps))}"
        )

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


def check_images(images, values: bool = True) -> jax.Array | np.ndarray:
    """images as a float array (B, H, W, C); uint8 and integer input is cast to float32. `values`:
    also refuse NaN and Inf here (the explanation methods check them inside their own program)."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, H, W, C); got shape {tuple(images.shape)}")
    if jnp.issubdtype(images.dtype, jnp.integer) or images.dtype == jnp.bool_:
        images = images.astype(jnp.float32)
    elif not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be float (RGB 0..255) or uint8; got dtype {images.dtype}")
    # numpy, not jnp: inside the caller's `jit` a jnp op on a concrete array would be traced too
    if values and is_concrete(images) and not np.isfinite(np.asarray(images)).all():
        raise ValueError("images contain NaN or Inf values; expected finite pixel values")
    # numpy and device arrays go to `jit` as they are: no eager copy per call
    return images if isinstance(images, (jax.Array, np.ndarray)) else jnp.asarray(images)

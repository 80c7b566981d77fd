"""Checks on arrays handed to the public API: a wrong rank, dtype or value is a ValueError that
says what was expected, raised before any tracing. Value checks (NaN, class range) run only on
concrete arrays, so every function stays usable inside the caller's own `jit` or `vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_images(images) -> jax.Array:
    """images as a float array (B, H, W, C); uint8 and integer input is cast to float32."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (B, H, W, C); got shape {tuple(images.shape)}")
    if jnp.issubdtype(images.dtype, jnp.integer) or images.dtype == jnp.bool_:
        images = jnp.asarray(images, jnp.float32)
    elif not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be float (RGB 0..255) or uint8; got dtype {images.dtype}")
    # numpy, not jnp: inside the caller's `jit` a jnp op on a concrete array is traced too.
    if is_concrete(images) and not np.isfinite(np.asarray(images)).all():
        raise ValueError("images contain NaN or Inf values; expected finite pixel values")
    return jnp.asarray(images)


def check_targets(targets, batch: int, num_classes: int | None = None):
    """(targets as int32 (B, K) or None, whether K was implicit). Accepts None, (B,) or (B, K)."""
    if targets is None:
        return None, True
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"targets must be integer class indices; got dtype {targets.dtype}")
    if targets.ndim not in (1, 2) or targets.shape[0] != batch:
        raise ValueError(f"targets must have shape ({batch},) or ({batch}, K); got {tuple(targets.shape)}")
    if is_concrete(targets) and targets.size:
        low, high = int(np.asarray(targets).min()), int(np.asarray(targets).max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            top = num_classes - 1 if num_classes is not None else "num_classes - 1"
            raise ValueError(f"target class {low if low < 0 else high} is out of range 0..{top}")
    squeeze = targets.ndim == 1
    return targets.reshape(batch, -1).astype(jnp.int32), squeeze

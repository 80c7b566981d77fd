"""Regions of the input that the perturbation methods switch on and off: sizes per spatial axis,
the patch grid (`feature_ablation`, `lime`, `kernel_shap`, `shapley_sampling`, `image_lime`'s
"grid"), and an image with some regions at the baseline. Shared here so a method's file holds
its method."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def per_axis(value, size: tuple[int, ...], auto_fraction: float, rounding) -> tuple[int, ...]:
    """One positive int per axis of `size` from "auto" (a fraction of each), an int (every axis) or
    a tuple of len(size) ints."""
    if value == "auto":
        return tuple(max(1, int(rounding(auto_fraction * n))) for n in size)
    value = (value,) * len(size) if isinstance(value, int) else tuple(value)
    if len(value) != len(size) or any(not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"expected a positive int or {len(size)} of them, one per spatial axis; got {value!r}")
    return value


def patch_features(size: tuple[int, ...], patch) -> tuple[np.ndarray, tuple[int, ...]]:
    """(the feature index of every pixel, `size` int32, row-major over the patch grid; the grid's
    shape) for patches of `patch` (an int or one per axis) on an input of spatial `size`; the last
    patch along an axis is cut short when `patch` does not divide the size."""
    sides = per_axis(patch, size, 1.0, round)
    grid = tuple(-(-n // s) for n, s in zip(size, sides))  # ceil: a short last patch
    cells = np.meshgrid(*[np.arange(n) // s for n, s in zip(size, sides)], indexing="ij")
    return np.ravel_multi_index(cells, grid).astype(np.int32), grid


def with_features(images: jax.Array, features: jax.Array, kept: jax.Array, value: jax.Array) -> jax.Array:
    """`images` (B, *spatial, C) with every pixel whose feature is not `kept` ((P,) bool) at `value` (C,)."""
    return jnp.where(kept[features][None, ..., None], images, value)

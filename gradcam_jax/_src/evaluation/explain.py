"""What a metric scores: precomputed maps, or a method (a registered name or a function) that it can
re-run on perturbed inputs, and the per-image scores plus their aggregate that every metric returns.

A metric's `method` is a name in `METHODS`, a registered method, or any function
`f(model, variables, images, targets, **options)` returning an `Explanation` or a `(B, *spatial)` array.
Maps are `(B, *spatial)` float32 (`Explanation.map`, one target per image); images `(B, *spatial, C)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax._src.methods.base import METHODS, Explanation


class Scores(NamedTuple):
    """per_image: (B,) float32, one score per image; aggregate: () float32, their mean (Quantus's
    default aggregation), NaN-free images only where a metric says so."""

    per_image: jax.Array
    aggregate: jax.Array


def scores(per_image: jax.Array) -> Scores:
    """`Scores` of (B,) per-image values, aggregated by their mean."""
    per_image = jnp.asarray(per_image, jnp.float32)
    return Scores(per_image, per_image.mean())


def resolve_method(method: str | Callable, metric: str) -> Callable:
    """The explanation function of `method` (a `METHODS` name or a function); one-line ValueError for
    an unknown name or a method that is neither."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"{metric}: unknown method {method!r}; choose one of {sorted(METHODS)} or pass a function")
        return METHODS[method]
    if not callable(method):
        raise ValueError(f"{metric}: method must be a method name or a function; got {type(method).__name__}")
    return method


def explain_maps(method: Callable, model, variables, images, targets, **options) -> jax.Array:
    """(B, *spatial) float32 maps of `method` (resolved) for `targets` (B,) on `images`."""
    result = method(model, variables, images, targets, **options)
    return jnp.asarray(result.map if isinstance(result, Explanation) else result, jnp.float32)


def require_method(method, metric: str) -> Callable:
    """The function of `method` for a metric that must re-run the explanation on perturbed inputs
    (robustness, randomisation, input invariance): a one-line ValueError when given only maps."""
    if method is None:
        raise ValueError(f"{metric} re-explains perturbed inputs: pass method= (a name or a function), not only maps")
    return resolve_method(method, metric)


def maps_of(maps, model, variables, images, targets, metric: str, options: dict | None = None) -> jax.Array:
    """(B, *spatial) float32 maps a metric scores: `maps` itself when it is an array, else the maps of
    the method it names or is (`resolve_method`), run with `options` for `targets` on `images`."""
    if isinstance(maps, str) or (callable(maps) and not isinstance(maps, jax.Array)):
        return explain_maps(resolve_method(maps, metric), model, variables, images, targets, **(options or {}))
    return jnp.asarray(maps, jnp.float32)

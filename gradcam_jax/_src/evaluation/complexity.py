"""Complexity: how concentrated is a map? Quantus 0.6.0's complexity metrics, on maps `(B, *spatial)`
(signals, images, volumes), jitted, one program per metric and shape.

Each takes `maps`, or `method` (a `METHODS` name or a function) with `model`, `variables`, `images`
`(B, *spatial, C)` and `targets` (B,) to compute them (its `options` a dict), then Quantus's
preprocessing (`normalise`: each map divided by its largest |value|; `abs`), with Quantus's defaults
(both on). Every one returns `Scores`: (B,) per image and their mean.

One deliberate difference from Quantus 0.6.0: `normalise` divides each map by its own largest
|value|, where Quantus divides the batch by the batch's. `sparseness` and `complexity` do not depend
on the scale; `effective_complexity`, a count above `eps`, does: in Quantus a map's count changes with
the maps beside it in the batch, here it does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from gradcam_jax._src.evaluation.explain import Scores, maps_or_explained, normalised, scores


def flat_maps(metric, maps, model, variables, images, targets, method, options, normalise, abs) -> jax.Array:
    """(B, N) float32: the maps (given or explained), preprocessed as Quantus does, flattened."""
    found = maps_or_explained(metric, maps, method, model, variables, images, targets, options)
    return normalised(found, normalise, abs).reshape(found.shape[0], -1)


@jax.jit
def _gini(a):
    n = a.shape[-1]
    a = jnp.sort(a + 1e-7, axis=-1)  # Quantus's shift: an all-zero map is perfectly even (0)
    weights = 2 * jnp.arange(1, n + 1, dtype=jnp.float32) - n - 1
    return (weights * a).sum(axis=-1) / (n * a.sum(axis=-1))


def sparseness(
    maps=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = True,
    normalise: bool = True,
) -> Scores:
    """Sparseness (Chalasani et al., ICML 2020; Quantus `Sparseness`): the Gini index of the map's
    values, 0 when every pixel holds the same relevance, towards 1 when one pixel holds it all. Higher
    is better (a few pixels explain the decision)."""
    a = flat_maps("sparseness", maps, model, variables, images, targets, method, options, normalise, abs)
    return scores(_gini(a))


@jax.jit
def _entropy(a):
    p = a / jnp.abs(a).sum(axis=-1, keepdims=True)
    return -(p * jnp.log(p + 1e-12)).sum(axis=-1)


def complexity(
    maps=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = True,
    normalise: bool = True,
) -> Scores:
    """Complexity (Bhatt et al., IJCAI 2020; Quantus `Complexity`): the entropy (nats) of the map's
    share of relevance per pixel, `a / sum |a|`; 0 for one pixel, log(N) for an even map of N pixels.
    Lower is better."""
    a = flat_maps("complexity", maps, model, variables, images, targets, method, options, normalise, abs)
    return scores(_entropy(a))


@functools.partial(jax.jit, static_argnames="eps")
def _effective(a, eps: float):
    return (a > eps).sum(axis=-1).astype(jnp.float32)


def effective_complexity(
    maps=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    eps: float = 1e-5,
    abs: bool = True,
    normalise: bool = True,
) -> Scores:
    """Effective complexity (Nguyen and Martinez 2020; Quantus `EffectiveComplexity`): the number of
    pixels whose (normalised, absolute) relevance exceeds `eps`. Lower is better."""
    a = flat_maps("effective_complexity", maps, model, variables, images, targets, method, options, normalise, abs)
    return scores(_effective(a, float(eps)))

"""Activations at a layer and the gradient of class scores with respect to them — one forward pass,
one backward pass per target class, vmapped.

This is the JAX twin of MATLAB's `dlfeval(@(x) dlgradient(score, convMap))`: a zero `delta` is
added to the layer's output through `taps`, and `jax.vjp` with respect to `delta` gives
d score / d activation. Parameters are closed over as constants, so no parameter gradient is
computed, and nothing below the layer depends on `delta`, so the backward pass stops there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax import scores as scores_lib
from gradcam_jax import taps


class LayerGradients(NamedTuple):
    activations: jax.Array  # (B, h, w, C): the layer's output (MATLAB's convMap)
    gradients: jax.Array  # (B, K, h, w, C): d score[b, targets[b, k]] / d activations[b]
    scores: jax.Array  # (B, K) float32: the scores differentiated
    targets: jax.Array  # (B, K) int32: the classes


def layer_gradients(
    model, variables, images, targets, *, layer: str, score: str, reshape: Callable | None = None
) -> LayerGradients:
    """Activations at `layer` and gradients of the `score` of each target class with respect to them.

    targets: (B, K) int32, or None for each image's top-1 class (K = 1). `reshape` maps the layer's
    raw output to a (B, h, w, C) grid (e.g. ViT tokens -> patches); it is applied to activations
    and gradients alike, so it must only move or drop entries (reshape, slice, transpose).
    """
    path, shape = taps.resolve_layer(model, variables, images, layer)

    def all_scores(delta):
        logits, activation = taps.forward_with_layer(model, variables, images, path, delta)
        return scores_lib.class_scores(logits, score), activation

    delta = jnp.zeros(shape.shape, shape.dtype)
    every_score, vjp, activations = jax.vjp(all_scores, delta, has_aux=True)
    targets = scores_lib.resolve_targets(targets, every_score)
    # One cotangent per target: one_hot(targets[:, k]) selects score[b, targets[b, k]] for each b;
    # images do not interact, so one backward pass serves the whole batch.
    cotangents = jax.nn.one_hot(targets, every_score.shape[-1], dtype=every_score.dtype)
    (gradients,) = jax.vmap(vjp, in_axes=1, out_axes=1)(cotangents)
    if reshape is not None:
        activations, gradients = reshape(activations), jax.vmap(reshape, in_axes=1, out_axes=1)(gradients)
    return LayerGradients(activations, gradients, scores_lib.pick(every_score, targets), targets)

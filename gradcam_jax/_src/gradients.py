"""Activations at a layer and the gradient of target scores with respect to them — one forward pass,
one backward pass per target column, vmapped.

This is the JAX twin of MATLAB's `dlfeval(@(x) dlgradient(score, convMap))`: a zero `delta` is
added to the layer's output through `taps`, and `jax.vjp` with respect to `delta` gives
d score / d activation. Parameters are closed over as constants, so no parameter gradient is
computed, and nothing below the layer depends on `delta`, so the backward pass stops there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps, tokens


class LayerGradients(NamedTuple):
    activations: jax.Array  # (B, h, w, C): the layer's output (MATLAB's convMap)
    gradients: jax.Array  # (B, K, h, w, C): d score[b, k] / d activations[b]
    scores: jax.Array  # (B, K) float32: the scores differentiated
    target: Callable  # the target, top-1 classes resolved (`targets.Classes.resolve`)


def resolved_scores(target, outputs, batch: int) -> tuple[jax.Array, Callable]:
    """((B, K) float32 scores of `target` on the model's `outputs`, the target with top-1 resolved)."""
    resolve = getattr(target, "resolve", None)
    target = resolve(outputs) if resolve is not None else target
    return targets_lib.columns(target(outputs), batch), target


def column_cotangents(scores: jax.Array) -> jax.Array:
    """(K, B, K) cotangents for (B, K) scores, one-hot in column k for every image: images do not
    interact, so one backward pass per k gives every image's gradient of its own k-th score."""
    k = scores.shape[1]
    return jnp.broadcast_to(jnp.eye(k, dtype=scores.dtype)[:, None], (k, *scores.shape))


def column_vjp(fn: Callable, primals) -> tuple[jax.Array, Any, Any]:
    """((B, K) scores, the gradients of each score column with respect to `primals` (each leaf with
    the K axis at 1, (B, K, ...)), aux) of `fn(primals) -> ((B, K) scores, aux)`: one forward pass,
    one backward pass per column.

    For the attention methods, whose backward pass runs through most of the model. The forward pass
    keeps only the outputs of its matrix products for the backward pass (`jax.checkpoint` with
    `dots_saveable`); the element-wise work (GELU, layer norms, softmax) between them is redone there.
    On XLA's CPU backend that is faster than keeping every intermediate: the forward pass then runs
    almost as the plain forward does. With one column (top-1, one class per image) the backward pass
    runs once, unbatched, rather than under a `jax.vmap` of size 1. The values are the same up to
    float32 rounding (XLA fuses the programs differently)."""
    fn = jax.checkpoint(fn, policy=jax.checkpoint_policies.dots_saveable)
    scores, vjp, aux = jax.vjp(fn, primals, has_aux=True)
    if scores.shape[1] == 1:
        (gradients,) = vjp(jnp.ones_like(scores))
        return scores, jax.tree.map(lambda g: g[:, None], gradients), aux
    (gradients,) = jax.vmap(vjp, out_axes=1)(column_cotangents(scores))
    return scores, gradients, aux


def layer_gradients(
    model, variables, images, target, *, layer: str | None, reshape: Callable | None = None
) -> LayerGradients:
    """Activations at `layer` and gradients of each of the K columns of `target(outputs)` w.r.t. them.

    target: a function of the model's outputs returning (B,) or (B, K) float scores (`gradcam_jax._src.targets`).
    `reshape` maps the layer's raw output to a (B, h, w, C) grid (e.g. ViT tokens -> patches); it is
    applied to activations and gradients alike, so it must only move or drop entries. Without one,
    token outputs (B, N, C) of an image model are laid out by `adapters.tokens.auto_grid` (prefix
    tokens and grid inferred from the token count and the image's aspect ratio; `tokens.grid_hook`).
    """
    path, shape = taps.resolve_map_layer(model, variables, images, layer, reshape)

    def all_scores(delta):
        outputs, activation = taps.forward_with_layer(model, variables, images, path, delta)
        scores, resolved = resolved_scores(target, outputs, images.shape[0])
        return scores, (activation, resolved)

    delta = jnp.zeros(shape.shape, shape.dtype)
    scores, vjp, (activations, resolved) = jax.vjp(all_scores, delta, has_aux=True)
    (gradients,) = jax.vmap(vjp, out_axes=1)(column_cotangents(scores))
    reshape = tokens.grid_hook(reshape, activations.shape, images.shape)  # ViT tokens: their grid
    if reshape is not None:
        activations, gradients = reshape(activations), jax.vmap(reshape, in_axes=1, out_axes=1)(gradients)
    return LayerGradients(activations, gradients, scores, resolved)

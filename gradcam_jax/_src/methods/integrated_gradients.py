"""Integrated gradients (Sundararajan et al., ICML 2017): the input gradient averaged along the
straight path from a baseline x' to the image x, times x - x':

    IG(x) = (x - x') * integral_0^1 dS(x' + a (x - x')) / dx da

The integral is the midpoint rule with `steps` points; by completeness, sum IG = S(x) - S(x') up
to that rule's error, which `steps` controls. `baseline` is "black" (the paper), "mean" (the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean) or a number / per-channel tuple. Path points are vmapped so one forward/backward pass holds at
most `batch_size` whole images (the rule in `methods.common`), and `lax.map` walks the chunks.
The map reduces IG over channels (`reduce`, default "abs_sum") and rescales it;
`Explanation.gradients` holds the path-averaged gradients `(B, [K,] *spatial, C)`, so IG = (images - baseline) * gradients.

Differentiable with respect to `variables` and `images`, under `jit`: the path points are fixed, so
the map is a sum of input gradients (a second derivative for jax.grad).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import (
    baseline_pixels,
    input_gradients,
    passes_per_step,
    reduce_channels,
    target_scores,
)


@register("integrated_gradients", score="logit")
def integrated_gradients(
    model,
    variables,
    images,
    targets=None,
    *,
    baseline="black",
    steps: int = 32,
    reduce: str = "abs_sum",
    batch_size: int = 8,
) -> Explanation:
    """Integrated-gradients maps of `targets` (B,) or (B, K) (None: top-1) at input resolution;
    see the module doc. Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1]."""
    images = maps.float32_or_wider(images)
    scores, target = target_scores(model, variables, images, targets)  # top-1 of x, not of the path
    start = baseline_pixels(baseline, images, model)
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps

    def gradient_at(alpha):
        return input_gradients(model, variables, start + alpha * (images - start), target).gradients

    path_mean = jax.lax.map(gradient_at, alphas, batch_size=passes_per_step(batch_size, len(images))).mean(
        axis=0
    )  # (B, K, *spatial, C)
    attributions = (images - start)[:, None] * path_mean
    result = maps.rescale(reduce_channels(attributions, reduce), images.ndim - 2)
    return Explanation(result, scores, target, None, path_mean)

"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), as pytorch-grad-cam's `AblationCAM`: no gradients;
each channel is weighted by the relative drop in the score when that channel is ablated:

    w_c = (S - S_c) / S,   map = normalise( relu( sum_c w_c A_c ) )

S_c is the score with channel c of the layer set to 0 — or, as pytorch-grad-cam does for a layer
whose minimum (per image) is not 0, to that minimum minus 1e7. `score="logit"` as pytorch-grad-cam
(a score of exactly 0 gives zero weights). The ablated activations are fed to the rest of the
network through `taps` (the layers below are not recomputed per channel: they do not depend on it).

Cost: one pass above the layer per channel and image (1024 for `inception_5b-output`), vmapped so
one pass holds at most `batch_size` whole images (the rule in `methods.common`), under `lax.map`.

Differentiable with respect to `variables` and `images`, under `jit`: the weights are smooth in the
scores, which are smooth in the ablated activations (the ablation value's choice is piecewise).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.gradients import resolved_scores
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs, passes_per_step, weighted_sum

ABLATION_VALUE = 1e7  # pytorch-grad-cam's: below the layer's minimum where that is not 0


@register("ablation_cam", score="logit")
def ablation_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
    batch_size: int = 32,
) -> Explanation:
    """Ablation-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1] and the activations ``(B, *s, C)``."""
    activations, explained, target, path, raw = layer_outputs(model, variables, images, targets, layer, reshape)
    low = raw.min(axis=tuple(range(1, raw.ndim)), keepdims=True)  # per image
    ablated_value = jnp.where(low == 0, jnp.zeros_like(low), low - ABLATION_VALUE)
    channels = raw.shape[-1]

    def ablated(channel):  # (B, K) scores with `channel` of the layer set to the ablation value
        delta = jax.nn.one_hot(channel, channels, dtype=raw.dtype) * (ablated_value - raw)
        return resolved_scores(target, taps.forward_with_layer(model, variables, images, path, delta)[0], len(images))[
            0
        ]

    drops = jax.lax.map(ablated, jnp.arange(channels), batch_size=passes_per_step(batch_size, len(images)))
    drops = explained[..., None] - jnp.moveaxis(drops, 0, -1)  # (B, K, C)
    nonzero = explained[..., None] != 0
    weights = jnp.where(nonzero, drops / jnp.where(nonzero, explained[..., None], 1), 0)
    raw_maps = weighted_sum(activations, weights)
    return Explanation(maps.finish(raw_maps, images.shape[1:-1], relu), explained, target, activations)

"""FEM, the Feature Explanation Method (Fuad et al., IPTA 2020), as pytorch-grad-cam's `FEM`: no
gradient and no class; each channel is weighted by how much of it stands out, the fraction of its
positions above its own mean plus `k` standard deviations:

    w_c = mean_ij [ A_ijc > mean(A_c) + k std(A_c) ],   map = normalise( relu( sum_c w_c A_c ) )

Every target gets the same map (the scores and targets are still reported). Defaults as
pytorch-grad-cam: `k=2`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`: the weights are piecewise
constant (their derivative is 0), the map linear in the activations.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs, weighted_sum


@register("fem", score="logit")
def fem(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    k: float = 2.0,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """FEM maps at `layer`, repeated for each of `targets` (B,) or (B, K) (None: top-1); see the
    module doc. images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)``
    float32 in [0, 1] and the activations ``(B, *s, C)``."""
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    a = maps.float32_or_wider(activations)
    spatial = tuple(range(1, a.ndim - 1))
    threshold = a.mean(axis=spatial, keepdims=True) + k * a.std(axis=spatial, keepdims=True)
    weights = (a > threshold).mean(axis=spatial, dtype=a.dtype)  # (B, C)
    raw = jnp.broadcast_to(weights[:, None], (a.shape[0], explained.shape[1], a.shape[-1]))
    return Explanation(
        maps.finish(weighted_sum(activations, raw), images.shape[1:-1], relu), explained, target, activations
    )

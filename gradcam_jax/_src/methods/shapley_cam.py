"""ShapleyCAM (Cai et al., ICLR 2025), as pytorch-grad-cam's `ShapleyCAM`: Grad-CAM whose channel
weights add a second-order term, the Hessian of the score at the layer applied to the activations,
from a Shapley-value reading of CAM:

    w_c = mean_positions ( g - 1/2 H A )_c,   g = dS/dA,   H = d^2 S / dA^2,
    map = normalise( relu( sum_c w_c A_c ) )

H A is one forward-over-reverse product (`jax.jvp` of the layer gradient along A), no Hessian is
formed. Above a layer where the score is linear in the activations (GoogLeNet's logits: global
average pool and a dense layer) H = 0 and the map is Grad-CAM's; with `score="softmax"` it is not.
Defaults as pytorch-grad-cam: `score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit` (a third derivative for
jax.grad), except at ReLU kinks.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.gradients import column_cotangents, resolved_scores
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs, weighted_sum


@register("shapley_cam", score="logit")
def shapley_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """ShapleyCAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1], activations ``(B, *s, C)`` and gradients ``(B, [K,] *s, C)``."""
    _, explained, target, path, activations = layer_outputs(model, variables, images, targets, layer)

    def gradients_at(delta):  # (K, B, *s, C): d score[:, k] / d activations, at activations + delta
        def scores(d):
            return resolved_scores(target, taps.forward_with_layer(model, variables, images, path, d)[0], len(images))[
                0
            ]

        _, vjp = jax.vjp(scores, delta)
        return jax.vmap(vjp)(column_cotangents(explained))[0]

    zero = jnp.zeros_like(activations)
    gradients, hessian_activations = jax.jvp(gradients_at, (zero,), (activations,))
    gradients, hessian_activations = jnp.moveaxis(gradients, 0, 1), jnp.moveaxis(hessian_activations, 0, 1)
    if reshape is not None:
        activations = reshape(activations)
        gradients, hessian_activations = (
            jax.vmap(reshape, in_axes=1, out_axes=1)(a) for a in (gradients, hessian_activations)
        )
    terms = maps.float32_or_wider(gradients) - 0.5 * maps.float32_or_wider(hessian_activations)
    weights = terms.mean(axis=tuple(range(2, terms.ndim - 1)))  # (B, K, C)
    raw = weighted_sum(activations, weights)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations, gradients)

"""Grad-CAM++ (Chattopadhyay et al., WACV 2018): pixel-wise weighting of positive gradients, so
several instances of a class all show up, not just the strongest.

    w_c = sum_ij a_ijc relu(g_ijc),  a_ijc = g^2 / (2 g^2 + sum_ab A_abc g^3)   (0 where g = 0)

with g = d S / d A for the class score S. The closed form for a (the paper's eq. 19) assumes the
explained quantity is exp(S), whose higher derivatives are powers of the first; that positive
factor exp(S) scales every weight alike and the rescale removes it. Defaults follow the paper:
`score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`; EPS and the g = 0 branch keep
the gradient finite where the denominator vanishes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum

EPS = 1e-7  # keeps a from 0/0 where the denominator vanishes


@register("grad_cam_plus_plus", score="logit")
def grad_cam_plus_plus(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """Grad-CAM++ maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1], activations and gradients."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    grads = maps.float32_or_wider(g.gradients)  # (B, K, *s, C)
    acts = maps.float32_or_wider(g.activations)[:, None]  # (B, 1, *s, C)
    axes = maps.spatial_axes(grads)
    g2 = grads**2
    denominator = 2 * g2 + acts.sum(axis=axes, keepdims=True) * g2 * grads
    alpha = jnp.where(grads != 0, g2 / (denominator + EPS), 0.0)
    weights = (alpha * jnp.maximum(grads, 0)).sum(axis=axes)  # (B, K, C)
    raw = weighted_sum(g.activations, weights)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

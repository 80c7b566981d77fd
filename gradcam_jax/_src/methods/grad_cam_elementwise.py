"""Grad-CAM element-wise, as pytorch-grad-cam's `GradCAMElementWise`: like HiResCAM, the gradient
multiplies the activation position by position, but each product is clipped at zero before the
channels are summed, so channels that argue against the class cannot cancel those that argue for it:

    map = normalise( sum_c relu(g_c A_c) )

Defaults as pytorch-grad-cam: `score="logit"`, `relu=True` (a no-op here: the sum is already >= 0).

Differentiable with respect to `variables` and `images`, under `jit`, except where a product
crosses zero.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register


@register("grad_cam_elementwise", score="logit")
def grad_cam_elementwise(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """Grad-CAM element-wise maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the
    module doc. images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)``
    float32 in [0, 1], activations ``(B, *s, C)`` and gradients ``(B, [K,] *s, C)``."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    products = maps.float32_or_wider(g.gradients) * maps.float32_or_wider(g.activations)[:, None]
    raw = jax.nn.relu(products).sum(axis=-1)  # (B, K, *s)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

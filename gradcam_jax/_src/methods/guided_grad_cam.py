"""Guided Grad-CAM (Selvaraju et al., ICCV 2017): guided backpropagation's fine detail, masked by
Grad-CAM's class-discriminative map at input resolution:

    map = normalise( reduce_c( guided_gradient_c * grad_cam_map ) )

The Grad-CAM part is `grad_cam` itself (with this method's `layer`, `score`, `relu`, `reshape`);
the guided part is `guided_backprop`'s, with its limits. Defaults follow the paper:
`score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`, as its two parts (see
`guided_backprop`).
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import reduce_channels
from gradcam_jax._src.methods.grad_cam import grad_cam
from gradcam_jax._src.methods.guided_backprop import guided_input_gradients


@register("guided_grad_cam", score="logit")
def guided_grad_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
    reduce: str = "abs_max",
) -> Explanation:
    """Guided Grad-CAM maps of `targets` (B,) or (B, K) (None: top-1); see the module doc. Returns
    an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1], the layer's activations and the
    guided gradients `(B, [K,] *spatial, C)` at the input."""
    guided = guided_input_gradients(model, variables, images, targets)
    # Called outside the guided context, so Grad-CAM's own gradients are plain ones.
    coarse = grad_cam.impl(model, variables, images, guided.target, layer=layer, relu=relu, reshape=reshape)
    fine = reduce_channels(guided.gradients * coarse.map[..., None], reduce)
    fine = maps.rescale(fine, images.ndim - 2)
    return Explanation(fine, guided.scores, guided.target, coarse.activations, guided.gradients)

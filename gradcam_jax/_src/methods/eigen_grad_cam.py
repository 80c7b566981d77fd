"""EigenGrad-CAM, as pytorch-grad-cam's `EigenGradCAM`: Eigen-CAM (the first principal component,
`eigen_cam.principal_projection`) of the gradient x activation products rather than of the
activations, so the map depends on the class:

    X = (g * A) reshaped (positions, C), centred per channel;  map = normalise( relu( X v_1 ) )

The component's sign is fixed as in `eigen_cam` (the projection is flipped when its most negative
value outweighs its most positive one); pytorch-grad-cam's `EigenGradCAM` keeps the sign LAPACK
returns, which is arbitrary, so its map can be the other side of the component. Defaults as
pytorch-grad-cam: `score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`, where the first singular value
is simple (see `eigen_cam`).
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.eigen_cam import principal_projection


@register("eigen_grad_cam", score="logit")
def eigen_grad_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """EigenGrad-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1], activations ``(B, *s, C)`` and gradients ``(B, [K,] *s, C)``."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    products = maps.float32_or_wider(g.gradients) * maps.float32_or_wider(g.activations)[:, None]
    b, k = products.shape[:2]
    raw = principal_projection(products.reshape(b * k, *products.shape[2:])).reshape(b, k, *products.shape[2:-1])
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

"""HiResCAM (Draelos & Carin, 2020): the gradient multiplies the activation position by position
instead of being averaged first, so the map shows exactly the locations that raise the score:

    map = normalise( sum_c g_ijc A_ijc )

For a GAP + linear head the gradient is the same at every position and HiResCAM equals Grad-CAM;
it differs where the layer sits lower, or the head is not a plain average. Defaults follow the
paper: `score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`, as Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum


@register("hires_cam", score="logit")
def hires_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """HiResCAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1], activations and gradients."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    raw = weighted_sum(g.activations, g.gradients)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

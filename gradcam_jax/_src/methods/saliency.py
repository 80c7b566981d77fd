"""Saliency (Simonyan et al., ICLR-W 2014), as captum's `Saliency`: the gradient of the score with
respect to the input pixels, in absolute value.

    map = normalise( max_c | dS / dx_c | )

One forward and one backward pass per target column. The map reduces the gradient over channels
(`reduce`, default "abs_max": the paper's maximum of absolute values over colour channels) and
rescales it; `Explanation.gradients` holds the signed input gradient ``(B, [K,] *spatial, C)``.

Differentiable with respect to `variables` and `images`, under `jit` (jax.grad takes a second
derivative), except at ReLU kinks and where the maximum over channels switches.
"""

from __future__ import annotations

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import input_gradients, reduce_channels


@register("saliency", score="logit")
def saliency(model, variables, images, targets=None, *, reduce: str = "abs_max") -> Explanation:
    """Saliency maps of `targets` (B,) or (B, K) (None: top-1) at input resolution; see the module
    doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)``
    float32 in [0, 1] and the input gradients."""
    images = maps.float32_or_wider(images)
    g = input_gradients(model, variables, images, targets)
    return Explanation(
        maps.finish(reduce_channels(g.gradients, reduce), images.shape[1:-1]), g.scores, g.target, None, g.gradients
    )

"""Input x Gradient (Shrikumar et al. 2016), as captum's `InputXGradient`, with a reference input:

    attribution = (x - x') * dS / dx,   map = normalise( max_c |attribution| )

`baseline` x' is as for `integrated_gradients`: "black" (0: captum's `InputXGradient` on the input
the model takes), "mean" (the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean: captum's on the mean-subtracted input a Caffe network works in), a number or a per-channel tuple. It is the one-step, end-point version of integrated
gradients. The map reduces the attribution over channels (`reduce`, default "abs_max") and
rescales it; `Explanation.gradients` holds the input gradient ``(B, [K,] *spatial, C)``, so the
attribution is (images - baseline) * gradients.

Differentiable with respect to `variables` and `images`, under `jit` (a second derivative for
jax.grad), except at ReLU kinks and where the maximum over channels switches.
"""

from __future__ import annotations

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, input_gradients, reduce_channels


@register("input_x_gradient", score="logit")
def input_x_gradient(
    model, variables, images, targets=None, *, baseline="black", reduce: str = "abs_max"
) -> Explanation:
    """Input x Gradient maps of `targets` (B,) or (B, K) (None: top-1) at input resolution; see the
    module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map
    ``(B, [K,] *spatial)`` float32 in [0, 1] and the input gradients."""
    images = maps.float32_or_wider(images)
    start = baseline_pixels(baseline, images, model)
    g = input_gradients(model, variables, images, targets)
    attributions = (images - start)[:, None] * g.gradients
    return Explanation(
        maps.finish(reduce_channels(attributions, reduce), images.shape[1:-1]), g.scores, g.target, None, g.gradients
    )

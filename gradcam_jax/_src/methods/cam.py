"""CAM (Zhou et al., CVPR 2016): the class's weights in a GAP + linear head, applied to the last
feature map. No gradient flows through the network.

    map = normalise( sum_c W[c, class] A_c ),   logits = W^T mean_{i,j} A_ij + b

How the weights are found, for any GAP + linear model, whatever its head is called: the logit is
differentiated with respect to the layer's output and the gradient summed over positions. Through
a global average pool and a Dense layer, d logit_k / d A_ijc = W[c, k] / (h w) at every position,
so the sum is exactly W[c, k]; the backward pass runs through the head only (pool + matrix
product), which is what reading the kernel costs, and no parameter path has to be known.

Limits: the weights are the head's *linearisation* at `layer`. With a GAP + linear head above
`layer` (GoogLeNet at `inception_5b-output`) they are CAM's weights exactly; with anything else
above the layer (more convolutions, an MLP head) they are input-dependent, and the map is
Grad-CAM on logits (the weights differ from Grad-CAM's by the constant h w, which the rescale
removes) — no longer CAM. There is no `score` option: CAM is defined on logits.

Differentiable with respect to `variables` and `images`, under `jit`, as Grad-CAM (the weights are
a gradient).
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum


@register("cam", score=None)
def cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = False,
    reshape: Callable | None = None,
) -> Explanation:
    """CAM maps of `targets` (B,) or (B, K) (None: top-1) from the feature map at `layer`.

    Returns an `Explanation` (map `(B, [K,] *spatial)` float32 in [0, 1]; scores are logits) with the
    layer's activations and the gradients whose spatial sums are the head's class weights.
    """
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    weights = g.gradients.sum(axis=maps.spatial_axes(g.gradients))  # (B, K, C) = W[:, class] for a GAP + linear head
    raw = weighted_sum(g.activations, weights)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

"""XGrad-CAM (Fu et al., BMVC 2020): channel weights chosen to satisfy the sensitivity and
conservation axioms, which makes them activation-weighted gradient averages:

    w_c = sum_ij A_ijc g_ijc / sum_ij A_ijc

Then sum_c w_c sum_ij A_ijc = sum_ij <A_ij, g_ij>, which equals the score when the part of the
network above the layer is positively homogeneous (ReLUs, pooling, no biases; Euler's theorem):
the conservation axiom. Defaults follow the paper: `score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`; EPS keeps an all-zero
channel's gradient finite.
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum

EPS = 1e-7  # a channel that is zero everywhere gets weight 0, not 0/0


@register("xgrad_cam", score="logit")
def xgrad_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """XGrad-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1], activations and gradients."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    acts = maps.float32_or_wider(g.activations)[:, None]  # (B, 1, *s, C)
    axes = maps.spatial_axes(acts)
    weights = (acts * g.gradients).sum(axis=axes) / (acts.sum(axis=axes) + EPS)  # (B, K, C)
    raw = weighted_sum(g.activations, weights)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

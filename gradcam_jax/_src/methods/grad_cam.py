"""Grad-CAM (Selvaraju et al., ICCV 2017), with MATLAB's example as the default.

    map = normalise( sum_c alpha_c A_c ),  alpha_c = mean_{i,j} d score / d A_{ij c}

Defaults reproduce MATLAB's "Grad-CAM Reveals the Why Behind Deep Learning Decisions": the score
is the softmax probability, no ReLU, min-max rescale, bicubic upsampling. MATLAB sums the gradients
where the paper averages them; the two maps differ by the constant h*w, which the rescale removes.

- `score="softmax"` (default, MATLAB): contrastive, since raising p(c) means lowering the others;
  regions that argue for competing classes come out low. Best for "why this class and not those".
- `score="logit", relu=True`: the paper's Grad-CAM. For a GAP + linear head (GoogLeNet),
  alpha_c = W[class, c] / (h*w) exactly, so the map is CAM (Zhou et al. 2016). Best for
  "where is the evidence for this class", also when the class's probability is saturated.

Differentiable with respect to `variables` and `images`, under `jit`: the map is smooth in the
layer's activations and gradient (jax.grad takes a second derivative) except at ReLU and min/max
kinks.
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum


@register("grad_cam", score="softmax")
def grad_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = False,
    reshape: Callable | None = None,
) -> Explanation:
    """Grad-CAM maps of `targets` at `layer`; see the module doc. Class targets (B,) or (B, K) (None:
    top-1) are scored by `score="softmax"` (default, MATLAB) or "logit"; any target function works too.

    images: float `(B, *spatial, C)` as the model takes them: (B, H, W, C) images, (B, L, C) signals,
    (B, D, H, W, C) volumes. Returns an `Explanation` whose map is `(B, *spatial)` or `(B, K, *spatial)`
    float32 in [0, 1], with the layer's activations `(B, *s, C)` and gradients `(B, [K,] *s, C)`.
    `reshape` turns a non-grid layer output into (B, h, w, C) (see `gradients.layer_gradients`).
    """
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    raw = weighted_sum(g.activations, g.gradients.mean(axis=maps.spatial_axes(g.gradients)))  # alpha: (B, K, C)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

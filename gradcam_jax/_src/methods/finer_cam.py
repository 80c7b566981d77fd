"""Finer-CAM (Zhang et al., CVPR 2025), as pytorch-grad-cam's `FinerCAM` with its defaults: Grad-CAM
of a contrastive score, the target class against the classes most similar to it
(`targets.finer`): the three whose logits are nearest to the target's, each weighted by its
softmax probability, `alpha` 1:

    S = sum_j p_j (z_c - alpha z_j) / sum_j p_j,   map = normalise( relu( sum_k alpha_k A_k ) ),
    alpha_k = mean_positions dS / dA_k

so the map keeps what tells the class apart from its look-alikes and drops what they share
(Grad-CAM as pytorch-grad-cam's `GradCAM`: mean gradient, ReLU). Class targets only: (B,) or
(B, K) indices, or None for the top-1 class.

Differentiable with respect to `variables` and `images`, under `jit`, as Grad-CAM (the choice of
similar classes is piecewise constant).
"""

from __future__ import annotations

from collections.abc import Callable

from gradcam_jax._src import maps
from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum


@register("finer_cam", score=None)
def finer_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    comparisons: int = 3,
    alpha: float = 1.0,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """Finer-CAM maps of class `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module
    doc. images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1], the contrastive scores, activations ``(B, *s, C)`` and gradients ``(B, [K,] *s, C)``."""
    if not isinstance(targets, targets_lib.Classes):
        raise TypeError("finer_cam contrasts classes: give class indices (B,) or (B, K), or None for the top-1")
    finer = targets_lib.Finer(targets.indices, comparisons, alpha)
    g = layer_gradients(model, variables, images, finer, layer=layer, reshape=reshape)
    weights = maps.float32_or_wider(g.gradients).mean(axis=tuple(range(2, g.gradients.ndim - 1)))  # (B, K, C)
    raw = weighted_sum(g.activations, weights)
    explained = targets_lib.Classes(g.target.indices, "logit")  # pyright: ignore[reportAttributeAccessIssue]
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, explained, g.activations, g.gradients)

"""LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients weight each position, which keeps
fine detail when the layer is shallow (`conv2-norm2`, `inception_3b-output`):

    map = normalise( sum_c relu(g_ijc) A_ijc )

Defaults follow the paper: `score="logit"`, `relu=True`.

Differentiable with respect to `variables` and `images`, under `jit`, as Grad-CAM (relu(g) adds a
kink at g = 0).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import weighted_sum


@register("layer_cam", score="logit")
def layer_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """LayerCAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1], activations and gradients."""
    g = layer_gradients(model, variables, images, targets, layer=layer, reshape=reshape)
    raw = weighted_sum(g.activations, jnp.maximum(g.gradients, 0))
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), g.scores, g.target, g.activations, g.gradients)

"""Explanations inside the training loop: losses that ask a model to be right for the right reasons.

Every method is a pure function of (model, variables, images, targets), so its map can be
differentiated with respect to the weights and put in a loss (tests/test_training.py checks each
method's gradient against finite differences). Two penalties from the literature, each a pure
function of arrays:

- `outside_share`: the share of an explanation map's mass outside the region allowed to matter,
  as in GAIN's attention mining (Li et al., CVPR 2018) and CAM-supervised segmentation.
- `input_gradient_penalty`: "Right for the Right Reasons" (Ross et al., IJCAI 2017), the squared
  input gradient of the summed log-probabilities on the pixels that should not matter.

    def loss(params, images, labels, masks):
        variables = {"params": params}
        cams = grad_cam(model, variables, images, labels, layer="block5", score="logit").map
        logits = model.apply(variables, images)
        return cross_entropy(logits, labels).mean() + weight * outside_share(cams, masks).mean()
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps


def outside_share(explanations: jax.Array, allowed: jax.Array) -> jax.Array:
    """The share of each map's mass outside the allowed region, in [0, 1]:

        share = sum_ij M_ij (1 - R_ij) / sum_ij M_ij,   or mean_ij (1 - R_ij) for an all-zero map

    An all-zero map (what every method returns for a constant one) counts as spread evenly: were
    it 0, a model could escape the penalty by making its maps constant (dead features).
    explanations: (B, H, W) or (B, K, H, W) maps M >= 0 (any method's `Explanation.map`).
    allowed: (B, H, W) bool or float in [0, 1], R: 1 where the evidence should be (the object).
    Returns (B,) or (B, K) in the maps' float dtype; its gradient is finite everywhere.
    """
    outside = 1 - maps.float32_or_wider(jnp.asarray(allowed))
    if explanations.ndim == outside.ndim + 1:  # K classes explained per image share one region
        outside = outside[:, None]
    total = explanations.sum(axis=(-2, -1))
    share = maps.safe_divide((explanations * outside).sum(axis=(-2, -1)), total)
    return jnp.where(total > 0, share, outside.mean(axis=(-2, -1)))


def input_gradient_penalty(model, variables, images: jax.Array, irrelevant: jax.Array) -> jax.Array:
    """Ross et al.'s penalty, per image: the squared input gradient on the pixels that should not matter,

        penalty_n = sum_{i,j,c} ( A_nij d/dx_nijc sum_k log p_k(x_n) )^2

    images: (B, H, W, C) float as the model takes them; irrelevant: (B, H, W) bool or float, A: 1
    where the pixel should not matter. Returns (B,) float32 (float64 for float64 inputs); it is
    differentiable with respect to `variables` (a second derivative, as any explanation loss).
    """
    images = maps.float32_or_wider(images)

    def summed_log_probabilities(x):
        return jax.nn.log_softmax(maps.float32_or_wider(taps.apply_logits(model, variables, x))).sum()

    gradients = jax.grad(summed_log_probabilities)(images)  # images do not interact: one pass for all
    masked = jnp.asarray(irrelevant, gradients.dtype)[..., None] * gradients
    return (masked**2).sum(axis=(1, 2, 3))

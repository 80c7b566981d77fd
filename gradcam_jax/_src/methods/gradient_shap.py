"""GradientSHAP (Lundberg & Lee, NeurIPS 2017), as captum's `GradientShap`: expected gradients, i.e.
integrated gradients with the path point drawn at random, on noisy copies of the image:

    attribution = 1/n sum_i (x_i - x') * dS(x' + a_i (x_i - x')) / dx,
    x_i = x + e_i,  e_i ~ N(0, noise^2),  a_i ~ U(0, 1)

with n = `samples` (captum's `n_samples`, default 5) and `noise` the standard deviation in the
units the model takes (captum's `stdevs`, default 0; 0..255 pixels for GoogLeNet). `baseline` x'
is as for `integrated_gradients` ("black", "mean", a number or a per-channel tuple): one reference
input where captum draws from a set of them. In expectation (noise 0) it is integrated gradients
with the same baseline. The draws come from `key`
(a `jax.random` key or an int seed), one draw for the whole batch, so the same key gives an image
the same map in any batch and at any `batch_size`; samples are vmapped so one
forward/backward pass holds at most `batch_size` whole images (the rule in `methods.common`).
The map reduces the attribution over channels (`reduce`, default "abs_max") and rescales it;
`Explanation.gradients` holds the mean sampled gradient ``(B, [K,] *spatial, C)``.

Differentiable with respect to `variables` and `images`, under `jit`: the draws are fixed by `key`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import (
    baseline_pixels,
    input_gradients,
    passes_per_step,
    random_key,
    reduce_channels,
    target_scores,
)


@register("gradient_shap", score="logit")
def gradient_shap(
    model,
    variables,
    images,
    targets=None,
    *,
    baseline="black",
    samples: int = 5,
    noise: float = 0.0,
    key=None,
    reduce: str = "abs_max",
    batch_size: int = 8,
) -> Explanation:
    """GradientSHAP maps of `targets` (B,) or (B, K) (None: top-1) at input resolution; see the
    module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map
    ``(B, [K,] *spatial)`` float32 in [0, 1] and the mean sampled gradient."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    images = maps.float32_or_wider(images)
    scores, target = target_scores(model, variables, images, targets)  # top-1 of the clean image
    start = baseline_pixels(baseline, images, model)
    key = random_key(key)
    # one alpha and one noise draw for the whole batch: an image's map depends on the key, not the batch
    shared = (1,) * images.ndim

    def sample(i):  # one draw: (attribution, gradient), each (B, K, *spatial, C)
        noise_key, alpha_key = jax.random.split(jax.random.fold_in(key, i))
        noisy = images + noise * jax.random.normal(noise_key, images.shape[1:], images.dtype)
        alpha = jax.random.uniform(alpha_key, shared, images.dtype)
        gradients = input_gradients(model, variables, start + alpha * (noisy - start), target).gradients
        return (noisy - start)[:, None] * gradients, gradients

    attributions, gradients = jax.lax.map(
        sample, jnp.arange(samples), batch_size=passes_per_step(batch_size, len(images))
    )
    attributions, gradients = attributions.mean(axis=0), gradients.mean(axis=0)
    return Explanation(
        maps.finish(reduce_channels(attributions, reduce), images.shape[1:-1]), scores, target, None, gradients
    )

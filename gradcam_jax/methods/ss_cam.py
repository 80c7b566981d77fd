"""SS-CAM (Wang et al. 2020), as torchcam's `SSCAM`: Score-CAM whose channel weights average the
score over noisy copies of each channel's mask:

    M_c = upsample( rescale(A_c) ),  x_i = fill + (M_c + e_i) (image - fill),  e_i ~ N(0, stdev^2) per pixel,
    w = softmax_c( 1/N sum_i S(x_i) - S(image) ),  map = normalise( relu( sum_c w_c A_c ) )

with N = `samples` (torchcam's `num_samples`, 35) and `stdev` torchcam's `std` (2.0, in mask
units). Masks, scores (logits minus the image's), the softmax over channels and the fill are as in
`is_cam` (torchcam's Score-CAM family). The noise comes from `key` (a `jax.random` key or an int
seed; the same key gives the same map): draw i = sample * C + channel is
`stdev * jax.random.normal(fold_in(key, i), (B, *spatial))` for the batch's masks of that channel
(`benchmarks/originals.py` hands the same draws to torchcam). A batch larger than `batch_size` is
drawn per slice of `batch_size` images.

Cost: `samples` forward passes per channel and image (35840 at `inception_5b-output`), vmapped so
one pass holds at most `batch_size` whole images (the rule in `methods.common`), under `lax.map`;
a layer with fewer channels is cheaper (`inception_5b-relu_pool_proj`: 128).

Differentiable with respect to `variables` and `images`, under `jit`: the noise is fixed by `key`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax import maps
from gradcam_jax.methods.base import DEFAULT_LAYER, Explanation, register
from gradcam_jax.methods.common import fill_value, layer_outputs, perturbed_scores, random_key, weighted_sum
from gradcam_jax.methods.is_cam import channel_mask


@register("ss_cam", score="logit")
def ss_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str = DEFAULT_LAYER,
    samples: int = 35,
    stdev: float = 2.0,
    key=None,
    fill="mean",
    relu: bool = True,
    reshape: Callable | None = None,
    batch_size: int = 32,
) -> Explanation:
    """SS-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1] and the activations ``(B, *s, C)``."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    images = maps.float32_or_wider(images)
    background = fill_value(fill, images.shape[-1])
    channels = activations.shape[-1]
    key = random_key(key)

    def masked(i):  # the batch through channel i % C's mask with draw i // C of the noise: (B, *spatial, C)
        mask = channel_mask(activations, i % channels, images.shape[1:-1])
        mask = mask + stdev * jax.random.normal(jax.random.fold_in(key, i), mask.shape, mask.dtype)
        return background + mask[..., None] * (images - background)

    scores = perturbed_scores(model, variables, masked, jnp.arange(samples * channels), target, batch_size)
    gains = scores.reshape(samples, channels, *explained.shape).mean(axis=0) - explained  # (C, B, K)
    raw = weighted_sum(activations, jax.nn.softmax(jnp.moveaxis(gains, 0, -1), axis=-1))
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations)

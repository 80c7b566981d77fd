"""IS-CAM (Naidu et al. 2020), as torchcam's `ISCAM`: Score-CAM whose channel weights integrate the
score along a path of ever stronger masks:

    M_c = upsample( rescale(A_c) ),  x_i = x' + m_i M_c (image - x'),  m_i = sum_{j<=i} j / N,
    w = softmax_c( 1/N sum_i S(x_i) - S(image) ),  map = normalise( relu( sum_c w_c A_c ) )

with N = `samples` (torchcam's `num_samples`, 10) and torchcam's multipliers m_i (they grow to
(N + 1) / 2, past the image itself). As torchcam: each channel is min-max scaled at the layer, then
upsampled bilinearly; scores are logits (`score="logit"`) minus the image's; the weights are a
softmax over channels. Masking blends towards `baseline` x' (default "mean": the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean; the mean pixel is what
multiplying a normalised input does, as torchcam's users do; "black" multiplies the raw pixels; a
number or a per-channel tuple; see `common.baseline_pixels`).

Cost: `samples` forward passes per channel and image (10240 at `inception_5b-output`), vmapped so
one pass holds at most `batch_size` whole images (the rule in `methods.common`), under `lax.map`;
a layer with fewer channels is cheaper (`inception_5b-relu_pool_proj`: 128).

Differentiable with respect to `variables` and `images`, under `jit`: masks, scores and the softmax
are smooth in both.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, layer_outputs, perturbed_scores, weighted_sum

EPS = 1e-8  # torchcam's, in the per-channel min-max scaling


def channel_mask(activations: jax.Array, channel, size: tuple[int, ...]) -> jax.Array:
    """(B, *size) mask of one channel of ``(B, *s, C)`` activations, as torchcam's Score-CAM family
    makes it: min-max scaled at the layer (eps 1e-8), then upsampled (bilinear in 2-D, linear
    along each axis)."""
    a = maps.float32_or_wider(jnp.take(activations, channel, axis=-1))  # (B, *s)
    axes = tuple(range(1, a.ndim))
    a = a - a.min(axis=axes, keepdims=True)
    a = a / (a.max(axis=axes, keepdims=True) + EPS)
    return jax.image.resize(a, (a.shape[0], *size), method="linear")


def averaged_mask_cam(
    model, variables, images, targets, layer, reshape, samples: int, baseline, relu: bool, batch_size: int, mask_at
) -> Explanation:
    """torchcam's Score-CAM family with `samples` masks per channel (IS-CAM, SS-CAM): perturbation
    i (channel i % C, sample i // C) sees the images through `mask_at(i, i // C, channel_mask(..., i % C))`,
    blended towards `baseline`; each channel's weight is the softmax over channels of its score gain
    averaged over its samples; the map is the weighted sum of the activations."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    images = maps.float32_or_wider(images)
    background = baseline_pixels(baseline, images, model)
    channels = activations.shape[-1]

    def masked(i):  # the batch through perturbation i's mask: (B, *spatial, C)
        mask = mask_at(i, i // channels, channel_mask(activations, i % channels, images.shape[1:-1]))
        return background + mask[..., None] * (images - background)

    scores = perturbed_scores(model, variables, masked, jnp.arange(samples * channels), target, batch_size)
    gains = scores.reshape(samples, channels, *explained.shape).mean(axis=0) - explained  # (C, B, K)
    raw = weighted_sum(activations, jax.nn.softmax(jnp.moveaxis(gains, 0, -1), axis=-1))
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations)


@register("is_cam", score="logit")
def is_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    samples: int = 10,
    baseline="mean",
    relu: bool = True,
    reshape: Callable | None = None,
    batch_size: int = 32,
) -> Explanation:
    """IS-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1] and the activations ``(B, *s, C)``."""

    def mask_at(i, sample, mask):  # torchcam's multiplier m_i = sum_{j <= i} j / N, i = sample + 1
        return ((sample + 1) * (sample + 2) / (2 * samples)).astype(mask.dtype) * mask

    return averaged_mask_cam(
        model, variables, images, targets, layer, reshape, samples, baseline, relu, batch_size, mask_at
    )

"""Score-CAM (Wang et al., CVPR-W 2020): no gradients; each channel is weighted by the score the
model gives the image seen through that channel's activation, used as a mask.

    M_c = rescale( upsample(A_c) ),   w_c = score( x' + M_c (image - x') ),   map = normalise( sum_c w_c A_c )

As the authors' code: the mask is the channel upsampled bilinearly and min-max scaled to [0, 1]
(a constant channel masks everything out), the weight is the softmax probability of the masked
image (`score="softmax"`), with no score subtracted, and `relu=True`. Masking blends towards
`baseline` x' (default "mean": the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean; blending towards
the mean pixel is what multiplying the *normalised* input by the mask does in PyTorch code; "black"
multiplies the raw pixels; a number or a per-channel tuple; see `common.baseline_pixels`).

Cost: one forward pass per channel and image (1024 for `inception_5b-output`), vmapped so one pass
holds at most `batch_size` whole images (the rule in `methods.common`), under `lax.map`. A layer with fewer channels is cheaper, e.g.
`inception_5b-relu_pool_proj` (128).

Differentiable with respect to `variables` and `images`, under `jit`: the masks and the channel
weights are smooth functions of the activations and of the masked images' scores.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, layer_outputs, perturbed_scores, weighted_sum


@register("score_cam", score="softmax")
def score_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
    baseline="mean",
    batch_size: int = 16,
) -> Explanation:
    """Score-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1] and the activations."""
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    images = maps.float32_or_wider(images)
    background = baseline_pixels(baseline, images, model)
    size = images.shape[1:-1]

    def masked(channel):  # the batch seen through one channel's mask: (B, *spatial, C)
        a = maps.float32_or_wider(jnp.take(activations, channel, axis=-1))  # (B, *s)
        # linear along each axis: bilinear for images, as the authors'
        mask = maps.rescale(jax.image.resize(a, (a.shape[0], *size), method="linear"), len(size))
        return background + mask[..., None] * (images - background)

    channels = jnp.arange(activations.shape[-1])
    weights = perturbed_scores(model, variables, masked, channels, target, batch_size)  # (C, B, K)
    raw = weighted_sum(activations, jnp.moveaxis(weights, 0, -1))
    return Explanation(maps.finish(raw, size, relu), explained, target, activations)

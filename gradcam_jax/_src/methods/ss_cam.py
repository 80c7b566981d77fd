"""SS-CAM (Wang et al. 2020), as torchcam's `SSCAM`: Score-CAM whose channel weights average the
score over noisy copies of each channel's mask:

    M_c = upsample( rescale(A_c) ),  x_i = x' + (M_c + e_i) (image - x'),  e_i ~ N(0, noise^2) per pixel,
    w = softmax_c( 1/N sum_i S(x_i) - S(image) ),  map = normalise( relu( sum_c w_c A_c ) )

with N = `samples` (torchcam's `num_samples`, 35) and `noise` the standard deviation, torchcam's
`std` (2.0), in mask units (the mask runs from 0 to 1), not in the units the model takes. Masks,
scores (logits minus the image's), the softmax over channels and the `baseline` x' are as in
`is_cam` (torchcam's Score-CAM family). The noise comes from `key` (a `jax.random` key or an int
seed; the same key gives the same map): draw i = sample * C + channel is
`noise * jax.random.normal(fold_in(key, i), spatial)`, one draw added to every image's mask of that
channel (`benchmarks/originals.py` hands the same draws to torchcam), so an image's map depends on
the key, not on the batch it is in or on `batch_size`.

Cost: `samples` forward passes per channel and image (35840 at `inception_5b-output`), vmapped so
one pass holds at most `batch_size` whole images (the rule in `methods.common`), under `lax.map`;
a layer with fewer channels is cheaper (`inception_5b-relu_pool_proj`: 128).

Differentiable with respect to `variables` and `images`, under `jit`: the noise is fixed by `key`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import random_key
from gradcam_jax._src.methods.is_cam import averaged_mask_cam


@register("ss_cam", score="logit")
def ss_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    samples: int = 35,
    noise: float = 2.0,
    key=None,
    baseline="mean",
    relu: bool = True,
    reshape: Callable | None = None,
    batch_size: int = 32,
) -> Explanation:
    """SS-CAM maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1] and the activations ``(B, *s, C)``."""
    key = random_key(key)

    def mask_at(i, sample, mask):  # perturbation i = sample * C + channel: its own noise draw
        return mask + noise * jax.random.normal(jax.random.fold_in(key, i), mask.shape[1:], mask.dtype)

    return averaged_mask_cam(
        model, variables, images, targets, layer, reshape, samples, baseline, relu, batch_size, mask_at
    )

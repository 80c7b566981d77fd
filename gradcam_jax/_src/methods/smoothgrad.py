"""SmoothGrad (Smilkov et al., 2017): the input gradient averaged over noisy copies of the image,
which removes the speckle of a single gradient:

    gradient = 1/n sum_i dS(x + e_i) / dx,   e_i ~ N(0, sigma^2),   sigma = noise * (max x - min x)

with n = `samples` and `noise` the paper's noise level, a fraction of each image's range (max - min),
not a value in the units the model takes (10-20% works best there). The noise comes from `key` (a
`jax.random` key or an int seed, as every sampled method takes it; the default is seed 0), so a
call is reproducible; each draw is shared by the batch's images, so an image's map does not depend
on its batch or on `batch_size`. The key is traced: a new key does not recompile (its older name
`seed` still works until the next release). Samples are vmapped so one forward/backward pass holds
at most `batch_size` whole images (the rule in `methods.common`), and `lax.map` walks the chunks.
The map reduces the averaged gradient over channels (`reduce`, default "abs_max") and rescales it;
`Explanation.gradients` holds it.

Differentiable with respect to `variables` and `images`, under `jit`: the noise is fixed by `key`,
and `sigma` follows the image's range.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import input_gradients, passes_per_step, random_key, reduce_channels, target_scores


@register("smoothgrad", score="logit")
def smoothgrad(
    model,
    variables,
    images,
    targets=None,
    *,
    samples: int = 16,
    noise: float = 0.15,
    key=None,
    reduce: str = "abs_max",
    batch_size: int = 8,
) -> Explanation:
    """SmoothGrad maps of `targets` (B,) or (B, K) (None: top-1) at input resolution; see the
    module doc. Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1]."""
    images = maps.float32_or_wider(images)
    scores, target = target_scores(model, variables, images, targets)  # top-1 of the clean image
    per_image = tuple(range(1, images.ndim))
    sigma = noise * (images.max(axis=per_image) - images.min(axis=per_image))  # (B,)
    key = random_key(key)

    def gradient_at(i):
        # one draw for the whole batch, so an image's map depends on the key, not on its batch (or slice)
        e = (
            jax.random.normal(jax.random.fold_in(key, i), images.shape[1:])
            * sigma[(slice(None), *[None] * len(per_image))]
        )
        return input_gradients(model, variables, images + e, target).gradients

    mean = jax.lax.map(gradient_at, jnp.arange(samples), batch_size=passes_per_step(batch_size, len(images)))
    mean = mean.mean(axis=0)  # (B, K, *spatial, C)
    return Explanation(maps.rescale(reduce_channels(mean, reduce), images.ndim - 2), scores, target, None, mean)

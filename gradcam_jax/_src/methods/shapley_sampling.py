"""Shapley value sampling (Castro et al., 2009), as captum's `ShapleyValueSampling` over the patch
features of `feature_ablation`: for each of `samples` random orders of the patches, start from the
image with every patch at `baseline` and put the patches back one at a time in that order; a patch's
attribution is the rise in the class score when it comes back, averaged over the orders:

    attribution(patch) = mean over orders of S(x with the patches up to it) - S(x with those before it)

By construction the attributions of one order sum to S(x) - S(baseline). Each order costs one forward
pass of the batch per patch plus one (the all-baseline start): `samples` x (P + 1) passes, all
vmapped so one pass holds at most `batch_size` whole images (the rule in `methods.common`). One
order is drawn per sample for the whole batch, as captum does; the orders come from `key` (a
`jax.random` key or an int seed; the same key gives the same map). `patch`, `baseline` and the map
(each pixel its patch's value, signed and rescaled; `relu=True` keeps the positive part) are as for
`feature_ablation`.

Differentiable with respect to `variables` and `images`, under `jit`: the orders are fixed by `key`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, perturbed_scores, random_key, target_scores
from gradcam_jax._src.methods.regions import patch_features, with_features


@register("shapley_sampling", score="logit")
def shapley_sampling(
    model,
    variables,
    images,
    targets=None,
    *,
    patch=16,
    baseline="black",
    samples: int = 25,
    key=None,
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """Shapley-value-sampling maps of `targets` (B,) or (B, K) (None: top-1) over patches of
    `patch` pixels; see the module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation`
    with map ``(B, [K,] *spatial)`` float32 in [0, 1] and the scores of the images."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    images = maps.float32_or_wider(images)
    size = images.shape[1:-1]
    features, grid = patch_features(size, patch)
    count = int(np.prod(grid))
    value = baseline_pixels(baseline, images, model)
    features = jnp.asarray(features)
    orders = jax.vmap(lambda k: jax.random.permutation(k, count))(jax.random.split(random_key(key), samples))
    ranks = jnp.argsort(orders, axis=-1)  # (S, P): where each patch comes back in each order
    # kept[s, j, p]: patch p is back after j steps of order s (j = 0: none, j = P: all)
    kept = ranks[:, None, :] < jnp.arange(count + 1)[None, :, None]  # (S, P + 1, P)

    def partial(mask):  # the batch with only the kept patches
        return with_features(images, features, mask, value)

    clean, target = target_scores(model, variables, images, targets)  # (B, K), top-1 resolved
    scores = perturbed_scores(model, variables, partial, kept.reshape(-1, count), target, batch_size)
    scores = scores.reshape(samples, count + 1, *clean.shape)  # (S, P + 1, B, K)
    rises = jnp.diff(scores, axis=1)  # (S, P, B, K): the rise at each step of each order
    values = jnp.take_along_axis(rises, ranks[..., None, None], axis=1).mean(axis=0)  # (P, B, K) per patch
    per_pixel = jnp.moveaxis(values, 0, -1)[..., features]  # (B, K, *spatial)
    return Explanation(maps.finish(per_pixel, size, relu), clean, target)

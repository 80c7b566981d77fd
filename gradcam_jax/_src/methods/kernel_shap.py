"""Kernel SHAP (Lundberg & Lee, NeurIPS 2017), as captum's `KernelShap` over the patch features of
`feature_ablation`: LIME with the Shapley kernel, so that the fitted coefficients estimate the
patches' Shapley values. Of the `samples` on/off vectors over the P patches, the first is all on and
the second all off (weighted 1e6 each, captum's `inf_weight`, which pins the coefficients' sum to
S(x) - S(baseline)); every other one has k patches on, k drawn from 1..P-1 with probability
proportional to (P - 1) / (k (P - k)), the k chosen uniformly (weight 1). Sampling by the kernel
this way, with equal weights, is captum's; the fit is weighted least squares with an intercept
(scikit-learn's `LinearRegression`, captum's `SkLearnLinearRegression`), the minimum-norm solution
when there are fewer samples than patches. A patch's attribution is its coefficient.

`samples` forward passes of the batch (plus one for the scores); captum's default is 25, too few for
an image's patches, so ours is 500 at `patch=32` (49 patches on 224 x 224). The vectors come from
`key` (a `jax.random` key or an int seed; the same key gives the same map), one matrix for the whole
batch, drawn as `shapley_kernel_draws` says. `patch`, `baseline` and the map (each pixel its patch's
coefficient, signed and rescaled; `relu=True` keeps the positive part) are as for `feature_ablation`.
On a model linear in its input the coefficients are the exact Shapley values, sum over the patch of
w * (x - baseline), whatever the draws (given enough of them to determine the fit).

Differentiable with respect to `variables` and `images`, under `jit` (see `methods.surrogate`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, random_key
from gradcam_jax._src.methods.regions import patch_features, with_features
from gradcam_jax._src.methods.surrogate import check_samples, least_squares, surrogate_explanation

FULL_WEIGHT = 1e6  # captum's `inf_weight`, for the all-on and the all-off sample


def shapley_kernel_draws(key: jax.Array, samples: int, count: int) -> jax.Array:
    """(samples, count) bool on/off vectors, as captum's `kernel_shap_perturb_generator`: all on, all
    off, then rows with k on, k = 1 + `jax.random.categorical(k_key, log((P - 1) / (k (P - k))))`
    for k = 1..P-1, the k on given by the k smallest ranks of a `jax.random.permutation` of P per
    row (`k_key`, `order_key = jax.random.split(key)`, one subkey per row from `split(order_key)`)."""
    size_key, order_key = jax.random.split(key)
    draws = max(samples - 2, 0)
    k = jnp.arange(1, count)
    on = 1 + jax.random.categorical(size_key, jnp.log((count - 1) / (k * (count - k))), shape=(draws,))
    ranks = jax.vmap(lambda r: jax.random.permutation(r, count))(jax.random.split(order_key, draws))
    fixed = jnp.stack([jnp.ones(count, bool), jnp.zeros(count, bool)])
    return jnp.concatenate([fixed, ranks < on[:, None]])[:samples]


@register("kernel_shap", score="logit")
def kernel_shap(
    model,
    variables,
    images,
    targets=None,
    *,
    patch=32,
    baseline="black",
    samples: int = 500,
    key=None,
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """Kernel SHAP maps of `targets` (B,) or (B, K) (None: top-1) over patches of `patch` pixels;
    see the module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map
    ``(B, [K,] *spatial)`` float32 in [0, 1] and the scores of the images."""
    check_samples(samples)
    images = maps.float32_or_wider(images)
    features, grid = patch_features(images.shape[1:-1], patch)
    count = int(np.prod(grid))
    if count < 2:
        raise ValueError(f"kernel_shap needs at least 2 patches; patch={patch!r} gives 1 on {images.shape[1:-1]}")
    value = baseline_pixels(baseline, images, model)
    features = jnp.asarray(features)
    kept = shapley_kernel_draws(random_key(key), samples, count)
    every = kept.all(axis=1) | ~kept.any(axis=1)
    weights = jnp.broadcast_to(jnp.where(every, FULL_WEIGHT, 1.0)[:, None], (samples, images.shape[0]))

    def partial_image(row):  # the batch with only the row's patches
        return with_features(images, features, row, value)

    def fit(design, scores):
        return least_squares(design, scores, weights.astype(scores.dtype))

    return surrogate_explanation(
        model, variables, images, targets, kept, partial_image, fit, features, relu, batch_size
    )

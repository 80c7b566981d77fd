"""LIME (Ribeiro et al., KDD 2016), as captum's `Lime` with its defaults over the patch features of
`feature_ablation`: draw `samples` on/off vectors over the P patches (each patch on with probability
1/2, captum's default perturbation), score the image with the "off" patches at `baseline`, and fit a
Lasso (scikit-learn's `Lasso(alpha=0.01)`, captum's `SkLearnLasso`) of the scores on the on/off
vectors, each sample weighted by its similarity to the image:

    weight = exp(-d^2 / (2 width^2)),  d = 1 - cos(x, x_perturbed),  width = 1

the cosine distance between the whole input and the perturbed one (captum's
`get_exp_kernel_similarity_function("cosine", 1.0)`; note the 2 in its denominator). A patch's
attribution is its Lasso coefficient (the intercept is dropped, as captum does).

`samples` forward passes of the batch (plus one for the scores); captum's default is 25 (its docs say
50), too few for an image's patches, so ours is 500 at `patch=32` (49 patches on 224 x 224, about ten
samples per patch). The on/off vectors come from `key` (a `jax.random` key or an int seed; the same
key gives the same map): `jax.random.bernoulli(key, 0.5, (samples, P))`, one matrix for the whole
batch. `patch`, `baseline` and the map (each pixel its patch's coefficient, signed and rescaled;
`relu=True` keeps the positive part) are as for `feature_ablation`.

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
from gradcam_jax._src.methods.surrogate import check_samples, coin_flips, lasso, surrogate_explanation

ALPHA = 0.01  # captum's SkLearnLasso(alpha=0.01)
WIDTH = 1.0  # captum's kernel width
EPS = 1e-8  # torch.nn.CosineSimilarity's eps


def input_cosines(images: jax.Array, features: jax.Array, count: int, value: jax.Array, kept: jax.Array) -> jax.Array:
    """(S, B) cosine similarity of each image (B, *spatial, C), flattened, with itself with the
    features off in row s of `kept` (S, P) set to its pixel in `value` (B, C), as torch's `CosineSimilarity` over the
    whole input; from per-feature sums, so no perturbed image is built."""
    flat = images.reshape(images.shape[0], -1, images.shape[-1])  # (B, N, C)
    ids = features.reshape(-1)
    per_feature = jax.vmap(lambda v: jax.ops.segment_sum(v, ids, count))  # (B, N) -> (B, P)
    own = per_feature((flat * flat).sum(-1))  # sum x^2 over each feature's pixels and channels
    mixed = per_feature(jnp.einsum("bnc,bc->bn", flat, value))  # sum x . value
    filled = jnp.bincount(ids, length=count)[:, None] * (value * value).sum(-1)  # (P, B): sum value^2
    on = kept.astype(images.dtype)  # (S, P)
    dot = on @ own.T + (1 - on) @ mixed.T  # (S, B)
    norms = on @ own.T + (1 - on) @ filled
    return dot / jnp.maximum(jnp.sqrt(own.sum(-1) * norms), EPS)


@register("lime", score="logit")
def lime(
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
    """LIME maps of `targets` (B,) or (B, K) (None: top-1) over patches of `patch` pixels; see the
    module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map
    ``(B, [K,] *spatial)`` float32 in [0, 1] and the scores of the images."""
    check_samples(samples)
    images = maps.float32_or_wider(images)
    features, grid = patch_features(images.shape[1:-1], patch)
    count = int(np.prod(grid))
    value = baseline_pixels(baseline, images, model).astype(images.dtype)
    features = jnp.asarray(features)
    kept = coin_flips(random_key(key), samples, count)
    distances = 1 - input_cosines(images, features, count, value.reshape(len(images), -1), kept)
    weights = jnp.exp(-(distances**2) / (2 * WIDTH**2))  # (S, B)

    def partial_image(row):  # the batch with only the row's patches
        return with_features(images, features, row, value)

    def fit(design, scores):
        return lasso(design, scores, weights, ALPHA)

    return surrogate_explanation(
        model, variables, images, targets, kept, partial_image, fit, features, relu, batch_size
    )

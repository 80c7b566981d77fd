"""Feature ablation, as captum's `FeatureAblation` with a feature mask of square patches: the image
is cut into patches of `patch` pixels (squares for images, cubes for volumes, spans for signals;
the last patch along an axis is cut short when `patch` does not divide the size), and each patch's
attribution is the drop in the class score when that patch alone is replaced by `baseline`:

    attribution(patch) = S(x) - S(x with the patch at the baseline)

captum gives that value to every element (pixel and channel) of the patch. The map is that value
per pixel, signed and rescaled to [0, 1] as `occlusion`'s drops are (`relu=True` keeps only the
patches whose removal lowers the score): captum's attribution summed over channels is C times it,
so after rescaling the two are the same map. Unlike the pixel methods (`integrated_gradients`,
`saliency`) there is no absolute value: a patch whose removal raises the score is evidence against
the class, as in occlusion, and stays at the bottom of the map.

`baseline` is as for `integrated_gradients`: "black" (captum's default baseline 0), "mean" (the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean), a number or a per-channel tuple. `patch` is an int (the same along every axis) or one per
spatial axis. One forward pass of the batch per patch: 224 x 224 with `patch=16` is 196 passes. The
patches are vmapped so one pass holds at most `batch_size` whole images (the rule in
`methods.common`) and `lax.map` walks the chunks.

Differentiable with respect to `variables` and `images`, under `jit`: the patches are fixed.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, perturbed_scores, target_scores
from gradcam_jax._src.methods.regions import patch_features, with_features


@register("feature_ablation", score="logit")
def feature_ablation(
    model,
    variables,
    images,
    targets=None,
    *,
    patch=16,
    baseline="black",
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """Feature-ablation maps of `targets` (B,) or (B, K) (None: top-1) over patches of `patch`
    pixels; see the module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with
    map ``(B, [K,] *spatial)`` float32 in [0, 1] and the unablated scores."""
    images = maps.float32_or_wider(images)
    size = images.shape[1:-1]
    features, grid = patch_features(size, patch)
    count = int(np.prod(grid))
    value = baseline_pixels(baseline, images, model)
    features = jnp.asarray(features)

    def ablated(kept):  # the batch with one patch at the baseline
        return with_features(images, features, kept, value)

    clean, target = target_scores(model, variables, images, targets)  # (B, K), top-1 resolved
    drops = clean - perturbed_scores(model, variables, ablated, ~jnp.eye(count, dtype=bool), target, batch_size)
    per_pixel = jnp.moveaxis(drops, 0, -1)[..., features]  # (B, K, *spatial): each pixel its patch's drop
    return Explanation(maps.finish(per_pixel, size, relu), clean, target)

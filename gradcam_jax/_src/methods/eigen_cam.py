"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the first principal component of the layer's
activations, projected back onto the grid. No gradient and no class: every target gets the same
map (the scores and targets are still reported).

    X = A reshaped (h w, C), centred per channel;  map = normalise( X v_1 ),  v_1 = top right-singular vector

Centring follows pytorch-grad-cam (without it the component mostly tracks the mean). A singular
vector's sign is arbitrary, so the projection is flipped when its most negative value outweighs its
most positive one (the sign correction of Seg-Eigen-CAM, Chung & Ying 2025, as pytorch-grad-cam's
`get_2d_projection_with_sign_correction`). Default `relu=True` as pytorch-grad-cam.

Differentiable with respect to `variables` and `images`, under `jit`, where the first singular value
is simple (the SVD's derivative divides by the gaps between singular values); a constant map (all
gaps 0) gets a zero gradient, not NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs


def principal_projection(activations: jax.Array) -> jax.Array:
    """`(B, *s, C)` -> `(B, *s)`: each image's centred activations projected on their first
    principal direction, sign-corrected (see the module doc)."""
    b, *grid, c = activations.shape
    x = maps.float32_or_wider(activations.reshape(b, -1, c))
    n = x.shape[1]  # positions
    x = x - x.mean(axis=1, keepdims=True)
    # The SVD's derivative divides by gaps between singular values, all 0 for constant activations;
    # those get a stand-in with distinct ones, so their (constant) map has a zero gradient, not NaN.
    constant = (x == 0).all(axis=(1, 2), keepdims=True)
    stand_in = jnp.eye(n, c, dtype=x.dtype) * jnp.arange(1, c + 1, dtype=x.dtype)
    _, _, vt = jnp.linalg.svd(jnp.where(constant, stand_in, x), full_matrices=False)
    projection = jnp.einsum("bnc,bc->bn", x, vt[:, 0])
    flip = jnp.abs(projection.min(axis=1)) > jnp.abs(projection.max(axis=1))
    return jnp.where(flip[:, None], -projection, projection).reshape(b, *grid)


@register("eigen_cam", score="logit")
def eigen_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """Eigen-CAM maps at `layer`, repeated for each of `targets` (B,) or (B, K) (None: top-1).
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1] and the activations."""
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    raw = principal_projection(activations)[:, None]  # (B, 1, *s)
    raw = jnp.broadcast_to(raw, (raw.shape[0], explained.shape[1], *raw.shape[2:]))
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations)

"""KPCA-CAM (Karmani et al. 2024), as pytorch-grad-cam's `KPCA_CAM`: Eigen-CAM with kernel PCA in
place of PCA. No gradient and no class: every target gets the same map.

    X = A reshaped (positions, C), centred per channel;  K_ij = kernel(x_i, x_j), centred;
    map = normalise( relu( sqrt(lambda_1) u_1 ) )

with (lambda_1, u_1) the top eigenpair of the centred kernel matrix: scikit-learn's
`KernelPCA(n_components=1, kernel, gamma).fit_transform(X)`, its sign fixed as scikit-learn's (the
entry of largest magnitude positive). Kernels as scikit-learn's, with its defaults: "sigmoid"
tanh(gamma x.y + 1) (pytorch-grad-cam's default), "rbf" exp(-gamma |x - y|^2), "poly"
(gamma x.y + 1)^3, "linear" x.y (Eigen-CAM up to the sign rule), "cosine"; `gamma` None is 1/C.
Defaults as pytorch-grad-cam: `kernel="sigmoid"`, `relu=True`.

Cost: an eigendecomposition of a (positions x positions) matrix per image, 49 x 49 at
`inception_5b-output`.

Differentiable with respect to `variables` and `images`, under `jit`, where the top eigenvalue is
simple; a constant map (all eigenvalues 0) gets a zero gradient, not NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs

KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")


def kernel_matrix(x: jax.Array, kernel: str, gamma: float) -> jax.Array:
    """(B, n, n) kernel matrices of (B, n, C) points, as scikit-learn's `pairwise_kernels`."""
    dots = jnp.einsum("bic,bjc->bij", x, x)
    if kernel == "sigmoid":
        return jnp.tanh(gamma * dots + 1.0)
    if kernel == "poly":
        return (gamma * dots + 1.0) ** 3
    if kernel == "linear":
        return dots
    squares = jnp.einsum("bic,bic->bi", x, x)
    if kernel == "rbf":
        return jnp.exp(-gamma * jnp.maximum(squares[:, :, None] + squares[:, None, :] - 2 * dots, 0.0))
    if kernel == "cosine":
        norms = jnp.sqrt(squares)
        return maps.safe_divide(dots, norms[:, :, None] * norms[:, None, :])
    raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(KERNELS)}")


def kernel_projection(activations: jax.Array, kernel: str = "sigmoid", gamma: float | None = None) -> jax.Array:
    """``(B, *s, C)`` -> ``(B, *s)``: each image's positions projected on the first kernel principal
    component (see the module doc)."""
    b, *grid, c = activations.shape
    x = maps.float32_or_wider(activations.reshape(b, -1, c))
    n = x.shape[1]
    x = x - x.mean(axis=1, keepdims=True)
    k = kernel_matrix(x, kernel, 1.0 / c if gamma is None else gamma)
    k = k - k.mean(axis=1, keepdims=True) - k.mean(axis=2, keepdims=True) + k.mean(axis=(1, 2), keepdims=True)
    # eigh's derivative divides by gaps between eigenvalues, all 0 for a constant layer; that gets a
    # stand-in with distinct ones, so its (constant) map has a zero gradient, not NaN
    constant = (jnp.abs(k) < 1e-12).all(axis=(1, 2), keepdims=True)
    stand_in = jnp.diag(jnp.arange(1, n + 1, dtype=k.dtype))
    values, vectors = jnp.linalg.eigh(jnp.where(constant, stand_in, k))
    top = vectors[:, :, -1]  # (B, n): eigenvalues come in ascending order
    biggest = jnp.take_along_axis(top, jnp.abs(top).argmax(axis=1, keepdims=True), axis=1)
    scale = jnp.sqrt(jnp.maximum(values[:, -1:], 1e-30))  # scikit-learn clips tiny negatives to 0
    projection = jnp.where(constant[:, :, 0], 0.0, jnp.sign(biggest) * top * scale)
    return projection.reshape(b, *grid)


@register("kpca_cam", score="logit")
def kpca_cam(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    kernel: str = "sigmoid",
    gamma: float | None = None,
    relu: bool = True,
    reshape: Callable | None = None,
) -> Explanation:
    """KPCA-CAM maps at `layer`, repeated for each of `targets` (B,) or (B, K) (None: top-1); see
    the module doc. images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)``
    float32 in [0, 1] and the activations ``(B, *s, C)``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(KERNELS)}")
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    raw = kernel_projection(activations, kernel, gamma)[:, None]  # (B, 1, *s)
    raw = jnp.broadcast_to(raw, (raw.shape[0], explained.shape[1], *raw.shape[2:]))
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations)

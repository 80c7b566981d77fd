"""What the surrogate-model methods (`lime`, `kernel_shap`, `image_lime`) share, written once: random
on/off vectors over P features, the scores of the batch with the "off" features replaced, the weighted
linear fits (scikit-learn's `Lasso` and `LinearRegression` with `sample_weight`, in JAX), and the map
that gives each pixel its feature's coefficient.

One on/off matrix (S, P) is drawn per call and used for every image and target of the batch (captum
draws per example; with the draws fixed the two are the same computation). Each row is one forward
pass of the batch, vmapped so one pass holds at most `batch_size` whole images (`common.perturbed_scores`).
The fits run per image and target; their weights are per image and sample, (S, B).

Both fits are differentiable under `jit` (`jax.grad` through the scores, and through the weights where
they depend on the images): the least squares through the pseudo-inverse, the Lasso by implicit
differentiation on its active set (a `custom_jvp`; its coordinate-descent loop is not differentiated).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation
from gradcam_jax._src.methods.common import perturbed_scores, target_scores

# scikit-learn's `LinearRegression(tol=1e-6)` passes its tol to `scipy.linalg.lstsq` as `cond`:
# singular values below 1e-6 of the largest count as zero (the minimum-norm solution beyond them)
LSTSQ_CUTOFF = 1e-6
SWEEPS = 1000  # coordinate-descent sweeps at most (scikit-learn's Lasso max_iter); it stops when still
SWEEP_TOL = 1e-6  # no coefficient moved by more than this fraction of the largest in a sweep


def check_samples(samples: int) -> None:
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")


def coin_flips(key: jax.Array, samples: int, count: int) -> jax.Array:
    """(samples, count) bool: each feature on with probability 1/2, independently (captum's LIME
    `default_perturb_func`, one row per sample): `jax.random.bernoulli(key, 0.5, (samples, count))`."""
    return jax.random.bernoulli(key, 0.5, (samples, count))


def weighted_centred(design: jax.Array, scores: jax.Array, weights: jax.Array):
    """The fit's data as scikit-learn prepares it with `fit_intercept` and `sample_weight`: design
    (S, P) (or (B, S, P), one per image), scores (S, B, K), weights (S, B) -> (sqrt(p) * centred
    design (B, S, P), sqrt(p) * centred scores (B, S, K)), p the weights normalised per image, means
    weighted by p."""
    p = weights / weights.sum(axis=0)  # (S, B)
    design = jnp.broadcast_to(design, (scores.shape[1], *design.shape[-2:]))  # (B, S, P)
    x = design - jnp.einsum("sb,bsp->bp", p, design)[:, None]
    # centred about the first sample first, so that equal scores centre to exactly 0 (no rounding
    # left for the fit to explain: a constant model gives coefficients 0, a blank map)
    y = jnp.moveaxis(scores - scores[0], 1, 0)  # (B, S, K)
    y = y - jnp.einsum("sb,bsk->bk", p, y)[:, None]
    root = jnp.sqrt(p.T)[..., None]  # (B, S, 1)
    return root * x, root * y


def least_squares(design: jax.Array, scores: jax.Array, weights: jax.Array) -> jax.Array:
    """(B, K, P) coefficients (design (S, P) or (B, S, P)) of scikit-learn's `LinearRegression().fit(design, scores[:, b, k],
    sample_weight=weights[:, b])` (intercept fitted, not returned): weighted least squares, the
    minimum-norm solution where the samples do not determine it (`scipy.linalg.lstsq`, cond 1e-6)."""
    x, y = weighted_centred(maps.float32_or_wider(design), scores, weights)
    coefficients = jnp.linalg.pinv(x, rtol=LSTSQ_CUTOFF) @ y  # (B, P, K)
    return jnp.swapaxes(coefficients, 1, 2)


def lasso(design: jax.Array, scores: jax.Array, weights: jax.Array, alpha: float) -> jax.Array:
    """(B, K, P) coefficients of scikit-learn's `Lasso(alpha).fit(design, scores[:, b, k],
    sample_weight=weights[:, b])`: the minimiser of 1/2 sum_i p_i (y_i - b - x_i w)^2 + alpha |w|_1,
    p the weights normalised to sum to 1 (what scikit-learn's rescaling of `sample_weight` to sum to
    n gives), the intercept b fitted and not returned. Solved as scikit-learn does, by cyclic
    coordinate descent from w = 0, here on the Gram matrix and run until no coefficient moves, then
    made exact on the nonzero coefficients found (see `lasso_solution`)."""
    x, y = weighted_centred(maps.float32_or_wider(design), scores, weights)
    gram = jnp.einsum("bsp,bsq->bpq", x, x)  # (B, P, P)
    correlations = jnp.einsum("bsp,bsk->bkp", x, y)  # (B, K, P)
    per_target = jax.vmap(partial(lasso_solution, alpha=alpha), in_axes=(None, 0))  # over K
    return jax.vmap(per_target)(gram, correlations)  # over B


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def lasso_solution(gram: jax.Array, correlations: jax.Array, alpha: float) -> jax.Array:
    """argmin_w 1/2 w'Gw - c'w + alpha |w|_1 for one (P, P) Gram matrix G and (P,) c: coordinate
    descent (`coordinate_descent`), then, on the features it left nonzero (the active set A, signs
    s), the exact solution w_A = G_AA^-1 (c_A - alpha s_A) of the optimality conditions there, kept
    where it does not change a sign (else the descent's own result)."""
    w = coordinate_descent(gram, correlations, alpha)
    # a coefficient that only rounding kept off 0 (collinear features) is 0: no active feature for it
    w = jnp.where(jnp.abs(w) > 8 * jnp.finfo(w.dtype).eps * jnp.abs(w).max(), w, 0)
    active = w != 0
    exact = solve_on(active, gram, jnp.where(active, correlations - alpha * jnp.sign(w), 0))
    return jnp.where(jnp.all(jnp.sign(exact) == jnp.sign(w)), exact, w)


@lasso_solution.defjvp
def lasso_solution_jvp(alpha, primals, tangents):
    # on the active set the optimality conditions G_AA w_A = c_A - alpha s_A hold with s_A fixed
    # nearby, so dw_A = G_AA^-1 (dc_A - dG_A. w); the other coefficients stay 0
    gram, correlations = primals
    d_gram, d_correlations = tangents
    w = lasso_solution(gram, correlations, alpha)
    active = w != 0
    return w, solve_on(active, gram, jnp.where(active, d_correlations - d_gram @ w, 0))


def solve_on(active: jax.Array, gram: jax.Array, rhs: jax.Array) -> jax.Array:
    """(P,) x with G_AA x_A = rhs_A on the `active` set A and 0 elsewhere (rhs 0 there), the
    minimum-norm one where G_AA is singular (active features collinear over the samples): the
    pseudo-inverse of G with the inactive rows and columns replaced by the identity's."""
    both = active[:, None] & active[None, :]
    inverse = jnp.linalg.pinv(jnp.where(both, gram, jnp.eye(len(active), dtype=gram.dtype)), hermitian=True)
    return jnp.where(active, inverse @ rhs, 0)  # exactly 0 off the set (the product leaves rounding)


def coordinate_descent(gram: jax.Array, correlations: jax.Array, alpha: float) -> jax.Array:
    """Cyclic coordinate descent for the Lasso on its Gram form (scikit-learn's update,
    w_j = soft(c_j - sum_{l != j} G_jl w_l, alpha) / G_jj, features with G_jj = 0 held at 0), from
    w = 0, sweeping until no coefficient moves by more than SWEEP_TOL of the largest (or SWEEPS)."""
    count = correlations.shape[0]
    diagonal = jnp.diagonal(gram)

    def update(j, carry):
        w, moved = carry
        rho = correlations[j] - gram[j] @ w + diagonal[j] * w[j]
        new = jnp.sign(rho) * jax.nn.relu(jnp.abs(rho) - alpha) / jnp.where(diagonal[j] > 0, diagonal[j], 1)
        new = jnp.where(diagonal[j] > 0, new, 0)
        return w.at[j].set(new), jnp.maximum(moved, jnp.abs(new - w[j]))

    def sweep(state):
        sweeps, w, _ = state
        w, moved = jax.lax.fori_loop(0, count, update, (w, jnp.zeros((), w.dtype)))
        return sweeps + 1, w, moved

    def moving(state):
        sweeps, w, moved = state
        return (sweeps < SWEEPS) & (moved > SWEEP_TOL * jnp.abs(w).max())

    start = (0, jnp.zeros_like(correlations), jnp.asarray(jnp.inf, correlations.dtype))
    return jax.lax.while_loop(moving, sweep, start)[1]


def surrogate_explanation(
    model,
    variables,
    images: jax.Array,
    targets,
    kept: jax.Array,
    perturb: Callable[[jax.Array], jax.Array],
    fit: Callable[[jax.Array, jax.Array], jax.Array],
    features: jax.Array,
    relu: bool,
    batch_size: int,
) -> Explanation:
    """The common core: the scores of `perturb(row)` (the batch with the row's "off" features
    replaced) for each row of `kept` (S, P) bool, one forward pass of the batch per row;
    `fit(design (S, P) float, scores (S, B, K))` -> (B, K, P) coefficients; each pixel its
    feature's coefficient (`features`: the feature of every pixel, `*spatial` for the whole batch
    or (B, *spatial) per image), signed and rescaled by `maps.finish`."""
    size = images.shape[1:-1]
    clean, target = target_scores(model, variables, images, targets)  # (B, K), top-1 resolved
    scores = perturbed_scores(model, variables, perturb, kept, target, batch_size)  # (S, B, K)
    coefficients = fit(kept.astype(scores.dtype), scores)  # (B, K, P)
    if features.ndim == len(size):
        per_pixel = coefficients[..., features]  # (B, K, *spatial)
    else:  # a segmentation per image
        flat = features.reshape(features.shape[0], 1, -1)
        per_pixel = jnp.take_along_axis(coefficients, flat, axis=-1).reshape(*coefficients.shape[:2], *size)
    return Explanation(maps.finish(per_pixel, size, relu), clean, target)

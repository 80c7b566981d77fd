"""Faithfulness over regions: square patches (RegionPerturbation, Selectivity, Infidelity),
superpixels (IROF), Gaussian noise (captum's infidelity) and whole maps compared across the batch
(Sufficiency). Quantus 0.6.0's definitions; the conventions (maps or a method, baselines, scores,
keys) are `faithfulness`'s module doc.

Patches tile the spatial axes as Quantus's do: a grid of `patch_size` along every spatial axis, the
input padded to a multiple of it (the floor of half the padding before, the rest after), so the
border patches are smaller; patch ids run in row-major order over the grid.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.explain import Scores, check_count, scores
from gradcam_jax._src.evaluation.faithfulness import (
    Baseline,
    CurveScores,
    curve_scores,
    prepare,
    replaced,
    step_sums,
    trapezoid,
)
from gradcam_jax._src.methods.common import random_key, target_scores
from gradcam_jax._src.metrics import baseline_images

ORDERS = ("morf", "lerf", "random")


def patch_ids(spatial: Sequence[int], patch_size: int) -> tuple[np.ndarray, int]:
    """(*spatial) int32 patch id of each pixel, and the number of patches (see the module doc)."""
    index, counts = [], []
    for dim in spatial:
        before = (-dim % patch_size) // 2  # Quantus's `get_padding_size`: floor of half the padding
        index.append((np.arange(dim) + before) // patch_size)
        counts.append(math.ceil((dim + before) / patch_size))
    grids = np.meshgrid(*index, indexing="ij")
    return np.ravel_multi_index(grids, counts).astype(np.int32), math.prod(counts)


def check_patch(name: str, patch_size, images) -> None:
    check_count(name, "patch_size", patch_size, 1, max(np.shape(images)[1:-1]))


# ---- RegionPerturbation and Selectivity --------------------------------------------------------------


def random_orders(key, images: int, count: int) -> jax.Array:
    """(images, count) int32: a random permutation of the patches per image (order "random"), of `key`."""
    return jax.vmap(lambda k: jax.random.permutation(k, count))(jax.random.split(random_key(key), images))


@functools.partial(jax.jit, static_argnames=("model", "patch_size", "order", "steps", "baseline", "batch_size"))
def _regions(model, variables, images, maps, target, key, *, patch_size, order, steps, baseline, batch_size):
    """Scores of the untouched batch (B,) and after removing the first 1..steps patches (B, steps)."""
    b = images.shape[0]
    ids, count = patch_ids(images.shape[1:-1], patch_size)
    ids = jnp.broadcast_to(jnp.asarray(ids), maps.shape)
    sums = step_sums(maps, ids.reshape(b, -1), count)  # (B, patches)
    if order == "random":
        ranked = random_orders(key, b, count)
    else:
        ranked = jnp.argsort(-sums if order == "morf" else sums, axis=-1, stable=True)
    place = jnp.argsort(ranked, axis=-1)  # each patch's place in the order
    removed_at = jnp.take_along_axis(place, ids.reshape(b, -1), -1).reshape(maps.shape)
    before, target = target_scores(model, variables, images, target)
    other = baseline_images(images, baseline, model)
    after = curve_scores(
        model, variables, lambda s: replaced(images, other, removed_at <= s), steps, target, batch_size
    )
    return before[:, 0], after


def region_perturbation(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    patch_size: int = 8, order: str = "morf",
    regions_evaluation: int = 100, baseline: Baseline = "black", key=None, score: str = "softmax", batch_size: int = 16,
) -> CurveScores:  # fmt: skip
    """RegionPerturbation (Samek et al., IEEE TNNLS 2017): sum the map over `patch_size` patches, and
    replace the patches by `baseline` cumulatively in `order` ("morf": most relevant first, "lerf":
    least, "random": a permutation per image from `key`), the first `regions_evaluation` of them;
    `curve` (B, steps) the drops of the class score, `per_image` their mean (AOPC; Quantus returns
    the curves). Higher is better for "morf", lower for "lerf"."""
    name = "region_perturbation"
    if order not in ORDERS:
        raise ValueError(f"{name}: order must be one of {ORDERS}; got {order!r}")
    check_patch(name, patch_size, images)
    check_count(name, "regions_evaluation", regions_evaluation, 1)
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    steps = min(regions_evaluation, patch_ids(p.images.shape[1:-1], patch_size)[1])
    before, after = _regions(
        model, p.variables, p.images, p.maps, p.target, random_key(key), patch_size=patch_size, order=order,
        steps=steps, baseline=baseline, batch_size=batch_size,
    )  # fmt: skip
    drops = before[:, None] - after
    return CurveScores(drops.mean(-1), drops.mean(), drops)


def selectivity(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    patch_size: int = 8, baseline: Baseline = "black", score: str = "softmax",
    batch_size: int = 16,
) -> CurveScores:  # fmt: skip
    """Selectivity (Montavon et al., Digital Signal Processing 2018): replace `patch_size` patches by
    `baseline` cumulatively, most relevant (largest map sum) first, every patch; `curve` (B, patches)
    the class score after each, `per_image` its area (unit-width trapezoids, Quantus's
    `get_auc_score` per image). Lower is better."""
    name = "selectivity"
    check_patch(name, patch_size, images)
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    steps = patch_ids(p.images.shape[1:-1], patch_size)[1]
    _, after = _regions(
        model, p.variables, p.images, p.maps, p.target, random_key(None), patch_size=patch_size, order="morf",
        steps=steps, baseline=baseline, batch_size=batch_size,
    )  # fmt: skip
    auc = trapezoid(after)
    return CurveScores(auc, auc.mean(), after)


# ---- IROF: superpixels ---------------------------------------------------------------------------


def quantus_segments(images) -> np.ndarray:
    """(B, H, W) int32 SLIC superpixels of `(B, H, W, C)` images as Quantus's IROF cuts them:
    scikit-image's `slic(image, start_label=0)` with its defaults (100 segments, compactness 10) on
    the float64 image as it is (`pip install scikit-image`; imported only here)."""
    from skimage.segmentation import slic

    return np.stack([slic(np.asarray(x, np.float64), start_label=0) for x in np.asarray(images)]).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("model", "count", "baseline", "batch_size"))
def _irof(model, variables, images, maps, target, segments, *, count, baseline, batch_size):
    b = images.shape[0]
    flat = segments.reshape(b, -1)
    sizes = jax.vmap(lambda s: jnp.bincount(s, length=count))(flat)
    means = step_sums(maps, flat, count) / jnp.maximum(sizes, 1)
    present = sizes > 0
    ranked = jnp.argsort(jnp.where(present, -means, jnp.inf), axis=-1, stable=True)  # absent labels last
    removed_at = jnp.take_along_axis(jnp.argsort(ranked, axis=-1), flat, -1).reshape(maps.shape)
    before, target = target_scores(model, variables, images, target)
    other = baseline_images(images, baseline, model)
    after = curve_scores(
        model, variables, lambda s: replaced(images, other, removed_at <= s), count, target, batch_size
    )
    ratio = after / before[:, :1]
    n = present.sum(-1)  # the segments of each image: its curve's length
    step = jnp.arange(count)
    weights = (step < n[:, None]) - 0.5 * (step == 0) - 0.5 * (step == n[:, None] - 1)  # trapezoids up to n
    return n - (ratio * weights).sum(-1), ratio


def irof(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    segments=None, baseline: Baseline = "mean", score: str = "softmax",
    batch_size: int = 16,
) -> CurveScores:  # fmt: skip
    """IROF, iterative removal of features (Rieger & Hansen 2020): order each image's superpixels by
    their mean map value, replace them by `baseline` cumulatively, most relevant first, and follow
    the class score as a fraction of the untouched image's (`curve`, B x the most segments, beyond
    an image's own count its last removal repeated); `per_image` is the area over that curve, its
    segment count minus the trapezoid area. Higher is better. `segments`: `(B, *spatial)` int labels
    from 0; None: `quantus_segments` (2-D images only), Quantus's SLIC. The labels are computed
    before the jitted program, which is one per shape and largest label."""
    name = "irof"
    if segments is None:
        if np.ndim(images) != 4:
            raise ValueError(f"{name}: SLIC superpixels need (B, H, W, C) images; pass segments= otherwise")
        segments = quantus_segments(images)
    segments = np.asarray(segments)
    if segments.shape != np.shape(images)[:-1] or not np.issubdtype(segments.dtype, np.integer) or segments.min() < 0:
        raise ValueError(f"{name}: segments must be (B, *spatial) = {np.shape(images)[:-1]} labels >= 0; got "
                         f"{segments.dtype} {segments.shape}")  # fmt: skip
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    aoc, ratio = _irof(
        model, p.variables, p.images, p.maps, p.target, jnp.asarray(segments, jnp.int32),
        count=int(segments.max()) + 1, baseline=baseline, batch_size=batch_size,
    )  # fmt: skip
    return CurveScores(aoc, aoc.mean(), ratio)


# ---- Infidelity: Quantus's (patches in raster order) and captum's (Gaussian noise) ------------------


@functools.partial(jax.jit, static_argnames=("model", "patch_sizes", "baseline", "batch_size"))
def _infidelity(model, variables, images, maps, target, *, patch_sizes, baseline, batch_size):
    before, target = target_scores(model, variables, images, target)
    other = baseline_images(images, baseline, model)
    losses = []
    for size in patch_sizes:
        ids, count = patch_ids(images.shape[1:-1], size)
        ids = jnp.asarray(ids)

        def perturb(s, ids=ids):  # patches 0..s replaced, in raster order
            return replaced(images, other, jnp.broadcast_to(ids <= s, maps.shape))

        after = curve_scores(model, variables, perturb, count, target, batch_size)
        # sum_pixels map x sum_channels (x - x_s): (x - x_s) is (x - other) on the removed pixels
        change = (maps * (images - other).sum(-1)).reshape(maps.shape[0], -1)
        explained = jnp.cumsum(step_sums(change.reshape(maps.shape), jnp.broadcast_to(ids, maps.shape), count), -1)
        losses.append((((before[:, :1] - after) - explained) ** 2).mean(-1))
    return jnp.stack(losses, -1).mean(-1)


def infidelity(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    perturb_patch_sizes: Sequence[int] = (4,), baseline: Baseline = "black",
    score: str = "logit", batch_size: int = 16,
) -> Scores:  # fmt: skip
    """Infidelity as Quantus 0.6.0 computes it (after Yeh et al., NeurIPS 2019): for each patch size,
    replace the patches by `baseline` cumulatively in raster order; at each step compare the drop of
    the class score with sum(map x (image - perturbed image)) over pixels and channels; the mean
    squared difference over the steps, averaged over the patch sizes. Lower is better. The
    perturbations are deterministic, so Quantus's `n_perturb_samples` repeats one value (left out);
    captum's sampled definition is `sampled_infidelity`."""
    name = "infidelity"
    sizes = tuple(int(s) for s in perturb_patch_sizes)
    if not sizes:
        raise ValueError(f"{name}: perturb_patch_sizes is empty: nothing would be perturbed")
    for size in sizes:
        check_patch(name, size, images)
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    return scores(
        _infidelity(
            model, p.variables, p.images, p.maps, p.target, patch_sizes=sizes, baseline=baseline, batch_size=batch_size
        )  # fmt: skip
    )


def noise_draws(key, samples: int, shape: Sequence[int]) -> jax.Array:
    """(samples, *shape) float32 standard normal draws of `key`, one batch-shaped draw per sample."""
    return jax.random.normal(random_key(key), (samples, *shape), jnp.float32)


@functools.partial(jax.jit, static_argnames=("model", "n_perturb_samples", "normalize", "batch_size"))
def _sampled_infidelity(model, variables, images, maps, target, key, noise, *, n_perturb_samples, normalize,
                        batch_size):  # fmt: skip
    before, target = target_scores(model, variables, images, target)
    draws = noise * noise_draws(key, n_perturb_samples, images.shape)  # the perturbations I
    after = curve_scores(model, variables, lambda s: images - draws[s], n_perturb_samples, target, batch_size)
    drops = before[:, :1] - after  # f(x) - f(x - I), (B, samples)
    explained = jnp.einsum("b...,sb...c->bs", maps, draws)  # sum map x I
    if not normalize:
        return ((explained - drops) ** 2).mean(-1)
    beta = (explained * drops).sum(-1) / jnp.where((explained**2).sum(-1) == 0, 1.0, (explained**2).sum(-1))
    return ((beta[:, None] * explained - drops) ** 2).mean(-1)


def sampled_infidelity(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    n_perturb_samples: int = 10, noise: float = 0.1,
    normalize: bool = False, key=None, score: str = "logit", batch_size: int = 16,
) -> Scores:  # fmt: skip
    """Infidelity as captum's `infidelity` computes it (Yeh et al., NeurIPS 2019), with Gaussian
    perturbations: I = `noise` x a standard normal draw of `key` per sample (`noise_draws`), the
    image x - I; the mean over `n_perturb_samples` of (sum(map x I) - (f(x) - f(x - I)))^2, f the
    class score; `normalize` first scales the map by the least-squares beta (captum's). Lower is better."""
    name = "sampled_infidelity"
    check_count(name, "n_perturb_samples", n_perturb_samples, 1)
    if not noise > 0:
        raise ValueError(f"{name}: noise must be > 0 (noise {noise!r} perturbs nothing)")
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    return scores(
        _sampled_infidelity(
            model, p.variables, p.images, p.maps, p.target, random_key(key), jnp.float32(noise),
            n_perturb_samples=n_perturb_samples, normalize=normalize, batch_size=batch_size,
        )
    )  # fmt: skip


# ---- Sufficiency: maps compared across the batch -----------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def _sufficiency(model, variables, images, maps, threshold):
    b = maps.shape[0]
    flat = maps.reshape(b, -1)
    variance = flat.var(0, ddof=1)
    weight = jnp.where(variance > 0, 1.0 / jnp.where(variance > 0, variance, 1.0), 0.0)
    distances = jnp.sqrt(jnp.maximum((((flat[:, None] - flat[None]) ** 2) * weight).sum(-1), 0.0))
    largest = jnp.abs(distances).max()
    distances = jnp.where(largest > 0, distances / jnp.where(largest > 0, largest, 1.0), distances)
    similar = (distances <= threshold) & ~jnp.eye(b, dtype=bool)
    predicted = jnp.argmax(targets_lib.logits_of(taps.call_model(model, variables, images)).reshape(b, -1), -1)
    same = predicted[:, None] == predicted[None]
    count = similar.sum(-1)
    return jnp.where(count > 0, (same & similar).sum(-1) / jnp.maximum(count, 1), 0.0)


def sufficiency(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    threshold: float = 0.6, abs: bool = True,
) -> Scores:  # fmt: skip
    """Sufficiency (Dasgupta et al., ICML 2022), as Quantus computes it: two images share an
    explanation when the standardised Euclidean distance of their maps (`abs`: of the absolute maps; each
    pixel scaled by its variance over the batch), over the batch's largest such distance, is at most
    `threshold`; an image's score is the fraction of the others sharing its explanation that the
    model predicts (top-1) as the same class (0 when none shares it). Higher is better; needs B >= 2.
    Pixels that do not vary over the batch are left out of the distance (scipy's gives NaN there)."""
    name = "sufficiency"
    if np.shape(images)[0] < 2:
        raise ValueError(f"{name} compares the images of a batch: it needs at least 2; got {np.shape(images)[0]}")
    p = prepare(name, model, variables, images, maps, method, options, targets, None, abs)
    return scores(_sufficiency(model, p.variables, p.images, p.maps, jnp.float32(threshold)))

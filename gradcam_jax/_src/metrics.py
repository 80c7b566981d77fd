"""Does a map show what the model uses? Metrics that tell a good explanation from a bad one.

- `deletion` / `insertion` (Petsiuk et al., BMVC 2018, "RISE"): remove (or reveal) pixels from the
  most salient down and follow the class score; a good map makes it fall fast (low deletion AUC)
  and rise fast (high insertion AUC). Batched and jitted: every step is a forward pass, chunked.
- `confidence_change` (Chattopadhyay et al., WACV 2018, "Grad-CAM++"): show the model only the
  explained part (image x map) — average drop in confidence (lower is better) and how often the
  confidence increases (higher is better).
- `road` (Rong et al., ICML 2022, "Remove and Debias"): replace the most (or least) relevant pixels
  by noisy linear imputation from their neighbours, so that removing pixels leaves no tell-tale
  shape for the model to see, and follow the class score; as pytorch-grad-cam's ROAD metrics.
- `model_randomisation` (Adebayo et al., NeurIPS 2018, "Sanity checks for saliency maps"):
  re-initialise the layers from the top down, cascading, and measure the Spearman rank
  correlation of each map with the original. A map that does not change when the weights are
  random cannot be explaining the model (low is better).

Options are named as the methods' are (`gradcam_jax._src.methods.base`): `targets`, `score`,
`baseline` (what replaces pixels), `noise`, `key`; older names still work for one release, with a
DeprecationWarning.

Maps are `(B, *spatial)` in [0, 1] at the input resolution (`Explanation.map` with one target per
image); targets are (B,) int class indices; images what the model takes (RGB 0..255 here), with
1, 2 or 3 spatial axes ((B, L, C) signals, (B, H, W, C) images, (B, D, H, W, C) volumes): "pixels"
below are the input's positions, samples of a signal or voxels of a volume alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.inputs import check_maps
from gradcam_jax._src.methods.base import METHODS, accepting_old_names, resolve_target
from gradcam_jax._src.methods.common import baseline_pixels, perturbed_scores, random_key, target_scores

# RISE's insertion baseline: a Gaussian blur, 11 x 11 kernel, sigma 5.
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
# ROAD (pytorch-grad-cam's defaults): an imputed pixel is the weighted mean of its 8 neighbours,
# 1/6 each for the 4 direct and 1/12 each for the 4 diagonal ones, plus Gaussian noise of this std.
ROAD_NEIGHBOURS = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6,
                   (0, 1): 1 / 6, (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12}  # fmt: skip
ROAD_NOISE = 0.01
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
# The conjugate-gradient solve (float32) stops at this residual norm relative to the right-hand side's,
# or after this many iterations per side of the image, and starts again from its result ROAD_ROUNDS
# times in all: each start recomputes the true residual, from which CG's running one drifts in float32.
# On 224 x 224 photos (0..255) the imputed pixels are then within 0.1 of a level of a float64 direct solve.
ROAD_TOLERANCE, ROAD_ITERATIONS_PER_SIDE, ROAD_ROUNDS = 1e-5, 8, 3


class Curve(NamedTuple):
    scores: jax.Array  # (B, steps + 1) float32: the class score after each step (step 0: untouched)
    auc: jax.Array  # (B,) float32: area under the curve, fraction of pixels on the x axis in [0, 1]
    fractions: jax.Array  # (steps + 1,) float32: fraction of pixels changed at each step


class Confidence(NamedTuple):
    average_drop: jax.Array  # () float32, percent: mean of max(0, Y - O) / Y
    increase: jax.Array  # () float32, percent of images with O > Y
    drop: jax.Array  # (B,) float32: max(0, Y - O) / Y per image
    increased: jax.Array  # (B,) bool: O > Y per image


class Road(NamedTuple):
    """ROAD's score changes (the score after imputation minus the score of the untouched image), as
    pytorch-grad-cam's `ROADMostRelevantFirst(p)` / `ROADLeastRelevantFirst(p)` give them, at each
    percentile p; the averages are its `...Average` classes and `combined` its `ROADCombined`."""

    most_relevant_first: jax.Array  # (B, P) float32: pixels at or above the map's p-th percentile imputed
    least_relevant_first: jax.Array  # (B, P) float32: pixels at or below the map's (100 - p)-th percentile imputed
    scores: jax.Array  # (B,) float32: the score of the untouched images
    percentiles: jax.Array  # (P,) float32

    @property
    def most_relevant_first_average(self) -> jax.Array:
        """(B,) mean over the percentiles (`ROADMostRelevantFirstAverage`); lower is better."""
        return self.most_relevant_first.mean(axis=-1)

    @property
    def least_relevant_first_average(self) -> jax.Array:
        """(B,) mean over the percentiles (`ROADLeastRelevantFirstAverage`); higher is better."""
        return self.least_relevant_first.mean(axis=-1)

    @property
    def combined(self) -> jax.Array:
        """(B,) (least - most relevant first averages) / 2 (`ROADCombined`); higher is better."""
        return (self.least_relevant_first_average - self.most_relevant_first_average) / 2


class SanityCheck(NamedTuple):
    layers: tuple[str, ...]  # the cascade, top first: at step i, layers[: i + 1] are random
    correlations: np.ndarray  # (len(layers), B) float32 Spearman correlations with the original map


def gaussian_blur(images: jax.Array, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> jax.Array:
    """`(B, *spatial, C)` blurred channel by channel with a normalised Gaussian along every spatial
    axis; near the border the kernel is renormalised over the pixels inside, so edges do not darken."""
    d = jnp.arange(size, dtype=jnp.float32) - size // 2
    k = jnp.exp(-(d**2) / (2 * sigma**2))
    k = k / k.sum()
    b, *grid, c = images.shape
    axes = "DHW"[-len(grid) :]  # the spatial axes' letters: "HW" for images, as (B, H, W, C) is "NHWC"
    numbers = (f"N{axes}C", f"{axes}IO", f"N{axes}C")

    def blur(x):  # separable: along each spatial axis in turn, zero padding
        for i in range(len(grid)):
            kernel = k.reshape([size if a == i else 1 for a in range(len(grid))] + [1, 1])
            x = jax.lax.conv_general_dilated(x, kernel, (1,) * len(grid), "SAME", dimension_numbers=numbers)
        return x

    planes = jnp.moveaxis(images.astype(jnp.float32), -1, 0).reshape(c * b, *grid, 1)
    blurred = blur(planes) / blur(jnp.ones((1, *grid, 1), jnp.float32))
    return jnp.moveaxis(blurred.reshape(c, b, *grid), 0, -1)


def baseline_images(images: jax.Array, baseline, model=None) -> jax.Array:
    """`(B, *spatial, C)` image of what replaces pixels: "blur" (of the image itself) or a baseline
    pixel ("mean": the model's declared mean pixel, else each image's own mean; "black"; a number; a
    per-channel tuple; see `methods.common.baseline_pixels`)."""
    if isinstance(baseline, str) and baseline == "blur":
        return gaussian_blur(images)
    return jnp.broadcast_to(baseline_pixels(baseline, images, model), images.shape)


def insertion_baseline(images) -> str:
    """`insertion`'s default baseline for `(B, *spatial, C)` images: "blur" for 2-D images (RISE's
    blurred start, which keeps an image's colours but not its objects) and "mean" otherwise: a
    signal's or a volume's object survives the 11-sample blur (the toy signals' bumps and pulses
    are classified from a blurred trace as from the trace itself), so every map would score alike."""
    return "blur" if np.ndim(images) == 4 else "mean"


def salience_ranks(maps: jax.Array) -> jax.Array:
    """`(B, *spatial)` int32: each pixel's place in its map's order, 0 = most salient; ties go to the
    earlier pixel in row-major order, so the order is deterministic."""
    order = jnp.argsort(-maps.reshape(maps.shape[0], -1).astype(jnp.float32), axis=-1, stable=True)
    return jnp.argsort(order, axis=-1).astype(jnp.int32).reshape(maps.shape)


def trapezoid_auc(curve: jax.Array) -> jax.Array:
    """(..., T) samples on an even grid over [0, 1] -> (...) area by the trapezoid rule (RISE's `auc`)."""
    return (curve.sum(axis=-1) - (curve[..., 0] + curve[..., -1]) / 2) / (curve.shape[-1] - 1)


@functools.partial(jax.jit, static_argnames=("model", "steps", "baseline", "batch_size", "insert"))
def _curve(model, variables, images, maps, target, *, steps, baseline, batch_size, insert) -> Curve:
    images = images.astype(jnp.float32)
    ranks = salience_ranks(maps)
    pixels = math.prod(maps.shape[1:])
    per_step = math.ceil(pixels / steps)  # RISE: 224 steps of 224 pixels on a 224 x 224 image
    counts = jnp.minimum(jnp.arange(steps + 1) * per_step, pixels)
    other = baseline_images(images, baseline, model)
    start, end = (other, images) if insert else (images, other)

    def perturbed(count):  # the `count` most salient pixels taken from `end`, the rest from `start`
        return jnp.where((ranks < count)[..., None], end, start)

    curve = perturbed_scores(model, variables, perturbed, counts, target, batch_size)[..., 0].T
    return Curve(curve, trapezoid_auc(curve), counts.astype(jnp.float32) / pixels)


@accepting_old_names("deletion")
def deletion(
    model,
    variables,
    images,
    maps,
    targets,
    *,
    score: str = "softmax",
    steps: int = 224,
    baseline="mean",
    batch_size: int = 16,
) -> Curve:
    """Deletion curve: the `score` of class `targets` (B,), or the scores (B,) of a target function
    (`gradcam_jax._src.targets`), as the pixels of `images` `(B, *spatial, C)` are replaced by
    `baseline` ("mean": the model's declared `mean_pixel`, RISE's zero in normalised input, else each
    image's own per-channel mean, whatever the input's scale; "black"; "blur"; a number or a
    per-channel tuple; see `baseline_images`) in `maps`' `(B, *spatial)` order, most salient first, in `steps` equal steps
    (RISE: 224). One forward pass holds `batch_size` images, B x steps per pass (at least one step of the
    whole batch; the rule in `methods.common`). Lower AUC is better."""
    check_maps(maps, images)
    return _curve(
        model,
        taps.prepare(model, variables),
        images,
        maps,
        one_target("deletion", model, taps.prepare(model, variables), images, targets, score),
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        insert=False,
    )


@accepting_old_names("insertion")
def insertion(
    model,
    variables,
    images,
    maps,
    targets,
    *,
    score: str = "softmax",
    steps: int = 224,
    baseline=None,
    batch_size: int = 16,
) -> Curve:
    """Insertion curve: start from `baseline` and put back the pixels of `images` in `maps`' order,
    most salient first, in `steps` equal steps. Higher AUC is better. `baseline` None (the default,
    `insertion_baseline`): a blurred copy on 2-D images, as RISE; the "mean" pixel on signals and
    volumes, where the blur leaves the object (a blurred bump is still a bump: every map scored
    alike, AUC near the clean score). Or any baseline `deletion` takes, "blur" included."""
    check_maps(maps, images)
    if baseline is None:
        baseline = insertion_baseline(images)
    return _curve(
        model,
        taps.prepare(model, variables),
        images,
        maps,
        one_target("insertion", model, taps.prepare(model, variables), images, targets, score),
        steps=steps,
        baseline=baseline,
        batch_size=batch_size,
        insert=True,
    )


@functools.partial(jax.jit, static_argnames=("model",))
def _confidence(model, variables, images, maps, target) -> Confidence:
    images = images.astype(jnp.float32)
    original, target = target_scores(model, variables, images, target)
    explained, _ = target_scores(model, variables, images * maps[..., None], target)
    original, explained = original[:, 0], explained[:, 0]
    drop = jnp.maximum(original - explained, 0.0) / original
    increased = explained > original
    return Confidence(100 * drop.mean(), 100 * increased.mean(), drop, increased)


def confidence_change(model, variables, images, maps, targets, *, score: str = "softmax") -> Confidence:
    """Average drop and increase in confidence (Grad-CAM++, Sec. 6.1.1): Y is the `score` of class `targets` (B,), or a target function's (B,) scores, for `images` `(B, *spatial, C)`,
    O the score for images * maps, the explanation map
    `(B, *spatial)` in [0, 1] used as a soft mask (unexplained pixels go black). Averages are in percent."""
    check_maps(maps, images)
    return _confidence(
        model,
        taps.prepare(model, variables),
        images,
        maps,
        one_target("confidence_change", model, taps.prepare(model, variables), images, targets, score),
    )


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, variables, images):
    """The model's logits, jitted so that `one_target`'s shape check traces a model once per shape
    (a fresh trace per call cost a metric on a small model more than its forward passes)."""
    return targets_lib.logits_of(taps.call_model(model, variables, images))


def one_target(name: str, model, variables, images, targets, score: str | None):
    """The target object of a metric: class indices (B,) scored by `score` (default "softmax"),
    checked against the model's real number of outputs (its output shape: one trace, no compute),
    or a target function giving one score per image."""
    if not targets_lib.is_function(targets) and np.ndim(targets) != 1:
        raise ValueError(f"{name} explains one target per image: targets must be (B,); got shape {np.shape(targets)}")
    target = resolve_target(name, "softmax", model, images, targets, score)
    if isinstance(target, targets_lib.Classes) and target.indices is not None:
        logits = jax.eval_shape(functools.partial(_logits, model), variables, images)
        targets_lib.check_class_range(target.indices, images.shape[0], logits.shape[-1])
    return target


def neighbour_sum(x: jax.Array) -> jax.Array:
    """`(..., H, W, C)` -> the same shape: at each pixel, the ROAD-weighted sum of its neighbours
    inside the image (those outside count as 0, so near the border the weights sum to less than 1)."""
    h, w = x.shape[-3:-1]
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    padded = jnp.pad(x, pad)
    total = jnp.zeros_like(x)
    for (dy, dx), weight in ROAD_NEIGHBOURS.items():
        total = total + weight * padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w, :]
    return total


def _impute_one(image: jax.Array, removed: jax.Array) -> jax.Array:
    """(H, W, C) image with the `removed` (H, W) pixels replaced by the solution of ROAD's linear
    system: each removed pixel equals the weighted mean of its neighbours inside the image (removed
    ones at their solved values, kept ones at theirs). Matrix-free conjugate gradients on the whole
    grid: the operator is the identity on kept pixels (where the right-hand side is 0) and
    `s x - N(m x)` on removed ones (s: the weights inside the image, N: `neighbour_sum`, m: removed),
    symmetric and positive definite wherever a removed region touches a kept pixel. The system is
    solved for the difference from the kept pixels' mean (the weights sum to 1, so the solution
    shifts with it), which keeps float32 rounding small. A region that touches no kept pixel
    (everything removed) has no solution; it keeps that mean (0 if nothing is kept)."""
    m = removed[..., None].astype(jnp.float32)
    kept = 1.0 - m
    mean = (image * kept).sum(axis=(0, 1)) / jnp.maximum(kept.sum(), 1.0)
    inside = neighbour_sum(jnp.ones((*image.shape[:-1], 1), jnp.float32))
    rhs = m * neighbour_sum((image - mean) * kept)

    def operator(x):
        return m * (inside * x - neighbour_sum(m * x)) + kept * x

    solved = jnp.zeros_like(rhs)
    for _ in range(ROAD_ROUNDS):
        solved, _ = jax.scipy.sparse.linalg.cg(
            operator, rhs, x0=solved, tol=ROAD_TOLERANCE, maxiter=ROAD_ITERATIONS_PER_SIDE * max(image.shape[:2])
        )
    return jnp.where(m > 0, solved + mean, image)


def noisy_linear_imputation(images, removed, *, noise: float = ROAD_NOISE, key=None) -> jax.Array:
    """ROAD's `NoisyLinearImputer` (pytorch-grad-cam): `images` `(B, H, W, C)` with the `removed`
    `(B, H, W)` bool pixels replaced by the weighted mean of their 8 neighbours (1/6 direct, 1/12
    diagonal, renormalised at the border), solved jointly for all removed pixels (see `_impute_one`;
    to `ROAD_TOLERANCE`), plus `noise` x a standard normal draw of `key` (`jax.random.normal(key,
    images.shape)` at the removed pixels; a key or an int seed, None = 0). float32; jitted, vmapped
    over the batch. A removed region with no kept pixel next to it has no solution; it gets the
    mean of the kept pixels (0 where nothing is kept)."""
    images, removed = jnp.asarray(images), jnp.asarray(removed)
    if images.ndim != 4:
        raise ValueError(
            f"ROAD's imputation is defined on (B, H, W, C) images (8 neighbours); got shape {images.shape}"
        )
    check_maps(removed, images)
    return _imputed(images.astype(jnp.float32), removed.astype(bool), jnp.float32(noise), random_key(key))


@jax.jit
def _imputed(images, removed, noise, key):
    draws = jax.random.normal(key, images.shape, jnp.float32)
    return jax.vmap(_impute_one)(images, removed) + jnp.where(removed[..., None], noise * draws, 0.0)


def road_removed(maps, percentile, most_relevant_first: bool = True) -> jax.Array:
    """`(B, *spatial)` bool: the pixels ROAD imputes at `percentile` (pytorch-grad-cam's
    `RemoveMostRelevantFirst` / `RemoveLeastRelevantFirst`): those at or above the map's
    `percentile`-th percentile (linear interpolation, as numpy's), i.e. the most relevant 100 - p
    percent; least relevant first, the same rule on 1 - map, i.e. the least relevant 100 - p percent."""
    maps = jnp.asarray(maps, jnp.float32)
    ranked = maps if most_relevant_first else 1.0 - maps
    flat = ranked.reshape(ranked.shape[0], -1)
    threshold = jnp.percentile(flat, jnp.asarray(percentile, jnp.float32), axis=-1)
    return ranked >= threshold.reshape(-1, *([1] * (maps.ndim - 1)))


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _road(model, variables, images, maps, target, percentiles, noise, key, *, batch_size) -> Road:
    images = images.astype(jnp.float32)
    before, target = target_scores(model, variables, images, target)
    removed = jnp.concatenate(
        [jax.vmap(lambda p, first=first: road_removed(maps, p, first))(percentiles) for first in (True, False)]
    )  # (2P, B, H, W): most relevant first at each percentile, then least relevant first

    def imputed(i):  # the batch with the pixels of removal i imputed, its own noise draws
        return _imputed(images, removed[i], noise, jax.random.fold_in(key, i))

    after = perturbed_scores(model, variables, imputed, jnp.arange(removed.shape[0]), target, batch_size)
    change = (after[..., 0] - before[:, 0]).T.reshape(images.shape[0], 2, -1)
    return Road(change[:, 0], change[:, 1], before[:, 0], percentiles)


def road(
    model,
    variables,
    images,
    maps,
    targets,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    key=None,
    score: str = "softmax",
    batch_size: int = 16,
) -> Road:
    """ROAD (Rong et al. 2022), as pytorch-grad-cam 1.5.7 computes it: for each percentile p, the
    pixels of `images` `(B, H, W, C)` at or above the p-th percentile of `maps` `(B, H, W)` (most
    relevant first; `road_removed`), and separately those at or below the (100 - p)-th (least
    relevant first), are replaced by noisy linear imputation (`noisy_linear_imputation`, `noise` in
    the units the model takes: for GoogLeNet's 0..255 pixels 0.01 is very little), and the `score`
    (default "softmax") of class `targets` (B,), or a target function's (B,) scores, is compared
    with the untouched image's. Removal i (0..P-1 most, P..2P-1 least relevant first) draws its
    noise with `jax.random.fold_in(key, i)` (`key`: a key or an int seed; None = 0). The 2P
    imputed batches are vmapped into forward passes of at most `batch_size` images. A constant map
    (all tied) removes every pixel at every percentile, where the imputation has no solution:
    pytorch-grad-cam's gives NaN, ours the fill `noisy_linear_imputation` documents (0)."""
    check_maps(maps, images)
    if np.ndim(images) != 4:
        raise ValueError(
            f"ROAD's imputation is defined on (B, H, W, C) images (8 neighbours); got shape {np.shape(images)}"
        )
    chosen = np.asarray(percentiles, np.float32)
    if chosen.ndim != 1 or chosen.size == 0 or chosen.min() < 0 or chosen.max() > 100:
        raise ValueError(f"percentiles must be a non-empty sequence of numbers in [0, 100]; got {percentiles!r}")
    return _road(
        model,
        taps.prepare(model, variables),
        images,
        jnp.asarray(maps, jnp.float32),
        one_target("road", model, taps.prepare(model, variables), images, targets, score),
        jnp.asarray(chosen),
        jnp.float32(noise),
        random_key(key),
        batch_size=batch_size,
    )


def sorted_average_ranks(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(order, ranks) of (B, N) values: the ascending order, and the 1-based rank of each value in that
    order, tied values sharing their average rank (as scipy's rankdata); one sort, the rest linear."""
    order = jnp.argsort(a, axis=-1)
    ordered = jnp.take_along_axis(a, order, axis=-1)
    index = jnp.broadcast_to(jnp.arange(a.shape[-1]), a.shape)
    new = jnp.concatenate([jnp.ones_like(ordered[:, :1], bool), ordered[:, 1:] != ordered[:, :-1]], axis=-1)
    last = jnp.concatenate([ordered[:, 1:] != ordered[:, :-1], jnp.ones_like(ordered[:, :1], bool)], axis=-1)
    first = jax.lax.cummax(jnp.where(new, index, 0), axis=1)  # where each run of ties starts
    end = jax.lax.cummin(jnp.where(last, index, a.shape[-1]), axis=1, reverse=True)  # ... and ends
    return order, (first + end).astype(jnp.float32) / 2 + 1


def average_ranks(x: jax.Array) -> jax.Array:
    """(B, N) -> (B, N) float32 ranks from 0, ties sharing their average rank (as scipy's rankdata):
    `sorted_average_ranks` put back in the values' places."""
    order, ranks = sorted_average_ranks(x)
    return jax.vmap(lambda r, o: jnp.zeros_like(r).at[o].set(r))(ranks - 1, order)


@functools.partial(jax.jit, static_argnames="spatial")
def spearman(a: jax.Array, b: jax.Array, spatial: int = 2) -> jax.Array:
    """Spearman rank correlation of each pair of maps `(..., *s)` over their last `spatial` axes (2:
    (h, w) images; 1 signals, 3 volumes) -> (...); a constant map has no rank order and gets 0."""
    lead = a.shape[: a.ndim - spatial]
    ra = average_ranks(a.reshape(-1, math.prod(a.shape[a.ndim - spatial :])).astype(jnp.float32))
    rb = average_ranks(b.reshape(-1, math.prod(b.shape[b.ndim - spatial :])).astype(jnp.float32))
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    norm = jnp.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    rho = jnp.where(norm > 0, (ra * rb).sum(-1) / jnp.where(norm > 0, norm, 1.0), 0.0)
    return rho.reshape(lead)


def parameter_groups(model, variables, images, depth: int = 1) -> list[str]:
    """Groups of variables, by the first `depth` parts of their module path ("inception_5b"),
    bottom-up in the order the model calls them. GoogLeNet at depth 1: conv1, conv2,
    inception_3a, ..., inception_5b, loss3."""
    flat = traverse_util.flatten_dict(variables)
    owned = {"/".join(key[1 : 1 + depth]) for key in flat}
    order = []
    for path in taps.layer_shapes(model, variables, images):
        group = "/".join(path.split("/")[:depth])
        if group in owned and group not in order:
            order.append(group)
    return order


def randomised(variables, fresh, groups: Sequence[str], depth: int = 1):
    """`variables` with every leaf of the modules in `groups` (by `parameter_groups` name) taken
    from `fresh` (a re-initialisation of the same model), all collections alike."""
    chosen = set(groups)
    flat, new = traverse_util.flatten_dict(variables), traverse_util.flatten_dict(fresh)
    out = {key: new[key] if "/".join(key[1 : 1 + depth]) in chosen else value for key, value in flat.items()}
    return traverse_util.unflatten_dict(out)


def fresh_variables(model, key, shape: tuple[int, ...], dtype=jnp.float32):
    """`model.init(key, zeros(shape))` (`key` a `jax.random` key or an int seed), jitted (GoogLeNet's
    eager init is slow) and cached by the key's data, so a sanity check per method re-draws nothing
    (initialisers look at shapes, not values)."""
    data = tuple(np.asarray(jax.random.key_data(random_key(key))).ravel().tolist())
    return _fresh_variables(model, data, shape, dtype)


@functools.lru_cache(maxsize=4)
def _fresh_variables(model, data: tuple[int, ...], shape: tuple[int, ...], dtype):
    key = jax.random.wrap_key_data(jnp.asarray(data, jnp.uint32))
    return jax.jit(model.init)(key, jnp.zeros(shape, dtype))


@accepting_old_names("model_randomisation")
def model_randomisation(
    method: str | Callable,
    model,
    variables,
    images,
    targets=None,
    *,
    init_key=0,
    depth: int = 1,
    stops: Sequence[str] | None = None,
    original_map=None,
    **options,
) -> SanityCheck:
    """Adebayo et al.'s cascading model-parameter randomisation for `method` (a name in METHODS
    or a registered method) with its `options`.

    The parameter groups (`parameter_groups(depth)`) are re-initialised one after another from the
    top (the classifier) down, with `model.init(init_key, ...)` (`fresh_variables`; `init_key` a
    `jax.random` key or an int seed, named apart from `key` so that a sampled method's `key` in
    `options` reaches the method),
    and after each group in `stops` (default: every group) the method's map of the same `targets`
    (B,) (None: top-1 of the original model) is compared with the original by Spearman rank
    correlation.
    Each step is one call of the (jitted) method; the variables change, the shapes do not, so it
    compiles once. `original_map` (with explicit `targets`) saves recomputing the original map.
    """
    explain = METHODS[method] if isinstance(method, str) else method
    images = jnp.asarray(images, jnp.float32)
    if original_map is None or targets is None:
        original = explain(model, variables, images, targets, **options)
        original_map = original.map
        targets = targets if targets_lib.is_function(targets) else original.targets
    cascade = parameter_groups(model, variables, images, depth)[::-1]
    stops = list(cascade) if stops is None else list(stops)
    unknown = [s for s in stops if s not in cascade]
    if unknown:
        raise ValueError(f"unknown cascade stop(s) {unknown}; parameter groups are {cascade}")
    fresh = fresh_variables(model, init_key, (1, *images.shape[1:]))
    correlations = []
    for stop in stops:
        random_variables = randomised(variables, fresh, cascade[: cascade.index(stop) + 1], depth)
        result = explain(model, random_variables, images, targets, **options)
        correlations.append(np.asarray(spearman(original_map, result.map, images.ndim - 2)))
    return SanityCheck(tuple(stops), np.stack(correlations))

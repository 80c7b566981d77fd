"""Faithfulness: does removing what a map calls relevant change the model's score as the map says?
Quantus 0.6.0's metrics by its names and definitions, each one jitted program per shape, the
perturbed copies of the batch vmapped into forward passes of at most `batch_size` images
(`methods.common.perturbed_scores`). This file: the metrics that perturb pixels in the map's order
or at random; `faithfulness_regions` those that perturb patches or segments, the infidelities and
sufficiency. ROAD is `gradcam_jax._src.metrics.road` (pytorch-grad-cam's; Quantus's `ROAD` is the
same imputation, read at percentages of pixels).

What every metric here shares (docs/evaluation.md lists the differences from Quantus):

- `maps`: `(B, *spatial)` precomputed maps, or None with `method` (a `METHODS` name or a function, run
  with `options` for `targets` first; `evaluation.explain`): exactly one of the two; `images` `(B, *spatial, C)` with 1, 2
  or 3 spatial axes; `targets` (B,) class indices or a target function.
- A feature is a pixel (all its channels at once): Quantus broadcasts a map over the channels and
  counts channel values, so its `features_in_step` and `subset_size` are ours times C.
- `baseline`: what replaces pixels, as every method and metric here takes it (`methods.common.
  baseline_pixels`: "black" is 0, "mean" the model's declared mean pixel or each image's per-channel
  mean, a number or a per-channel tuple); computed once from the untouched image.
- `score`: the class score, Quantus's default per metric ("logit" where it has `softmax=False`).
- Ties in a map's order go to the earlier pixel (a stable sort); Quantus's `np.argsort` quicksort
  leaves them to chance. Random draws come from `key` (a `jax.random` key or an int seed; None = 0).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.explain import (
    Scores,
    check_count,
    check_images,
    check_maps_or_method,
    maps_or_explained,
    normalised,
    scores,
)
from gradcam_jax._src.inputs import check_maps
from gradcam_jax._src.methods.common import perturbed_scores, random_key, target_scores
from gradcam_jax._src.metrics import average_ranks, baseline_images, one_target, salience_ranks

# What replaces pixels: "black", "mean", a number or a per-channel tuple (`methods.common.baseline_pixels`);
# `monotonicity_correlation` also takes "uniform".
Baseline = str | float | tuple[float, ...]


class CurveScores(NamedTuple):
    """A curve metric's scores: `per_image` (B,) float32 the one number per image the metric's doc
    names (an area or a mean of the curve), `aggregate` () their mean, `curve` (B, T) the scores."""

    per_image: jax.Array
    aggregate: jax.Array
    curve: jax.Array


class StepScores(NamedTuple):
    """Sensitivity-n's correlations: `per_n` (T,) float32, one per number of removed features
    (step t removes (t + 1) x `features_in_step` pixels), across the images; `aggregate` their mean."""

    per_n: jax.Array
    aggregate: jax.Array


class Prepared(NamedTuple):
    images: jax.Array  # (B, *spatial, C) float32
    maps: jax.Array  # (B, *spatial) float32
    variables: object
    target: object


def prepare(name, model, variables, images, maps, method, options, targets, score, abs=False) -> Prepared:  # noqa: A002
    """The inputs of a metric checked and resolved before any heavy work: float32 images, the maps
    (precomputed, or `method`'s with `options`, `maps_or_explained`; |maps| with Quantus's `abs`), the
    prepared variables and the target object (`metrics.one_target`)."""
    check_images(name, images)
    check_maps_or_method(name, maps, method)
    images = jnp.asarray(images, jnp.float32)
    variables = taps.prepare(model, variables)
    target = one_target(name, model, variables, images, targets, score)
    maps = maps_or_explained(name, maps, method, model, variables, images, targets, options)
    check_maps(maps, images)
    return Prepared(images, normalised(maps, False, abs), variables, target)


def pixels_of(images) -> int:
    """The number of pixels (features) of one `(B, *spatial, C)` image (an array or a shape)."""
    return math.prod((images if isinstance(images, tuple) else np.shape(images))[1:-1])


def check_steps(name: str, features_in_step: int, pixels: int, least: int = 1) -> int:
    """ceil(pixels / features_in_step), the steps of a metric that perturbs `features_in_step` pixels
    at a time; one-line ValueError when that is not a count of 1..pixels or gives fewer than `least`."""
    if not isinstance(features_in_step, (int, np.integer)) or not 1 <= features_in_step <= pixels:
        raise ValueError(f"{name}: features_in_step must be 1..{pixels} pixels; got {features_in_step!r}")
    steps = math.ceil(pixels / features_in_step)
    if steps < least:
        raise ValueError(f"{name}: features_in_step={features_in_step} gives {steps} step(s); it needs {least}")
    return steps


def replaced(images, other, mask):
    """`images` with the pixels where `mask` `(B, *spatial)` is true taken from `other`."""
    return jnp.where(mask[..., None], other, images)


def step_sums(maps, steps_of, steps: int) -> jax.Array:
    """(B, steps): the sum of each image's map over the pixels of each step (`steps_of` (B, *spatial)
    int, the step each pixel is perturbed at)."""
    b = maps.shape[0]
    return jax.vmap(lambda m, s: jax.ops.segment_sum(m.ravel(), s.ravel(), steps))(maps.reshape(b, -1), steps_of)


def pearson(a, b) -> jax.Array:
    """Pearson correlation of the rows of `a` and `b` (..., T); NaN where a row is constant (scipy's)."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / jnp.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def spearman_rows(a, b) -> jax.Array:
    """Spearman correlation of the rows of `a` and `b` (B, T): Pearson of average ranks (scipy's)."""
    return pearson(average_ranks(a), average_ranks(b))


def trapezoid(curve) -> jax.Array:
    """(..., T) -> (...) area by the trapezoid rule with unit spacing (Quantus's `calculate_auc`, np.trapz)."""
    return curve.sum(-1) - (curve[..., 0] + curve[..., -1]) / 2


def curve_scores(model, variables, perturb, steps: int, target, batch_size: int) -> jax.Array:
    """(B, steps) scores of `target` for `perturb(s)`, s = 0..steps-1 (`perturbed_scores`)."""
    return perturbed_scores(model, variables, perturb, jnp.arange(steps), target, batch_size)[..., 0].T


# ---- random subsets: FaithfulnessCorrelation ---------------------------------------------------------


def subset_draws(key, images: int, pixels: int, nr_runs: int, subset_size: int) -> jax.Array:
    """(nr_runs, images, subset_size) int32: for each run and image, `subset_size` distinct pixels
    (flat indices into `*spatial`), uniformly: the places of the largest of `pixels` uniform draws of
    `key` (the first entries of a random permutation; `jax.random.choice(replace=False)` is the same
    law but sorts every draw, ~20x slower on the CPU)."""
    noise = jax.random.uniform(random_key(key), (nr_runs, images, pixels))
    return jax.lax.top_k(noise, subset_size)[1].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "nr_runs", "subset_size", "baseline", "batch_size"))
def _faithfulness_correlation(
    model, variables, images, maps, target, key, *, nr_runs, subset_size, baseline, batch_size
):
    b = images.shape[0]
    before, target = target_scores(model, variables, images, target)
    other = baseline_images(images, baseline, model)
    draws = subset_draws(key, b, pixels_of(images), nr_runs, subset_size)

    def perturb(run):
        mask = jnp.zeros((b, pixels_of(images)), bool).at[jnp.arange(b)[:, None], draws[run]].set(True)
        return replaced(images, other, mask.reshape(maps.shape))

    deltas = before[:, :1] - curve_scores(model, variables, perturb, nr_runs, target, batch_size)
    sums = jnp.take_along_axis(maps.reshape(1, b, -1), draws, -1).sum(-1).T  # (B, runs)
    return pearson(sums, deltas)


def faithfulness_correlation(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    nr_runs: int = 100, subset_size: int = 224, baseline: Baseline = "black",
    key=None, score: str = "logit", batch_size: int = 16,
) -> Scores:  # fmt: skip
    """FaithfulnessCorrelation (Bhatt et al., IJCAI 2020): in each of `nr_runs` runs, replace a random
    subset of `subset_size` pixels (`subset_draws`) by `baseline` and note the drop of the class score;
    per image, the Pearson correlation over the runs between the drops and the map's sums over the
    subsets. Higher is better (in [-1, 1]). Quantus's defaults, logits."""
    name = "faithfulness_correlation"
    check_count(name, "subset_size", subset_size, 1, pixels_of(np.shape(images)) - 1)
    check_count(name, "nr_runs", nr_runs, 2)
    p = prepare(name, model, variables, images, maps, method, options, targets, score)
    return scores(
        _faithfulness_correlation(
            model, p.variables, p.images, p.maps, p.target, random_key(key),
            nr_runs=nr_runs, subset_size=subset_size, baseline=baseline, batch_size=batch_size,
        )
    )  # fmt: skip


# ---- the map's order, a step of `features_in_step` pixels at a time ----------------------------------


@functools.partial(
    jax.jit, static_argnames=("model", "kind", "features_in_step", "steps", "baseline", "ascending", "batch_size")
)
def _ordered(model, variables, images, maps, target, *, kind, features_in_step, steps, baseline, ascending, batch_size):
    """The curve metrics on the map's order (`kind`): scores of the untouched batch (B,), the step
    sums of the map (B, steps) and the scores after each step (B, steps)."""
    before, target = target_scores(model, variables, images, target)
    other = baseline_images(images, baseline, model)
    steps_of = salience_ranks(-maps if ascending else maps) // features_in_step  # (B, *spatial)

    def perturb(s):
        if kind == "estimate":  # this step's pixels only
            return replaced(images, other, steps_of == s)
        if kind == "insert":  # the baseline with the pixels up to this step put back
            return replaced(other, images, steps_of <= s)
        return replaced(images, other, steps_of <= s)  # "remove": cumulative

    after = curve_scores(model, variables, perturb, steps, target, batch_size)
    return before[:, 0], step_sums(maps, steps_of, math.ceil(pixels_of(images) / features_in_step))[:, :steps], after


def ordered(name, kind, model, variables, images, maps, targets, *, method, options, features_in_step, baseline,
            score, batch_size, ascending=False, abs=False, least_steps=1, steps=None):  # fmt: skip  # noqa: A002
    total = check_steps(name, features_in_step, pixels_of(np.shape(images)), least_steps)
    p = prepare(name, model, variables, images, maps, method, options, targets, score, abs)
    return _ordered(
        model, p.variables, p.images, p.maps, p.target, kind=kind, features_in_step=features_in_step,
        steps=total if steps is None else steps, baseline=baseline, ascending=ascending, batch_size=batch_size,
    )  # fmt: skip


def faithfulness_estimate(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    features_in_step: int = 1, baseline: Baseline = "black",
    score: str = "logit", batch_size: int = 16,
) -> Scores:  # fmt: skip
    """FaithfulnessEstimate (Alvarez-Melis & Jaakkola, NeurIPS 2018): replace each step of
    `features_in_step` pixels, in the map's order (most relevant first), alone by `baseline`; per
    image, the Pearson correlation over the steps between the score drops and the map's step sums.
    Higher is better. One forward pass per step: ceil(pixels / features_in_step) of them."""
    before, sums, after = ordered(
        "faithfulness_estimate", "estimate", model, variables, images, maps, targets, features_in_step=features_in_step,
        baseline=baseline, score=score, batch_size=batch_size, method=method, options=options, least_steps=2,
    )  # fmt: skip
    return scores(pearson(sums, before[:, None] - after))


def pixel_flipping(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    features_in_step: int = 1, baseline: Baseline = "black",
    score: str = "softmax", batch_size: int = 16,
) -> CurveScores:  # fmt: skip
    """PixelFlipping (Bach et al., PLoS ONE 2015): replace pixels by `baseline` cumulatively, most
    relevant first, `features_in_step` at a time, and follow the class score (`curve`, B x steps);
    `per_image` is its area (trapezoids of unit width, Quantus's `return_auc_per_sample`). Lower is
    better: a faithful map's first pixels take the score down."""
    _, _, after = ordered(
        "pixel_flipping", "remove", model, variables, images, maps, targets, features_in_step=features_in_step,
        baseline=baseline, score=score, batch_size=batch_size, method=method, options=options,
    )  # fmt: skip
    auc = trapezoid(after)
    return CurveScores(auc, auc.mean(), after)


def monotonicity(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    features_in_step: int = 1, baseline: Baseline = "black",
    score: str = "softmax", abs: bool = True, batch_size: int = 16,
) -> CurveScores:  # fmt: skip
    """Monotonicity (Arya et al. 2019, "One explanation does not fit all"): start from the `baseline`
    image and put the image's pixels back, least relevant first (of the absolute map with `abs`),
    `features_in_step` at a time; `per_image` is 1.0 where the class score never falls from a step to
    the next (`curve`), else 0.0; `aggregate` the fraction of such images. Higher is better.
    Quantus 0.6.0 replaces the baseline's pixels by the baseline again (its score never moves, every
    map scores True); here the image's pixels are put back, as the paper defines it."""
    _, _, after = ordered(
        "monotonicity", "insert", model, variables, images, maps, targets, features_in_step=features_in_step,
        baseline=baseline, score=score, batch_size=batch_size, method=method, options=options, ascending=True,
        abs=abs,
    )  # fmt: skip
    rising = jnp.all(jnp.diff(after, axis=-1) >= 0, axis=-1).astype(jnp.float32)
    return CurveScores(rising, rising.mean(), after)


def sensitivity_n(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    features_in_step: int = 1, n_max_percentage: float = 0.8,
    baseline: Baseline = "black", score: str = "softmax", batch_size: int = 16,
) -> StepScores:  # fmt: skip
    """SensitivityN (Ancona et al., ICLR 2018), as Quantus computes it: remove pixels cumulatively,
    most relevant first, `features_in_step` at a time, for the first int(n_max_percentage x pixels /
    features_in_step) steps; at each step the Pearson correlation, across the B images, of the score
    drops with the map's sums over that step's pixels. Higher is better; needs B >= 2 images."""
    name = "sensitivity_n"
    b = np.shape(images)[0]
    if b < 2:
        raise ValueError(f"{name} correlates across images: it needs at least 2; got {b}")
    pixels = math.prod(np.shape(images)[1:-1])
    check_steps(name, features_in_step, pixels)
    steps = int(n_max_percentage * pixels // features_in_step)
    if steps < 1:
        raise ValueError(
            f"{name}: n_max_percentage={n_max_percentage} x {pixels} pixels leaves no step of {features_in_step}"
        )
    before, sums, after = ordered(
        name, "remove", model, variables, images, maps, targets, features_in_step=features_in_step,
        baseline=baseline, score=score, batch_size=batch_size, method=method, options=options, steps=steps,
    )  # fmt: skip
    per_n = pearson((before[:, None] - after).T, sums.T)
    return StepScores(per_n, per_n.mean())


# ---- MonotonicityCorrelation: noisy baselines per step -------------------------------------------


def uniform_fills(key, steps: int, nr_samples: int, images: int, low: float = 0.0, high: float = 1.0) -> jax.Array:
    """(steps, nr_samples, images) float32: Quantus's "uniform" baseline, one value per image for each
    sample of each step, uniform in [low, high) from `key`."""
    return jax.random.uniform(random_key(key), (steps, nr_samples, images), jnp.float32, low, high)


@functools.partial(jax.jit, static_argnames=("model", "features_in_step", "nr_samples", "baseline", "batch_size"))
def _monotonicity_correlation(model, variables, images, maps, target, key, eps, *, features_in_step, nr_samples,
                              baseline, batch_size):  # fmt: skip
    b = images.shape[0]
    steps = math.ceil(pixels_of(images) / features_in_step)
    before, target = target_scores(model, variables, images, target)
    steps_of = salience_ranks(-maps) // features_in_step  # least relevant first
    uniform = isinstance(baseline, str) and baseline == "uniform"
    fills = uniform_fills(key, steps, nr_samples, b) if uniform else None
    other = images if uniform else baseline_images(images, baseline, model)  # (unused when uniform)

    def perturb(i):  # sample i % nr_samples of step i // nr_samples
        s, n = i // nr_samples, i % nr_samples
        fill = (
            other
            if fills is None
            else jnp.broadcast_to(fills[s, n].reshape(b, *(1,) * (images.ndim - 1)), images.shape)
        )
        return replaced(images, fill, steps_of == s)

    after = curve_scores(model, variables, perturb, steps * nr_samples, target, batch_size).reshape(b, steps, -1)
    y = before[:, 0]
    inverse = jnp.where(jnp.abs(y) >= eps, 1.0 / jnp.where(jnp.abs(y) >= eps, jnp.abs(y), 1.0), 1.0) ** 2
    variances = ((after - y[:, None, None]) ** 2).mean(-1) * inverse[:, None]
    return spearman_rows(step_sums(maps, steps_of, steps), variances)


def monotonicity_correlation(
    model, variables, images, maps=None, targets=None, *, method=None, options: dict | None = None,
    features_in_step: int = 1, nr_samples: int = 100,
    eps: float = 1e-5, baseline: Baseline = "uniform", key=None, abs: bool = True, score: str = "softmax",
    batch_size: int = 16,
) -> Scores:  # fmt: skip
    """MonotonicityCorrelation (Nguyen & Martinez 2020, "On quantitative aspects of model
    interpretability"): replace each step of `features_in_step` pixels, least relevant first (of the absolute
    map with `abs`), alone by `baseline`, `nr_samples` times ("uniform": a fresh uniform [0, 1) value
    per image and sample, `uniform_fills` of `key`; a fixed baseline makes the samples equal); the
    step's variance is the mean squared change of the class score y, over y^2 (when abs(y) >= eps).
    Per image, the Spearman correlation over the steps between the map's step sums and the variances.
    Higher is better. steps x nr_samples forward passes."""
    name = "monotonicity_correlation"
    check_steps(name, features_in_step, pixels_of(np.shape(images)), 2)
    check_count(name, "nr_samples", nr_samples, 1)
    p = prepare(name, model, variables, images, maps, method, options, targets, score, abs)
    return scores(
        _monotonicity_correlation(
            model, p.variables, p.images, p.maps, p.target, random_key(key), jnp.float32(eps),
            features_in_step=features_in_step, nr_samples=nr_samples, baseline=baseline, batch_size=batch_size,
        )
    )  # fmt: skip

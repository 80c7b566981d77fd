"""Randomisation: does the explanation depend on what the model learned, and on the class asked
for? Quantus 0.6.0's family.

- `mprt` (Adebayo et al. 2018): Quantus's MPRT is `gradcam_jax.metrics.model_randomisation`, the
  cascading top-down re-initialisation with the Spearman correlation of each map with the
  original; `mprt` returns it as `LayerScores` (the last layer's, or the layers' mean, per image).
  Lower is better.
- `smooth_mprt` (Hedström et al. 2023, sMPRT): MPRT on maps averaged over noisy copies of the input
  (`samples` of them, the last noise-free), bottom-up by default. Lower is better.
- `efficient_mprt` (Hedström et al. 2023, eMPRT): the relative rise of the map's discrete entropy
  (100-bin histogram) from the trained to the fully randomised model. Higher is better.
- `random_logit` (Sixt et al. 2020): the structural similarity (SSIM) of the map of the target with
  the map of a random other class. Lower is better.

Every metric takes a method (registered, its name, or a function), and randomises with
`metrics.fresh_variables` (`model.init(init_key, ...)`, so a Flax linen model) group by group
(`metrics.parameter_groups`); the variables change between steps, the shapes do not, so each step
runs the same compiled program.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.explain import (
    Scores,
    check_count,
    checked_indices,
    normalised,
    options_key,
    require_method,
    scores,
    traced_maps,
)
from gradcam_jax._src.evaluation.robustness import noise_draw, over_draws
from gradcam_jax._src.inputs import check_maps
from gradcam_jax._src.methods.base import Explanation
from gradcam_jax._src.methods.common import passes_per_step, random_key
from gradcam_jax._src.metrics import fresh_variables, model_randomisation, parameter_groups, randomised, spearman

ORDERS = ("top_down", "bottom_up", "independent")
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03  # skimage's structural_similarity defaults, as Quantus calls it


class LayerScores(NamedTuple):
    """per_image (B,) and aggregate () as `Scores`, and every step of the cascade: `layers` (L,) the
    parameter groups randomised at each step (in the order randomised), `by_layer` (L, B) float32
    the similarity of each image's map with its original after that step."""

    per_image: jax.Array
    aggregate: jax.Array
    layers: tuple[str, ...]
    by_layer: jax.Array


def layer_scores(layers, by_layer, average: bool) -> LayerScores:
    """`LayerScores` whose per-image score is the last layer's (Quantus's `return_last_correlation`)
    or the mean over the layers (`return_average_correlation`)."""
    by_layer = jnp.asarray(by_layer, jnp.float32)
    per_image = by_layer.mean(axis=0) if average else by_layer[-1]
    return LayerScores(*scores(per_image), tuple(layers), by_layer)


def top1(model, variables, images) -> jax.Array:
    """(B,) int32 top-1 classes of the model on `images`."""
    return jnp.argmax(targets_lib.logits_of(taps.call_model(model, variables, images)), axis=-1).astype(jnp.int32)


def class_indices(name, model, variables, images, targets) -> jax.Array:
    """`targets` (B,) as int32, or the model's top-1 classes for None; one-line error otherwise."""
    indices = checked_indices(name, targets, images.shape[0])
    return jax.jit(top1, static_argnames="model")(model, variables, images) if indices is None else indices


def cascade(model, variables, images, order: str, depth: int = 1) -> list[list[str]]:
    """The parameter groups randomised at each step: "top_down" / "bottom_up" cascading (each step
    adds the next group), "independent" (one group at a time, the others trained)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose from {', '.join(ORDERS)}")
    groups = parameter_groups(model, variables, images, depth)
    groups = groups[::-1] if order == "top_down" else groups
    if order == "independent":
        return [[g] for g in groups]
    return [groups[: i + 1] for i in range(len(groups))]


def mprt(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    init_key=0,
    depth: int = 1,
    abs: bool = True,  # noqa: A002  (Quantus's name)
    average: bool = False,
) -> LayerScores:
    """Quantus's MPRT (top-down cascade, Spearman): `model_randomisation` of `method` for `targets`
    (B,) (None: top-1), compared with `maps` (None: the method's), in absolute value if `abs`
    (Quantus's default; normalising does not move ranks). per_image: the correlation with every
    layer random (`average`: the mean over the cascade). For the bottom-up or independent orders,
    `smooth_mprt(samples=1)` is MPRT. Lower is better."""
    explain = require_method(method, "mprt")
    images = jnp.asarray(images, jnp.float32)
    indices = class_indices("mprt", model, variables, images, targets)

    def absolute(model, variables, images, targets, **options):
        result = explain(model, variables, images, targets, **options)
        found = result.map if isinstance(result, Explanation) else result
        return Explanation(normalised(found, False, abs), jnp.zeros(images.shape[0]), targets)

    if maps is None:
        maps = absolute(model, variables, images, indices, **(options or {})).map
    else:
        check_maps(maps, images)
        maps = normalised(maps, False, abs)
    check = model_randomisation(
        absolute,
        model,
        variables,
        images,
        indices,
        init_key=init_key,
        depth=depth,
        original_map=maps,
        **(options or {}),
    )
    return layer_scores(check.layers, check.correlations, average)


@functools.partial(jax.jit, static_argnames=("model", "method", "options", "samples", "chunk"))
def _smooth_maps(model, variables, images, indices, key, noise, *, method, options, samples, chunk):
    """(B, *spatial) mean of `method`'s maps over `samples` copies of `images`: copy s < samples - 1
    plus std x N(0, 1) (`robustness.gaussian_noise(key, s, images.shape, 0, 1)`, std = `noise` x each
    image's max - min), the last one noise-free (Quantus's sMPRT)."""
    images = images.astype(jnp.float32)
    b = images.shape[0]
    axes = tuple(range(1, images.ndim))
    std = noise * (images.max(axis=axes, keepdims=True) - images.min(axis=axes, keepdims=True))

    def explained(draws):  # (n,) -> (n, B, *spatial)
        n = draws.shape[0]

        def noisy(s):
            draw = noise_draw(key, s, images.shape, True, 0.0, 1.0)
            return images + jnp.where(s == samples - 1, 0.0, std * draw)

        moved = jax.vmap(noisy)(draws).reshape(n * b, *images.shape[1:])
        return traced_maps(method, model, variables, moved, jnp.tile(indices, n), options).reshape(n, b, -1)

    return over_draws(explained, samples, chunk).mean(axis=0).reshape(images.shape[:-1])


def smooth_mprt(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 50,
    noise: float = 0.1,
    order: str = "bottom_up",
    init_key=0,
    depth: int = 1,
    abs: bool = True,  # noqa: A002
    average: bool = False,
    batch_size: int = 16,
) -> LayerScores:
    """Quantus's SmoothMPRT: MPRT (`order` "bottom_up", Quantus's default for sMPRT, "top_down" or
    "independent") on `method`'s maps averaged over `samples` noisy copies (`_smooth_maps`; `noise`
    x each image's range, from `key`: the same draws at every step, where Quantus draws anew, so
    the steps differ by the weights alone), compared with `maps` (None: the same smoothing on the
    trained model) by Spearman correlation of their absolute values. Lower is better."""
    explain = require_method(method, "smooth_mprt")
    check_count("smooth_mprt", "samples", samples, 1)
    images = jnp.asarray(images, jnp.float32)
    indices = class_indices("smooth_mprt", model, variables, images, targets)
    steps = cascade(model, variables, images, order, depth)
    smooth = functools.partial(
        _smooth_maps,
        model,
        images=images,
        indices=indices,
        key=random_key(key),
        noise=jnp.float32(noise),
        method=explain,
        options=options_key(options),
        samples=int(samples),
        chunk=passes_per_step(batch_size, images.shape[0]),
    )
    if maps is None:
        maps = smooth(variables)
    else:
        check_maps(maps, images)
    maps = normalised(jnp.asarray(maps, jnp.float32), False, abs)
    fresh = fresh_variables(model, init_key, (1, *images.shape[1:]))
    spatial = images.ndim - 2
    by_layer = [
        spearman(maps, normalised(smooth(randomised(variables, fresh, groups, depth)), False, abs), spatial)
        for groups in steps
    ]
    return layer_scores([groups[-1] for groups in steps], jnp.stack(by_layer), average)


@functools.partial(jax.jit, static_argnames="bins")
def discrete_entropy(maps: jax.Array, bins: int = 100) -> jax.Array:
    """(B, ...) -> (B,) Quantus's `discrete_entropy`: the natural-log entropy of each map's histogram
    of `bins` equal bins over its [min, max] (numpy's `histogram`: the last bin closed; a constant
    map in one bin, entropy 0)."""
    flat = maps.reshape(maps.shape[0], -1).astype(jnp.float32)
    low, high = flat.min(-1, keepdims=True), flat.max(-1, keepdims=True)
    low, high = jnp.where(low == high, low - 0.5, low), jnp.where(low == high, high + 0.5, high)
    index = jnp.clip(jnp.floor((flat - low) / (high - low) * bins), 0, bins - 1).astype(jnp.int32)
    edges = low + (high - low) * (jnp.arange(bins + 1, dtype=jnp.float32) / bins)  # numpy's fix-ups at the edges
    index = jnp.where(flat < jnp.take_along_axis(edges, index, -1), index - 1, index)
    index = jnp.where((flat >= jnp.take_along_axis(edges, index + 1, -1)) & (index != bins - 1), index + 1, index)
    counts = jax.vmap(lambda i: jnp.bincount(i, length=bins))(index).astype(jnp.float32)
    p = counts / counts.sum(-1, keepdims=True)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)


def efficient_mprt(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    init_key=0,
    bins: int = 100,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002
) -> Scores:
    """Quantus's EfficientMPRT (its defaults: every layer randomised, `skip_layers`): per image,
    (H(a_random) - H(a)) / H(a), H the `discrete_entropy` of `bins` bins, a the map (`maps`, or
    `method`'s for `targets` (B,), None: top-1), a_random the method's map with every parameter
    group re-initialised (`fresh_variables(init_key)`). Higher is better: a map that grows no more
    complex when the model is random was not explaining the model."""
    explain = require_method(method, "efficient_mprt")
    images = jnp.asarray(images, jnp.float32)
    indices = class_indices("efficient_mprt", model, variables, images, targets)
    run = functools.partial(
        _maps, model, images=images, indices=indices, method=explain, options=options_key(options)
    )  # fmt: skip
    if maps is None:
        maps = run(variables)
    else:
        check_maps(maps, images)
    groups = parameter_groups(model, variables, images)
    fresh = fresh_variables(model, init_key, (1, *images.shape[1:]))
    random_maps = run(randomised(variables, fresh, groups))
    before = discrete_entropy(normalised(jnp.asarray(maps, jnp.float32), normalise, abs), bins)
    after = discrete_entropy(normalised(random_maps, normalise, abs), bins)
    return scores((after - before) / before)


@functools.partial(jax.jit, static_argnames=("model", "method", "options"))
def _maps(model, variables, images, indices, *, method, options):
    return traced_maps(method, model, variables, images.astype(jnp.float32), indices, options)


def off_draws(key, batch: int, num_classes: int) -> jax.Array:
    """(B,) int32 draws in [0, num_classes - 1): draw r picks the r-th class other than the target
    (Quantus's `np.random.randint(0, num_classes - 1, B)` on the classes without the target)."""
    return jax.random.randint(random_key(key), (batch,), 0, num_classes - 1, jnp.int32)


@jax.jit
def ssim_flat(a: jax.Array, b: jax.Array) -> jax.Array:
    """(B, N) pairs -> (B,) skimage's `structural_similarity` of 1-D signals as Quantus calls it on
    flattened maps: 7-sample uniform windows (valid ones), sample covariances, data range max - min
    of the pair, K1 = 0.01, K2 = 0.03."""
    w = SSIM_WINDOW

    def mean(x):
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, w), (1, 1), "VALID") / w

    ux, uy = mean(a), mean(b)
    cov = w / (w - 1)
    vx, vy, vxy = cov * (mean(a * a) - ux * ux), cov * (mean(b * b) - uy * uy), cov * (mean(a * b) - ux * uy)
    both = jnp.concatenate([a, b], axis=-1)
    data_range = (both.max(-1) - both.min(-1))[:, None]
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(-1)


@functools.partial(jax.jit, static_argnames=("model", "method", "options", "given"))
def _random_logit(model, variables, images, maps, indices, key, normalise, absolute, *, method, options, given):
    images = images.astype(jnp.float32)
    logits = targets_lib.logits_of(taps.call_model(model, variables, images))
    r = off_draws(key, images.shape[0], logits.shape[-1])
    off = r + (r >= indices)
    if not given:
        maps = traced_maps(method, model, variables, images, indices, options)
    other = traced_maps(method, model, variables, images, off.astype(jnp.int32), options)
    a = normalised(maps.astype(jnp.float32), normalise, absolute)
    return ssim_flat(a.reshape(a.shape[0], -1), normalised(other, normalise, absolute).reshape(a.shape[0], -1))


def random_logit(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    normalise: bool = True,
    abs: bool = False,  # noqa: A002
) -> Scores:
    """Quantus's RandomLogit: per image, the SSIM (`ssim_flat`, on the flattened maps as Quantus)
    of the map of `targets` (B,) (`maps`, or `method`'s; None: top-1) with `method`'s map of a
    random other class (`off_draws(key, ...)` over the model's own number of classes, where Quantus
    assumes 1000), each divided by its maximum absolute value if `normalise`. Lower is better: a
    map that stays the same whatever class is asked for does not explain the class."""
    explain = require_method(method, "random_logit")
    images = jnp.asarray(images, jnp.float32)
    indices = class_indices("random_logit", model, variables, images, targets)
    if maps is not None:
        check_maps(maps, images)
    per_image = _random_logit(
        model,
        taps.prepare(model, variables),
        images,
        None if maps is None else jnp.asarray(maps, jnp.float32),
        indices,
        random_key(key),
        jnp.bool_(normalise),
        jnp.bool_(abs),
        method=explain,
        options=options_key(options),
        given=maps is not None,
    )
    return scores(per_image)

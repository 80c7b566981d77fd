"""Localisation: does a map's relevance lie on the object? Quantus 0.6.0's localisation metrics, on maps
`(B, *spatial)` (signals, images, volumes) and a segmentation mask `s_batch` of the same shape (nonzero
on the object), jitted, one program per metric and shape.

Each takes `maps`, or `method` (a `METHODS` name or a function) with `model`, `variables`, `images`
`(B, *spatial, C)` and `targets` (B,) to compute them (its `options` a dict), then Quantus's
preprocessing (`normalise`: each map divided by its largest |value|; `abs`), with Quantus's defaults
per metric. Every one returns `Scores`: (B,) per image, NaN where the mask is empty, and their mean.

Differences from Quantus 0.6.0, each deliberate (docs/evaluation.md lists them):
- `normalise` divides each map by its own largest |value|, not the batch by the batch's (no
  localisation score depends on the scale, so the scores are the same);
- ties in a ranking go to the earlier pixel (row-major), where Quantus's `np.argsort` leaves them
  to its quicksort; maps without ties score the same;
- `pointing_game`: an empty mask scores NaN (Quantus 0.6.0 casts its NaN into its boolean hits: 1),
  `weighted=True` scores a hit 1 - the mask's share of the map as Quantus documents it (0.6.0 raises
  a TypeError), and `tolerance` (Zhang et al.'s 15 px) counts a peak that near the mask; 0 is Quantus's;
- `attribution_localisation(weighted=True)` weighs by the mask's share of the map (0.6.0 divides by
  the size of `x_batch[2:]`, the batch from its third image on); `max_size` only warned and is gone;
- `focus` splits every spatial axis in halves, so it takes signals (2 cells) and volumes (8) too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src.evaluation.explain import Scores, check_count, maps_or_explained, normalised, scores
from gradcam_jax._src.metrics import sorted_average_ranks


def map_shape(maps, images) -> tuple[int, ...] | None:
    """The (B, *spatial) shape the maps will have, known before a method runs: `maps`' own, else that of
    the `images` (B, *spatial, C) it would explain; None if neither is given."""
    if maps is not None:
        return tuple(np.shape(maps))
    return tuple(np.shape(images))[:-1] if images is not None else None


def check_masks(metric: str, shape: tuple[int, ...] | None, s_batch) -> None:
    """One-line ValueError for a missing `s_batch`, or one not of the maps' (B, *spatial) `shape`."""
    if s_batch is None:
        raise ValueError(f"{metric} needs a segmentation mask: pass s_batch= (B, *spatial), nonzero on the object")
    if shape is not None and tuple(np.shape(s_batch)) != shape:
        raise ValueError(
            f"{metric}: s_batch must be (B, *spatial) = {shape} like the maps; got {tuple(np.shape(s_batch))}"
        )


def localised(
    metric: str,
    score: Callable,
    maps,
    s_batch,
    model,
    variables,
    images,
    targets,
    method,
    options,
    normalise: bool,
    abs: bool,
    **static,
) -> Scores:
    """The steps every localisation metric shares: the maps (given or explained), the mask checked,
    Quantus's preprocessing, then `score(flat maps (B, N), flat masks (B, N), **static)` jitted."""
    check_masks(metric, map_shape(maps, images), s_batch)  # before any method runs
    found = maps_or_explained(metric, maps, method, model, variables, images, targets, options)
    check_masks(metric, tuple(found.shape), s_batch)
    masks = jnp.asarray(s_batch).reshape(found.shape[0], -1) != 0
    flat = normalised(found, normalise, abs).reshape(found.shape[0], -1)
    return scores(_jitted(score, tuple(sorted(static.items())), tuple(found.shape[1:]))(flat, masks))


@functools.cache
def _jitted(score: Callable, static: tuple, spatial: tuple) -> Callable:
    """One jitted program per metric, its static options and the maps' spatial shape."""
    return jax.jit(functools.partial(score, spatial=spatial, **dict(static)))


def _empty_is_nan(values: jax.Array, masks: jax.Array) -> jax.Array:
    return jnp.where(masks.any(axis=-1), values, jnp.nan)


def dilated(masks: jax.Array, spatial: tuple, tolerance: float) -> jax.Array:
    """(B, N) flat masks grown by every position within `tolerance` (Euclidean, in pixels) of them, on
    the `spatial` grid: one convolution with a ball of that radius."""
    reach = math.floor(tolerance)
    offsets = np.indices((2 * reach + 1,) * len(spatial)) - reach
    ball = ((offsets**2).sum(axis=0) <= tolerance**2).astype(np.float32)
    grid = masks.reshape(masks.shape[0], *spatial, 1).astype(jnp.float32)
    axes = "DHW"[-len(spatial) :]
    grown = jax.lax.conv_general_dilated(
        grid,
        jnp.asarray(ball)[..., None, None],
        (1,) * len(spatial),
        "SAME",
        dimension_numbers=(f"N{axes}C", f"{axes}IO", f"N{axes}C"),
    )
    return grown.reshape(masks.shape) > 0.5


TIES = ("any", "first")  # which of a map's tied maxima may hit: every one (Quantus), or the first (argmax)


def _pointing(a, s, *, spatial, weighted, tolerance, ties):
    if ties == "any":
        peak = a == a.max(axis=-1, keepdims=True)  # every tied maximum counts, as Quantus's
    else:
        peak = jax.nn.one_hot(jnp.argmax(a, axis=-1), a.shape[-1], dtype=bool)
    near = dilated(s, spatial, tolerance) if tolerance > 0 else s
    hit = (peak & near).any(axis=-1).astype(jnp.float32)
    if weighted:
        hit = hit * (1 - s.mean(axis=-1))
    return _empty_is_nan(hit, s)


def pointing_game(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    weighted: bool = False,
    tolerance: float = 0.0,
    ties: str = "any",
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Pointing game (Zhang et al., IJCV 2018; Quantus `PointingGame`): 1 where a maximum of the map
    (any of them, on ties) lies on the mask, else 0. `weighted`: a hit scores 1 - the mask's share of
    the map, so hitting a small object counts more. `tolerance` > 0 also counts a maximum within that
    many pixels (Euclidean) of the mask (Zhang et al. allow 15 px at 224 px). `ties="first"` lets only
    the first of tied maxima (row-major, `argmax`) hit: upsampled maps clipped to [0, 1] have plateaus
    at their maximum, which "any" (Quantus's rule) counts whole. Higher is better."""
    if tolerance < 0:
        raise ValueError(f"pointing_game: tolerance is a distance in pixels, >= 0; got {tolerance}")
    if ties not in TIES:
        raise ValueError(f"pointing_game: ties must be one of {TIES}; got {ties!r}")
    return localised("pointing_game", _pointing, maps, s_batch, model, variables, images, targets, method, options,
                     normalise, abs, weighted=bool(weighted), tolerance=float(tolerance), ties=ties)  # fmt: skip


def _attribution_localisation(a, s, *, spatial, weighted, positive_attributions):
    if positive_attributions:
        a = jnp.maximum(a, 0.0)
    inside = jnp.where(s, a, 0.0).sum(axis=-1) / (a.sum(axis=-1) + 1e-9)
    inside = jnp.where(inside > 1, jnp.nan, inside)  # more inside than in all: negative relevance outside
    if weighted:
        inside = inside * s.mean(axis=-1)
    return _empty_is_nan(inside, s)


def attribution_localisation(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    weighted: bool = False,
    positive_attributions: bool = False,
    abs: bool = True,
    normalise: bool = True,
) -> Scores:
    """Attribution localisation (Kohlbrenner et al. 2020; Quantus `AttributionLocalisation`): the share
    of the map's relevance (sum of values; `positive_attributions` clips at 0 first) inside the mask,
    NaN where it exceeds 1. `weighted` multiplies by the mask's share of the map. Higher is better."""
    return localised("attribution_localisation", _attribution_localisation, maps, s_batch, model, variables, images,
                     targets, method, options, normalise, abs, weighted=bool(weighted),
                     positive_attributions=bool(positive_attributions))  # fmt: skip


def _top_k(a, s, *, spatial, k, concept_influence):
    _, top = jax.lax.top_k(a, k)  # ties: the lower index first
    share = jnp.take_along_axis(s, top, axis=-1).mean(axis=-1)
    if concept_influence:
        share = share * s.shape[-1] / s.sum(axis=-1)
    return _empty_is_nan(share, s)


def top_k_intersection(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    k: int = 1000,
    concept_influence: bool = False,
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Top-k intersection (Theiner et al. 2021; Quantus `TopKIntersection`): the share of the map's `k`
    largest values that lie on the mask; `concept_influence` divides it by the mask's share of the map
    (1 = as often as chance). Higher is better. `k` at most the pixels of a map."""
    shape = map_shape(maps, images)
    pixels = math.prod(shape[1:]) if shape is not None else None
    if pixels is not None:
        check_count("top_k_intersection", "k", k, 1, pixels)
    return localised("top_k_intersection", _top_k, maps, s_batch, model, variables, images, targets, method, options,
                     normalise, abs,
                     k=int(k), concept_influence=bool(concept_influence))  # fmt: skip


def _mass(a, s, *, spatial):
    return _empty_is_nan(jnp.where(s, a, 0.0).sum(axis=-1) / a.sum(axis=-1), s)


def relevance_mass_accuracy(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Relevance mass accuracy (Arras et al. 2022; Quantus `RelevanceMassAccuracy`): the map's sum on
    the mask over its total sum (no guard: a map summing to 0 gives inf or NaN, as Quantus's). Higher is
    better; 1 when all relevance lies on the object."""
    return localised("relevance_mass_accuracy", _mass, maps, s_batch, model, variables, images, targets, method,
                     options, normalise, abs)  # fmt: skip


def _rank(a, s, *, spatial):
    order = jnp.argsort(-a, axis=-1, stable=True)  # the largest value first, ties by index
    on = jnp.take_along_axis(s, order, axis=-1)  # the mask, in the map's order
    size = s.sum(axis=-1)
    hits = jnp.where(jnp.arange(s.shape[-1]) < size[:, None], on, False).sum(axis=-1)  # among the |mask| largest
    return _empty_is_nan(hits / size, s)


def relevance_rank_accuracy(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Relevance rank accuracy (Arras et al. 2022; Quantus `RelevanceRankAccuracy`): with K the mask's
    size, the share of the map's K largest values that lie on the mask. Higher is better."""
    return localised("relevance_rank_accuracy", _rank, maps, s_batch, model, variables, images, targets, method,
                     options, normalise, abs)  # fmt: skip


def _auc(a, s, *, spatial):
    order, ranks = sorted_average_ranks(a)  # Mann-Whitney: ties share their average rank
    s = jnp.take_along_axis(s, order, axis=-1)
    positives = s.sum(axis=-1).astype(jnp.float32)
    negatives = s.shape[-1] - positives
    mean_rank = jnp.where(s, ranks, 0.0).sum(axis=-1) / jnp.maximum(positives, 1)
    auc = (mean_rank - (positives + 1) / 2) / negatives  # = P(a_on > a_off) + P(tie) / 2
    return jnp.where((positives > 0) & (negatives > 0), auc, jnp.nan)


def auc(
    maps=None,
    s_batch=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Area under the ROC curve (Fawcett 2006; Quantus `AUC`, sklearn's `roc_curve` and `auc`) of the
    map as a detector of the mask's pixels: the chance that a pixel on the object outscores one off
    it, ties counting half. 0.5 is chance; higher is better. NaN where the mask is empty or full."""
    return localised("auc", _auc, maps, s_batch, model, variables, images, targets, method, options, normalise, abs)


def _focus(a, s, *, spatial):
    positive = jnp.maximum(a, 0.0)
    return jnp.where(s, positive, 0.0).sum(axis=-1) / (positive.sum(axis=-1) + 1e-9)


def mosaic_cells(positions, spatial: tuple[int, ...]) -> jax.Array:
    """(B, *spatial) bool: the cells of a mosaic flagged in `positions` `(B, 2**d)`, each spatial axis
    split in halves (the second half takes the odd pixel) and the cells in row-major order: for images
    (top-left, top-right, bottom-left, bottom-right), Quantus's order."""
    cells = jnp.asarray(positions).reshape(-1, *(2,) * len(spatial)) != 0
    for axis, size in enumerate(spatial):
        half = size // 2
        cells = jnp.repeat(cells, jnp.asarray([half, size - half]), axis=axis + 1, total_repeat_length=size)
    return cells


def mosaics(images, indices) -> jax.Array:
    """Mosaics of `2**d` of `images` `(N, *spatial, C)` each, as Quantus's `build_single_mosaic` frames
    four: `indices` `(M, 2**d)` picks them in the cells' row-major order -> `(M, *(2 x spatial), C)`."""
    images, indices = jnp.asarray(images), jnp.asarray(indices)
    spatial = images.shape[1:-1]
    tiles = images[indices].reshape(indices.shape[0], *(2,) * len(spatial), *images.shape[1:])
    d = len(spatial)
    # (M, 2, 2, H, W, C) -> (M, 2, H, 2, W, C): each half next to its tile's axis
    tiles = jnp.transpose(tiles, (0, *[i for a in range(d) for i in (1 + a, 1 + d + a)], tiles.ndim - 1))
    return tiles.reshape(indices.shape[0], *(2 * s for s in spatial), images.shape[-1])


def focus(
    maps=None,
    positions=None,
    *,
    model=None,
    variables=None,
    images=None,
    targets=None,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    abs: bool = False,
    normalise: bool = True,
) -> Scores:
    """Focus (Arias-Duart et al. 2022; Quantus `Focus`) on maps of mosaics (`mosaics`: 2 x 2 images,
    two of the target class): `positions` `(B, 2**d)`, 1 for each cell holding the target class (Quantus's
    `p_batch`), and the score is the share of the map's positive relevance in those cells. Higher is
    better; a map that ignores the image scores the target cells' share (0.5)."""
    shape = map_shape(maps, images)
    if shape is None:
        raise ValueError(
            "focus scores maps: pass maps= (B, *spatial), or method= with model, variables, images and targets"
        )
    cells = 2 ** (len(shape) - 1)
    if positions is None or np.shape(positions) != (shape[0], cells):
        raise ValueError(
            f"focus needs the mosaics' positions=: (B, {cells}), 1 where a cell holds the target class; got "
            f"{None if positions is None else np.shape(positions)}"
        )
    found = maps_or_explained("focus", maps, method, model, variables, images, targets, options)
    return localised("focus", _focus, found, mosaic_cells(positions, found.shape[1:]), None, None, None, None, None,
                     None, normalise, abs)  # fmt: skip

"""What a metric scores: precomputed maps, or a method (a registered name or a function) that it can
re-run on perturbed inputs, and the per-image scores plus their aggregate that every metric returns.

A metric's `method` is a name in `METHODS`, a registered method, or any function
`f(model, variables, images, targets, **options)` returning an `Explanation` or a `(B, *spatial)` array.
Maps are `(B, *spatial)` float32 (`Explanation.map`, one target per image); images `(B, *spatial, C)`.

The one calling convention of every family (docs/evaluation-suite.md): a metric that runs the model
is `metric(model, variables, images, maps=None, targets=None, *, method=None, options=None, ...)`
(`deletion`'s order), one that reads only maps `metric(maps=None, ..., *, model=..., method=...)`;
exactly one of maps and method where maps suffice (`maps_or_explained`), method required where the
explanation is re-run (`require_method`). Here too what they share: the checks (`check_images`,
`check_count`, `checked_indices`), Quantus's preprocessing (`normalised`) and fills (`baseline_values`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import inputs
from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.methods.base import METHODS, Explanation, hashable

BASELINES = ("black", "white", "mean")  # Quantus's fills: each image's minimum, maximum, mean value


def baseline_values(images: jax.Array, baseline) -> jax.Array:
    """(B,) float32: the value that replaces an image's features, as Quantus's `perturb_baseline` (our
    `baseline`): "black" the image's smallest value (over every position and channel), "white" its
    largest, "mean" its mean, or a number (`completeness`, `non_sensitivity`; `continuity` fills with
    "black"). Quantus's meaning, kept for its scores: the faithfulness metrics' "black" is 0 and "mean" the model's mean pixel (`methods.common.baseline_pixels`)."""
    flat = images.reshape(images.shape[0], -1).astype(jnp.float32)
    if isinstance(baseline, str):
        if baseline == "black":
            return flat.min(axis=-1)
        if baseline == "white":
            return flat.max(axis=-1)
        if baseline == "mean":
            return flat.mean(axis=-1)
        raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)} or a number")
    return jnp.full(images.shape[:1], baseline, jnp.float32)


class Scores(NamedTuple):
    """per_image: (B,) float32, one score per image; aggregate: () float32, their mean (Quantus's
    default aggregation), NaN-free images only where a metric says so."""

    per_image: jax.Array
    aggregate: jax.Array


def scores(per_image: jax.Array) -> Scores:
    """`Scores` of (B,) per-image values, aggregated by their mean."""
    per_image = jnp.asarray(per_image, jnp.float32)
    return Scores(per_image, per_image.mean())


def resolve_method(method: str | Callable, metric: str) -> Callable:
    """The explanation function of `method` (a `METHODS` name or a function); one-line ValueError for
    an unknown name or a method that is neither."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"{metric}: unknown method {method!r}; choose one of {sorted(METHODS)} or pass a function")
        return METHODS[method]
    if not callable(method):
        raise ValueError(f"{metric}: method must be a method name or a function; got {type(method).__name__}")
    return method


def explain_maps(method: Callable, model, variables, images, targets, **options) -> jax.Array:
    """(B, *spatial) float32 maps of `method` (resolved) for `targets` (B,) on `images`."""
    result = method(model, variables, images, targets, **options)
    return jnp.asarray(result.map if isinstance(result, Explanation) else result, jnp.float32)


def require_method(method, metric: str) -> Callable:
    """The function of `method` for a metric that must re-run the explanation on perturbed inputs
    (robustness, randomisation, input invariance): a one-line ValueError when given only maps."""
    if method is None:
        raise ValueError(f"{metric} re-explains perturbed inputs: pass method= (a name or a function), not only maps")
    return resolve_method(method, metric)


def check_images(metric: str, images) -> None:
    """One-line ValueError, naming the metric, unless `images` is `(B, *spatial, C)` with 1 to 3 spatial
    axes and a number dtype (`inputs.check_images`, the methods' check)."""
    try:
        inputs.check_images(images, values=False)
    except ValueError as err:
        raise ValueError(f"{metric}: {err}") from None


def check_count(metric: str, option: str, value, least: int, most: int | None = None) -> None:
    """One-line ValueError unless `value` is an int in least..most (a count of steps, draws, pixels)."""
    if not isinstance(value, (int, np.integer)) or value < least or (most is not None and value > most):
        bound = f"{least}..{most}" if most is not None else f"at least {least}"
        raise ValueError(f"{metric}: {option} must be an int {bound}; got {value!r}")


def checked_indices(metric: str, targets, batch: int) -> jax.Array | None:
    """`targets` (B,) class indices as int32 (None stays None: the metric takes the top-1 class); a
    one-line ValueError for any other shape. For the metrics that re-explain inside one jitted
    program, where a target function cannot be traced."""
    if targets is None:
        return None
    if np.ndim(targets) != 1 or np.shape(targets)[0] != batch:
        raise ValueError(f"{metric}: targets must be (B,) class indices; got shape {np.shape(targets)}")
    return jnp.asarray(targets, jnp.int32)


def check_maps_or_method(metric: str, maps, method) -> None:
    """One-line ValueError unless exactly one of `maps` (an array) and `method` is given: a metric that
    only scores maps takes them precomputed or computes them, never both."""
    if maps is None and method is None:
        raise ValueError(
            f"{metric} scores maps: pass maps= (B, *spatial), or method= with model, variables, images and targets"
        )
    if maps is not None and method is not None:
        raise ValueError(f"{metric}: pass maps or method=, not both")
    if isinstance(maps, str) or (callable(maps) and not isinstance(maps, jax.Array)):
        raise ValueError(
            f"{metric}: maps must be an array (B, *spatial); pass a method as method= (options as options=)"
        )


def maps_or_explained(metric: str, maps, method, model, variables, images, targets, options) -> jax.Array:
    """(B, *spatial) float32: `maps` when given, else `method`'s maps (`explain_maps`, its `options`
    a mapping or None) of `targets` on `images`; a one-line ValueError unless exactly one is given
    (`check_maps_or_method`)."""
    check_maps_or_method(metric, maps, method)
    if maps is not None:
        return jnp.asarray(maps, jnp.float32)
    if images is None:
        raise ValueError(f"{metric}: method= needs the images it explains (images=, with model, variables and targets)")
    return explain_maps(
        resolve_method(method, metric), model, variables, jnp.asarray(images), targets, **(options or {})
    )


def normalised(maps: jax.Array, normalise, abs) -> jax.Array:  # noqa: A002  (Quantus's name)
    """Quantus's preprocessing of (N, *spatial) maps: each divided by its largest |value| when
    `normalise` (`normalise_by_max`; an all-zero map is left as it is), then |maps| when `abs` (bools,
    Python or traced). Per map, where Quantus 0.6.0 divides the whole batch by the batch's largest
    |value|: a map's score then depends on the other maps beside it (the scale-free metrics never see
    the difference)."""
    maps = jnp.asarray(maps, jnp.float32)
    largest = jnp.abs(maps).max(axis=tuple(range(1, maps.ndim)), keepdims=True)
    maps = jnp.where(normalise, maps / jnp.where(largest > 0, largest, 1.0), maps)
    return jnp.where(abs, jnp.abs(maps), maps)


def options_key(options: dict | None) -> tuple:
    """A method's `options` as a static (hashable) argument of a jitted metric: sorted (name, value)
    pairs, lists and concrete arrays as tuples."""
    return tuple(sorted((name, hashable(value)) for name, value in (options or {}).items()))


def traced_maps(method: Callable, model, variables, images, indices, options: tuple) -> jax.Array:
    """(N, *spatial) float32 maps of `method` (resolved) for class `indices` (N,) on `images`
    (N, *spatial, C), inside a metric's jitted program: a registered method runs its traceable core
    (`impl`, on `classes(indices, score)`, `score` from `options` or the method's default), so no
    check or host sync interrupts the trace; any other function is called as it is (it must trace)."""
    chosen: dict[str, object] = dict(options)
    impl = getattr(method, "impl", None)
    if impl is None:
        return explain_maps(method, model, variables, images, indices, **chosen)
    score = chosen.pop("score", None) or getattr(method, "default_score", None) or "logit"
    result = impl(model, variables, images, targets_lib.Classes(indices, str(score)), **chosen)
    return jnp.asarray(result.map[:, 0], jnp.float32)

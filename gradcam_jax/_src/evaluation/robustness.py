"""Robustness: does the explanation stay put when the input barely moves? Quantus 0.6.0's family
(and captum's `sensitivity_max`), each metric one jitted program per shape that re-runs the method
on every perturbed batch inside it.

- `max_sensitivity` / `avg_sensitivity` (Yeh et al. 2019): ||a - a'|| / ||a|| over uniform noise
  draws, the maximum / the mean. Lower is better.
- `local_lipschitz_estimate` (Alvarez-Melis & Jaakkola 2018): max ||a - a'|| / ||x - x'|| over
  Gaussian noise draws. Lower is better.
- `relative_input_stability`, `relative_output_stability`, `relative_representation_stability`
  (Agarwal et al. 2022): the maximum of the relative change of the map over the relative change of
  the input, the change of the logits, or the relative change of a layer's output. Lower is better.
- `continuity` (Montavon et al. 2018): the map's L1 change over the input's L2 change as the input
  is shifted along its last spatial axis. Lower is better.
- `consistency` (Dasgupta et al. 2022): of the other images whose maps discretise alike, the
  fraction the model gives the same class. Higher is better. Needs no re-run.
- `sensitivity_max`: captum's, the maximum sensitivity over `samples` uniform draws in
  [-radius, radius]; a zero-norm map counts as norm 1. Lower is better.

Maps are `(B, *spatial)` (one target per image); images `(B, *spatial, C)` with 1, 2 or 3 spatial
axes; norms run over every axis but the batch. A metric's `method` is a registered method (or its
name), re-run through its traceable core, or any function `f(model, variables, images, indices,
**options)` that traces; its `options` go in `options=`. Draw i of `key` is `uniform_noise(key, i,
...)` / `gaussian_noise(key, i, ...)`; `batch_size` images go through one explanation pass
(`methods.common.passes_per_step` draws of the batch at once), `lax.map` walks the rest.

Quantus's conventions kept (`normalise`: divide each map by its maximum absolute value; `abs`;
each metric's defaults): see docs/evaluation.md for the few deliberate differences (normalising per
image, not over the whole batch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.explain import (
    Scores,
    baseline_values,
    check_count,
    check_images,
    check_maps_or_method,
    checked_indices,
    normalised,
    options_key,
    require_method,
    resolve_method,
    scores,
    traced_maps,
)
from gradcam_jax._src.inputs import check_maps
from gradcam_jax._src.methods.common import passes_per_step, random_key

EPS_RELATIVE = 1e-6  # Quantus's `eps_min` of the relative stabilities: what a zero in a denominator becomes
EPS_LIPSCHITZ = 1e-10  # Quantus's `lipschitz_constant`
EPS_CONTINUITY = 1e-9  # Quantus's `Continuity`
DISCRETISATIONS = ("top_n_sign", "sign", "rank", "floating_points")


class Setting(NamedTuple):
    """A robustness metric's description. Only the kind of perturbation (noise or shifts), `count`,
    `layer` and whether the perturbed logits are read (`nan_when_changed`, ROS, RRS) shape the jitted
    program; the rest is traced or applied after it, so the noise metrics on the same model, method,
    shapes and draw count share a compiled program (Max/AvgSensitivity, LLE and `sensitivity_max` one,
    RIS and ROS another)."""

    measure: str  # "sensitivity", "lipschitz", "ris", "ros", "rrs", "continuity"
    perturbation: str  # "uniform" or "gaussian" (noise), "translation"
    low: float  # uniform: lower end of the interval; gaussian: mean
    high: float  # uniform: upper end of the interval; gaussian: std
    count: int  # draws (or translation steps)
    reduce: str  # "max" or "mean" over the draws
    nan_when_changed: bool  # a draw whose top-1 class differs from the reference gives NaN
    normalise: bool
    absolute: bool
    zero_norm_is_one: bool = False  # captum: a zero-norm map divides by 1
    layer: str | None = None  # RRS: the layer's path


class Draws(NamedTuple):
    """What every draw gives, (count, B) float32 each (the measures combine them, `measured`)."""

    change: jax.Array  # ||a - a'||_2
    l1_change: jax.Array  # ||a - a'||_1
    relative_change: jax.Array  # ||(a - a') / a||_2
    map_norm: jax.Array  # ||a||_2
    input_change: jax.Array  # ||x - x'||_2
    relative_input_change: jax.Array  # ||(x - x') / x||_2
    output_change: jax.Array  # ||h - h'||_2 of the logits
    relative_hidden_change: jax.Array  # ||(l - l') / l||_2 at the layer (0 without one)
    moved_top1: jax.Array  # (count, B) int32: the top-1 class of the perturbed image
    predicted: jax.Array  # (B,) int32: the top-1 class of the image
    targets: jax.Array  # (B,) int32: the classes explained


def noise_draw(key, index, shape, gaussian, low, high) -> jax.Array:
    """Draw `index` of `key` (a typed key): float32 noise of `shape` from one uniform draw u in [0, 1)
    (`jax.random.uniform(fold_in(key, index))`): low + (high - low) u, or where `gaussian` (traced
    or not) low + high x the normal quantile of u (mean low, std high). One draw serves both, so
    the noise metrics share one program."""
    u = jax.random.uniform(jax.random.fold_in(key, index), shape, jnp.float32)
    normal = np.sqrt(2.0) * jax.scipy.special.erfinv(jnp.clip(2.0 * u - 1.0, -1.0 + 1e-7, 1.0 - 1e-7))
    return jnp.where(gaussian, low + high * normal, low + (high - low) * u)


def uniform_noise(key, index, shape, lower_bound: float, upper_bound: float | None) -> jax.Array:
    """Draw `index` of `key` (a key or an int seed): uniform noise in [-lower_bound, lower_bound] when
    `upper_bound` is None, else in [lower_bound, upper_bound] (Quantus's `batch_uniform_noise`)."""
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    return noise_draw(random_key(key), index, shape, False, low, high)


def gaussian_noise(key, index, shape, mean: float, std: float) -> jax.Array:
    """Draw `index` of `key`: normal(mean, std) noise (Quantus's `batch_gaussian_noise`)."""
    return noise_draw(random_key(key), index, shape, True, mean, std)


def translation(images: jax.Array, shift, fill: jax.Array) -> jax.Array:
    """`(B, *spatial, C)` shifted by `shift` positions along the last spatial axis (positive: towards
    higher indices), the uncovered positions set to `fill` (B, 1, ..., 1): Quantus's
    `batched_translation` along x."""
    width = images.shape[-2]
    source = jnp.arange(width) - shift
    inside = ((source >= 0) & (source < width)).reshape(width, 1)
    moved = jnp.take(images, jnp.clip(source, 0, width - 1), axis=-2)
    return jnp.where(inside, moved, fill)


def translation_shifts(width: int, steps: int) -> np.ndarray:
    """Quantus's `Continuity` shifts: -width + k * ((2 width + 1) // steps) for k = 1..steps."""
    return -width + np.arange(1, steps + 1) * ((2 * width + 1) // steps)


def norm(x: jax.Array) -> jax.Array:
    """(N, ...) -> (N,) L2 norm over every axis but the first."""
    return jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=-1))


def relative(x: jax.Array, moved: jax.Array) -> jax.Array:
    """(x - moved) / x, a zero of x counted as EPS_RELATIVE (Quantus's relative stabilities)."""
    return (x - moved) / (x + (x == 0) * EPS_RELATIVE)


def guarded(d: jax.Array) -> jax.Array:
    return d + (d == 0) * EPS_RELATIVE


def over_draws(fn: Callable, count: int, chunk: int):
    """(count, ...) outputs of `fn(indices)` ((n,) draw indices -> a pytree of (n, ...)), `chunk` draws
    a call, walked by `lax.map`; the last call's surplus indices repeat the last draw and are dropped."""
    chunk = min(chunk, count)
    rows = -(-count // chunk)
    indices = jnp.minimum(jnp.arange(rows * chunk), count - 1).reshape(rows, chunk)
    if rows == 1:  # one pass: called as it is (XLA:CPU runs the explanation in a loop body ~2x slower)
        return fn(indices[0])
    out = jax.lax.map(fn, indices)
    return jax.tree.map(lambda a: a.reshape(rows * chunk, *a.shape[2:])[:count], out)


@functools.partial(
    jax.jit, static_argnames=("model", "method", "options", "perturbation", "count", "layer", "outputs", "chunk")
)
def _draws(
    model, variables, images, maps, indices, key, gaussian, low, high, normalise, absolute, *,
    method, options, perturbation, count, layer, outputs, chunk,
) -> Draws:  # fmt: skip
    """Every draw's norms (see `Draws`): `count` perturbed batches (`perturbation` "noise": + `noise_draw`;
    "translation": `translation_shifts`), each re-explained. The perturbed batches' logits (and
    `layer`'s output) only where `outputs` (a forward pass more per draw)."""
    images = images.astype(jnp.float32)
    b = images.shape[0]

    def forward(x):  # (the model's logits, the layer's output or 0)
        if layer is None:
            return targets_lib.logits_of(taps.call_model(model, variables, x)), jnp.zeros((x.shape[0], 1))
        outputs, hidden = taps.forward_with_layer(model, variables, x, layer)
        return targets_lib.logits_of(outputs), hidden

    logits, hidden = forward(images)
    predicted = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    indices = predicted if indices is None else indices
    if maps is None:
        maps = traced_maps(method, model, variables, images, indices, options)
    maps = normalised(maps.astype(jnp.float32), normalise, absolute)
    fill = baseline_values(images, "black").reshape(-1, *(1,) * (images.ndim - 1))  # each image's minimum

    def perturb(i):
        if perturbation == "translation":
            return translation(images, jnp.asarray(translation_shifts(images.shape[-2], count))[i], fill)
        return images + noise_draw(key, i, images.shape, gaussian, low, high)

    def measure(draws):  # (n,) draw indices -> `Draws` fields, (n, B) each
        n = draws.shape[0]
        moved = jax.vmap(perturb)(draws).reshape(n * b, *images.shape[1:])
        moved_maps = traced_maps(method, model, variables, moved, jnp.tile(indices, n), options)
        moved_maps = normalised(moved_maps, normalise, absolute)
        if outputs:
            moved_logits, moved_hidden = forward(moved)
        else:  # not asked for: the top-1 "unchanged", the output norms 0
            moved_logits, moved_hidden = jnp.tile(logits, (n, 1)), jnp.tile(hidden, (n,) + (1,) * (hidden.ndim - 1))
        tile = lambda x: jnp.tile(x, (n,) + (1,) * (x.ndim - 1))  # noqa: E731  (draw-major, as `moved`)
        a, x = tile(maps), tile(images)
        fields = (
            norm(a - moved_maps),
            jnp.abs(a - moved_maps).reshape(n * b, -1).sum(-1),
            norm(relative(a, moved_maps)),
            norm(a),
            norm(x - moved),
            norm(relative(x, moved)),
            norm(tile(logits) - moved_logits),
            norm(relative(tile(hidden), moved_hidden)),
            jnp.argmax(moved_logits, axis=-1).astype(jnp.int32),
        )
        return tuple(f.reshape(n, b) for f in fields)

    fields = over_draws(measure, count, chunk)
    return Draws(*fields, predicted=predicted, targets=indices)


def measured(setting: Setting, d: Draws) -> jax.Array:
    """(B,) per-image scores of `setting` from its draws: the measure's ratio per draw, NaN where the
    top-1 class moved (if asked: from the prediction, Continuity from the target), reduced."""
    kind = setting.measure
    if kind == "sensitivity":
        denominator = jnp.where(d.map_norm == 0, 1.0, d.map_norm) if setting.zero_norm_is_one else d.map_norm
        value = d.change / denominator
    elif kind == "lipschitz":
        value = d.change / (d.input_change + EPS_LIPSCHITZ)
    elif kind == "continuity":  # a shift of 0 leaves the image, so the map: 0 (not float noise / 1e-9)
        value = jnp.where(d.input_change == 0, 0.0, d.l1_change / (d.input_change + EPS_CONTINUITY))
    else:
        denominator = {"ris": d.relative_input_change, "ros": d.output_change, "rrs": d.relative_hidden_change}[kind]
        value = d.relative_change / guarded(denominator)
    if setting.nan_when_changed:
        reference = d.targets if kind == "continuity" else d.predicted
        value = jnp.where(d.moved_top1 != reference, jnp.nan, value)
    return value.max(axis=0) if setting.reduce == "max" else value.mean(axis=0)


def _run(name, model, variables, images, maps, targets, method, options, key, setting: Setting, batch_size) -> Scores:
    """Checks (one line each, before any tracing), then the metric's program."""
    explain = require_method(method, name)
    check_images(name, images)
    images = jnp.asarray(images)
    if maps is not None:
        check_maps(maps, images)
        maps = jnp.asarray(maps, jnp.float32)
    targets = checked_indices(name, targets, images.shape[0])
    check_count(name, "the number of draws", setting.count, 1)
    draws = _draws(
        model,
        taps.prepare(model, variables),
        images,
        maps,
        targets,
        random_key(key),
        jnp.bool_(setting.perturbation == "gaussian"),
        jnp.float32(setting.low),
        jnp.float32(setting.high),
        jnp.bool_(setting.normalise),
        jnp.bool_(setting.absolute),
        method=explain,
        options=options_key(options),
        perturbation="translation" if setting.perturbation == "translation" else "noise",
        count=setting.count,
        layer=setting.layer,
        outputs=setting.nan_when_changed or setting.measure in ("ros", "rrs"),
        chunk=passes_per_step(batch_size, images.shape[0]),
    )
    return scores(measured(setting, draws))


def uniform_setting(name, measure, samples, lower_bound, upper_bound, reduce, nan_when_changed, normalise, absolute):
    if upper_bound is None and lower_bound == 0:
        raise ValueError(f"{name}: lower_bound=0 with no upper_bound perturbs nothing; give a noise bound > 0")
    if upper_bound is not None and upper_bound <= lower_bound:
        raise ValueError(f"{name}: upper_bound must exceed lower_bound; got {lower_bound}, {upper_bound}")
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    return Setting(
        measure, "uniform", float(low), float(high), int(samples), reduce, nan_when_changed, normalise, absolute
    )


def max_sensitivity(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002  (Quantus's name)
    nan_when_prediction_changes: bool = False,
    batch_size: int = 16,
) -> Scores:
    """Quantus's MaxSensitivity: per image, max over `samples` draws of ||a - a'||_2 / ||a||_2, a the
    map of `images` ``(B, *spatial, C)`` (`maps`, or `method`'s for `targets` (B,), None: top-1), a'
    `method`'s map of the image plus uniform noise (`uniform_noise`: [-lower_bound, lower_bound], or
    [lower_bound, upper_bound]; in the units the model takes). `nan_when_prediction_changes`: a
    draw that changes the top-1 class makes the image's score NaN. Lower is better."""
    setting = uniform_setting(
        "max_sensitivity", "sensitivity", samples, lower_bound, upper_bound, "max",
        nan_when_prediction_changes, normalise, abs,
    )  # fmt: skip
    return _run("max_sensitivity", model, variables, images, maps, targets, method, options, key, setting, batch_size)


def avg_sensitivity(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002
    nan_when_prediction_changes: bool = False,
    batch_size: int = 16,
) -> Scores:
    """Quantus's AvgSensitivity: `max_sensitivity`'s ratio averaged over the draws. Lower is better."""
    setting = uniform_setting(
        "avg_sensitivity", "sensitivity", samples, lower_bound, upper_bound, "mean",
        nan_when_prediction_changes, normalise, abs,
    )  # fmt: skip
    return _run("avg_sensitivity", model, variables, images, maps, targets, method, options, key, setting, batch_size)


def sensitivity_max(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 10,
    radius: float = 0.02,
    batch_size: int = 16,
) -> Scores:
    """captum's `sensitivity_max`: per image, max over `samples` draws (uniform in [-radius, radius],
    `uniform_noise(key, i, ..., radius, None)`) of ||a - a'||_2 / ||a||_2, a zero-norm map counted
    as norm 1. The maps are the method's own, unnormalised. Lower is better."""
    setting = uniform_setting("sensitivity_max", "sensitivity", samples, radius, None, "max", False, False, False)
    setting = setting._replace(zero_norm_is_one=True)
    return _run("sensitivity_max", model, variables, images, maps, targets, method, options, key, setting, batch_size)


def local_lipschitz_estimate(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 200,
    mean: float = 0.0,
    std: float = 0.1,
    normalise: bool = True,
    abs: bool = False,  # noqa: A002
    nan_when_prediction_changes: bool = False,
    batch_size: int = 16,
) -> Scores:
    """Quantus's LocalLipschitzEstimate: per image, max over `samples` Gaussian draws (`gaussian_noise`:
    normal(mean, std), in the units the model takes) of ||a - a'||_2 / (||x - x'||_2 + 1e-10).
    Lower is better."""
    if std == 0 and mean == 0:
        raise ValueError("local_lipschitz_estimate: std=0 and mean=0 perturb nothing; give std > 0")
    setting = Setting(
        "lipschitz", "gaussian", float(mean), float(std), int(samples), "max",
        nan_when_prediction_changes, normalise, abs,
    )  # fmt: skip
    return _run(
        "local_lipschitz_estimate", model, variables, images, maps, targets, method, options, key, setting, batch_size
    )


def relative_input_stability(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002
    nan_when_prediction_changes: bool = True,
    batch_size: int = 16,
) -> Scores:
    """Quantus's RelativeInputStability (Agarwal et al. 2022, RIS): per image, max over uniform
    draws of ||(a - a') / a|| / ||(x - x') / x|| (zeros counted as 1e-6). The noise is Quantus
    0.6.0's: uniform in [lower_bound, upper_bound] = [0.02, 0.2], one-sided. By default a draw that
    changes the top-1 class makes the image's score NaN (and the aggregate, a plain mean, NaN).
    Lower is better."""
    setting = uniform_setting(
        "relative_input_stability", "ris", samples, lower_bound, upper_bound, "max",
        nan_when_prediction_changes, normalise, abs,
    )  # fmt: skip
    return _run(
        "relative_input_stability", model, variables, images, maps, targets, method, options, key, setting, batch_size
    )


def relative_output_stability(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    key=None,
    samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002
    nan_when_prediction_changes: bool = True,
    batch_size: int = 16,
) -> Scores:
    """Quantus's RelativeOutputStability (ROS): `relative_input_stability` with the denominator the
    L2 change of the model's logits, ||h - h'|| (not relative, as Quantus 0.6.0). Lower is better."""
    setting = uniform_setting(
        "relative_output_stability", "ros", samples, lower_bound, upper_bound, "max",
        nan_when_prediction_changes, normalise, abs,
    )  # fmt: skip
    return _run(
        "relative_output_stability", model, variables, images, maps, targets, method, options, key, setting, batch_size
    )


def relative_representation_stability(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    layer: str | None = None,
    key=None,
    samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    normalise: bool = False,
    abs: bool = False,  # noqa: A002
    nan_when_prediction_changes: bool = True,
    batch_size: int = 16,
) -> Scores:
    """Quantus's RelativeRepresentationStability (RRS): `relative_input_stability` with the
    denominator the relative change of `layer`'s output, ||(l - l') / l|| (`layer` a path as the
    methods take it; None: the model's default layer). Quantus reads the named torch modules'
    outputs (all of them by default); give it the one layer to compare. Lower is better."""
    require_method(method, "relative_representation_stability")
    path, _ = taps.resolve_layer(model, taps.prepare(model, variables), jnp.asarray(images), layer)
    setting = uniform_setting(
        "relative_representation_stability", "rrs", samples, lower_bound, upper_bound, "max",
        nan_when_prediction_changes, normalise, abs,
    )._replace(layer=path)  # fmt: skip
    return _run(
        "relative_representation_stability", model, variables, images, maps, targets, method, options, key, setting,
        batch_size,
    )  # fmt: skip


def continuity(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    steps: int = 28,
    normalise: bool = True,
    abs: bool = True,  # noqa: A002
    nan_when_prediction_changes: bool = False,
    batch_size: int = 16,
) -> Scores:
    """Quantus's Continuity: the images are shifted along their last spatial axis (width; a signal's
    length) by `translation_shifts(width, steps)`, the uncovered positions set to each image's
    minimum (Quantus's "black"); per image, the maximum over the shifts of ||a - a'||_1 /
    (||x - x'||_2 + 1e-9). `maps` None: the method's (Quantus always recomputes them).
    `nan_when_prediction_changes`: a shift whose top-1 class is not the target gives NaN.
    Lower is better."""
    require_method(method, "continuity")
    width = np.shape(images)[-2] if np.ndim(images) >= 3 else 0
    check_count("continuity", "steps", steps, 1, 2 * width + 1)
    setting = Setting(
        "continuity", "translation", 0.0, 0.0, int(steps), "max", nan_when_prediction_changes, normalise, abs
    )
    return _run("continuity", model, variables, images, maps, targets, method, options, None, setting, batch_size)


def discretised(maps: jax.Array, how: str, n: int) -> jax.Array:
    """(B, N) flat maps -> (B, M) codes that are equal exactly where Quantus's `discretise_func`
    hashes are: "top_n_sign" (the signs of the first `n` entries, as Quantus's, not the largest),
    "sign", "rank" (the order, largest first; ties in index order) or "floating_points" (rounded
    to `n` decimals)."""
    if how == "top_n_sign":
        return jnp.sign(maps[:, :n])
    if how == "sign":
        return jnp.sign(maps)
    if how == "rank":
        return jnp.argsort(-maps, axis=-1, stable=True).astype(jnp.float32)
    return jnp.round(maps, n)


@functools.partial(jax.jit, static_argnames=("model", "method", "options", "how", "n", "normalise", "absolute"))
def _consistency(model, variables, images, maps, indices, *, method, options, how, n, normalise, absolute):
    images = images.astype(jnp.float32)
    predicted = jnp.argmax(targets_lib.logits_of(taps.call_model(model, variables, images)), axis=-1)
    if maps is None:
        indices = predicted.astype(jnp.int32) if indices is None else indices
        maps = traced_maps(method, model, variables, images, indices, options)
    maps = normalised(maps.astype(jnp.float32), normalise, absolute)
    codes = discretised(maps.reshape(maps.shape[0], -1), how, n)
    others = ~jnp.eye(images.shape[0], dtype=bool)
    alike = (codes[:, None] == codes[None]).all(-1) & others
    same_class = (predicted[:, None] == predicted[None]) & others
    return (alike & same_class).sum(-1) / (alike.sum(-1) + 1e-9)


def consistency(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method=None,
    options: dict | None = None,
    discretise: str = "top_n_sign",
    n: int | None = None,
    normalise: bool = True,
    abs: bool = True,  # noqa: A002
) -> Scores:
    """Quantus's Consistency: per image, among the other images of the batch whose maps discretise
    to the same code (`discretised`; `n` 5 for "top_n_sign", 2 decimals for "floating_points"),
    the fraction the model gives the same top-1 class (0 where none is alike). Scored on `maps`, or
    `method`'s for `targets` (None: top-1). Higher is better."""
    check_maps_or_method("consistency", maps, method)
    if discretise not in DISCRETISATIONS:
        raise ValueError(f"consistency: unknown discretise {discretise!r}; choose from {', '.join(DISCRETISATIONS)}")
    images = jnp.asarray(images)
    if maps is not None:
        check_maps(maps, images)
        maps = jnp.asarray(maps, jnp.float32)
    per_image = _consistency(
        model,
        taps.prepare(model, variables),
        images,
        maps,
        None if targets is None else jnp.asarray(targets, jnp.int32),
        method=None if method is None else resolve_method(method, "consistency"),
        options=options_key(options),
        how=discretise,
        n=(5 if discretise == "top_n_sign" else 2) if n is None else int(n),
        normalise=normalise,
        absolute=abs,
    )
    return scores(per_image)

"""Axioms an explanation should satisfy, tested on the model: Quantus 0.6.0's axiomatic metrics, for any
model kind `call_model` runs, on inputs `(B, *spatial, C)` with 1, 2 or 3 spatial axes, jitted.

- `completeness`: the map sums to the score's change from a baseline input (Sundararajan et al.);
- `non_sensitivity`: pixels the model ignores get no relevance, and pixels with none are ignored
  (Nguyen and Martinez 2020);
- `input_invariance`: a model that undoes a constant shift of its input in its first layer gets the
  same map (Kindermans et al. 2019); the method is re-run, so it must be given (`require_method`).

Each takes `maps` (B, *spatial) or `method` (a `METHODS` name or a function; `options` a dict for it),
then Quantus's preprocessing (`normalise`: each map divided by its largest |value|; `abs`) with
Quantus's defaults. Scores are those Quantus reads by default, of class `targets` (B,) or any target
function: logits for `completeness`, softmax probabilities for `non_sensitivity`. Returns `Scores`: (B,) per image (1.0 / 0.0 for a test passed or not,
a count for `non_sensitivity`) and their mean.

Differences from Quantus 0.6.0, each deliberate (docs/evaluation.md lists them):
- `normalise` divides each map by its own largest |value|, not the batch by the batch's;
- `completeness` compares within `rtol`/`atol`, where Quantus tests `==` on floats (false for any
  sum whose rounding differs; `rtol=atol=0` is Quantus's test), and its baseline replaces every value
  of the image: Quantus 0.6.0 replaces as many as the map has, from the first in channel-first order,
  so given (B, H, W) maps of RGB images only the red channel;
- `non_sensitivity` with `features_in_step` > 1 counts groups (a group is a non-feature when all of its
  relevance is below `eps`); Quantus 0.6.0 fails on a shape mismatch there. At 1 it is Quantus's;
- `input_invariance` shifts every value of the image (Quantus 0.6.0's `perturb_batch` drops the first
  index, so the first value of each image stays as it was), and adds z(0) - z(shift) to the first layer's output z (a tap: any model kind), which
  undoes the shift exactly, border pixels of a padded convolution included; Quantus moves the first
  convolution's bias by one value per channel (the smallest), exact only without padding.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.explain import (
    BASELINES,
    Scores,
    baseline_values,
    check_count,
    check_images,
    explain_maps,
    maps_or_explained,
    normalised,
    require_method,
    scores,
)
from gradcam_jax._src.inputs import check_maps
from gradcam_jax._src.methods.common import perturbed_scores, target_scores
from gradcam_jax._src.metrics import one_target


def _checked(metric, model, variables, images, targets, maps, method, options, score, baseline):
    """The images (float32), the maps (given or explained, checked against the images), the target;
    `baseline` checked before any method runs."""
    if isinstance(baseline, str) and baseline not in BASELINES:
        raise ValueError(f"{metric}: unknown baseline {baseline!r}; choose from {', '.join(BASELINES)} or a number")
    check_images(metric, images)
    images = jnp.asarray(images, jnp.float32)
    found = maps_or_explained(metric, maps, method, model, variables, images, targets, options)
    check_maps(found, images)
    variables = taps.prepare(model, variables)
    return images, found, variables, one_target(metric, model, variables, images, targets, score)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _completeness(model, variables, images, sums, target, fill, rtol, atol, *, batch_size):
    baseline = jnp.broadcast_to(fill.reshape(-1, *(1,) * (images.ndim - 1)), images.shape)
    both = perturbed_scores(model, variables, lambda i: jnp.where(i == 0, images, baseline), jnp.arange(2), target,
                            batch_size)[..., 0]  # fmt: skip
    change = both[0] - both[1]
    return (jnp.abs(sums - change) <= atol + rtol * jnp.abs(change)).astype(jnp.float32)


def completeness(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    perturb_baseline: str | float = "black",
    score: str = "logit",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    abs: bool = False,
    normalise: bool = True,
    batch_size: int = 16,
) -> Scores:
    """Completeness (Sundararajan et al., ICML 2017; Quantus `Completeness`): 1 where the map's sum
    equals the `score`'s change from `images` to the baseline image (every value replaced by
    `perturb_baseline`, Quantus's fill: "black" each image's minimum, `baseline_values`), within `rtol` (relative to the change) plus `atol`; else 0.
    Higher is better. Quantus normalises by default, which rescales the sum: pass `normalise=False` to
    test raw attributions (integrated gradients' are complete up to their step error)."""
    images, found, variables, target = _checked("completeness", model, variables, images, targets, maps, method,
                                                options, score, perturb_baseline)  # fmt: skip
    sums = normalised(found, normalise, abs).reshape(found.shape[0], -1).sum(axis=-1)
    fill = baseline_values(images, perturb_baseline)
    return scores(_completeness(model, variables, images, sums, target, fill, jnp.float32(rtol), jnp.float32(atol),
                                batch_size=batch_size))  # fmt: skip


def channel_first_flat(x: jax.Array) -> jax.Array:
    """(B, *spatial, C) -> (B, C * prod(spatial)) in Quantus's (channel-first) order of features."""
    return jnp.moveaxis(x, -1, 1).reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("model", "batch_size", "step"))
def _non_sensitivity(model, variables, images, a, target, fill, eps, *, batch_size, step):
    b, *spatial, c = images.shape
    features = channel_first_flat(images)
    group = jnp.arange(features.shape[-1]) // step  # Quantus's runs of `step` features, in its order
    groups = math.ceil(features.shape[-1] / step)
    before, target = target_scores(model, variables, images, target)

    def without(i):  # group i of every image set to its baseline value
        replaced = jnp.where(group == i, fill[:, None], features).reshape(b, c, *spatial)
        return jnp.moveaxis(replaced, 1, -1)

    after = perturbed_scores(model, variables, without, jnp.arange(groups), target, batch_size)[..., 0].T  # (B, G)
    ignored = jnp.abs(after - before) < eps
    relevance = jnp.broadcast_to(a[:, None], (b, c, *spatial)).reshape(b, -1)  # the map on every channel
    largest = jax.ops.segment_max(jnp.moveaxis(relevance, 0, 1), group, groups).T  # (B, G)
    none = largest < eps  # all of a group's relevance below eps
    return (ignored ^ none).sum(axis=-1).astype(jnp.float32)


def non_sensitivity(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    eps: float = 1e-5,
    features_in_step: int = 1,
    perturb_baseline: str | float = "black",
    score: str = "softmax",
    abs: bool = True,
    normalise: bool = True,
    batch_size: int = 16,
) -> Scores:
    """Non-sensitivity (Nguyen and Martinez 2020; Quantus `NonSensitivity`): each input value (each
    channel of each pixel, in runs of `features_in_step` in channel-first order) is replaced by
    `perturb_baseline` (Quantus's fill, as `completeness`) in turn; the count of those where "the score moved by less than `eps`" and "the
    map (the pixel's value, on every channel) is below `eps`" disagree. Lower is better (0: relevance
    exactly where the model reacts). One forward pass of the batch per group, `batch_size` images a pass."""
    check_count("non_sensitivity", "features_in_step", features_in_step, 1,
                math.prod(np.shape(images)[1:]))  # fmt: skip
    images, found, variables, target = _checked("non_sensitivity", model, variables, images, targets, maps, method,
                                                options, score, perturb_baseline)  # fmt: skip
    fill = baseline_values(images, perturb_baseline)
    a = normalised(found, normalise, abs)
    return scores(_non_sensitivity(model, variables, images, a, target, fill, jnp.float32(eps), batch_size=batch_size,
                                   step=int(features_in_step)))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MeanShifted:
    """`model` with `delta` added to the output of its layer `layer`: called as a function of
    `(variables, delta)` and the images, so any model kind is shifted the same way and methods see
    it as a model (`taps.call_model`); other attributes (`default_layer`, `mean_pixel`) are `model`'s."""

    model: object
    layer: str

    def __call__(self, variables, images):
        inner, delta = variables
        with taps.tap(perturb={self.layer: delta}):
            return taps.call_model(self.model, inner, images)

    def __getattr__(self, name):
        if name in ("model", "layer") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model, name)


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def first_layer_shift(model, variables, images, shift, *, layer):
    """z(0) - z(shift) at `layer` (as taps see it, (B, *s, C)): added to the layer's output z it undoes
    a constant `shift` of the input exactly, when the layer is affine (a convolution, a dense layer)."""

    def output(x):
        with taps.tap([layer]) as tapped:
            taps.call_model(model, variables, x)
        return tapped.outputs[layer]

    return output(jnp.zeros_like(images)) - output(jnp.full_like(images, shift))


def input_invariance(
    model,
    variables,
    images,
    maps=None,
    targets=None,
    *,
    method: str | Callable | None = None,
    options: Mapping | None = None,
    input_shift: float = -1.0,
    first_layer: str | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    abs: bool = False,
    normalise: bool = False,
) -> Scores:
    """Input invariance (Kindermans et al. 2019; Quantus `InputInvariance`): the images shifted by
    `input_shift` everywhere, explained on the model whose `first_layer` (default: the first one it
    calls, `taps.layer_shapes`; it should be affine) undoes the shift (`MeanShifted`), the same
    function of the unshifted image. 1 where every value of the new map is `np.isclose` (`atol`,
    `rtol`) to the original's (`maps`, or the method's), else 0. Higher is better: gradients pass,
    input x gradient with a zero baseline fails. Needs `method`, which is re-run on the shifted input."""
    explain = require_method(method, "input_invariance")
    check_images("input_invariance", images)
    images = jnp.asarray(images, jnp.float32)
    variables = taps.prepare(model, variables)
    original = explain_maps(explain, model, variables, images, targets, **(options or {})) if maps is None else maps
    original = jnp.asarray(original, jnp.float32)
    check_maps(original, images)
    layer = first_layer if first_layer is not None else next(iter(taps.layer_shapes(model, variables, images)))
    delta = first_layer_shift(model, variables, images, jnp.float32(input_shift), layer=layer)
    shifted = explain_maps(explain, MeanShifted(model, layer), (variables, delta), images + input_shift, targets,
                           **(options or {}))  # fmt: skip
    before, after = normalised(original, normalise, abs), normalised(shifted, normalise, abs)
    close = jnp.abs(before - after) <= atol + rtol * jnp.abs(after)  # np.isclose(a, b): tolerance on b
    return scores(close.reshape(close.shape[0], -1).all(axis=-1))

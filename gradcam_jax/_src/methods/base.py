"""What every explanation method shares: its result type, its calling convention, its registry.

A method is written as `impl(model, variables, images, target, *, options...)` on checked inputs,
where `target` is a function of the model's outputs giving (B,) or (B, K) scores
(`gradcam_jax._src.targets`), and returns an `Explanation` with a K axis whose `targets` field holds
the target it explained (top-1 classes resolved). `@register(name, score=...)` turns it into the
public function `method(model, variables, images, targets=None, *, score=..., **options)`, whose
`inspect.signature` shows every option it takes, `score` (with its default) included:

- `targets` may be class indices (B,) or (B, K), None (top-1), or any target function; indices
  become `targets.classes(indices, score)`, with the method's default `score` unless one is given;
  `score` with a target function is an error (the function is the score);
- inputs are checked (a clear ValueError before any tracing; NaN/Inf inside the compiled program);
- the core is jitted once per input shape, with the model and the keyword options static, except
  `key` (a `jax.random` key or an int seed, traced: a new key does not recompile);
- the K axis is dropped where the target gives (B,) scores (one class per image, top-1, a
  function returning (B,)), and `Explanation.targets` becomes the class indices (None for a function).
- a method with a `batch_size` option (images per forward pass) runs a batch larger than that in
  slices (`common.in_slices`) when its target is class indices, so its memory follows `batch_size`;
- an option's older name (`RENAMED`) is still accepted for one release, with a DeprecationWarning
  naming the new one, and gives the same result (the metrics take theirs the same way,
  `accepting_old_names`).

One concept, one name, in every method and metric: `baseline` is what replaces (ablates, masks
towards) pixels, `noise` the size of added noise (each method's doc gives its unit), `patch` the
size of a region, `key` the random key (or int seed), `targets` what is explained and `score` how
class targets are scored.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import diagnostics
from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.inputs import check_images, is_concrete
from gradcam_jax._src.methods.common import in_slices

TRACED_OPTIONS = ("key",)  # keyword options passed to the jitted core as arrays, not as static values

# Options renamed so that one concept has one name everywhere (issue 25), old -> new, per method or
# metric. The old names are accepted until the next release, with a DeprecationWarning.
RENAMED: dict[str, dict[str, str]] = {
    "occlusion": {"mask_size": "patch", "mask_value": "baseline"},
    "score_cam": {"fill": "baseline"},
    "is_cam": {"fill": "baseline"},
    "ss_cam": {"fill": "baseline", "stdev": "noise"},
    "gradient_shap": {"stdev": "noise"},
    "smooth_grad_cam_plus_plus": {"stdev": "noise"},
    "smoothgrad": {"seed": "key"},
    "image_lime": {"features": "segments"},
    "deletion": {"substrate": "baseline"},
    "insertion": {"substrate": "baseline"},
    "model_randomisation": {"seed": "init_key"},
}


class Explanation(NamedTuple):
    """map: `(B, *spatial)` or `(B, K, *spatial)` float32 in [0, 1] at the input resolution: (B, H, W)
    for images (B, H, W, C), (B, L) for signals, (B, D, H, W) for volumes and clips.
    scores: (B,) or (B, K) float32, the scores explained. targets: the class indices, the same
    shape, int32 (None for a target function). activations: `(B, *s, C)` at the layer ((B, h, w, C)
    for images), and gradients: `(B, [K,] *s, C)`, where the method has them. flags: int32, shaped
    like `scores`: why a map is not informative, 0 where it is (`gradcam_jax.diagnostics`: a constant
    map, a non-finite or saturated score, a zero gradient); a call with any flag set warns once."""

    map: jax.Array
    scores: jax.Array
    targets: jax.Array | Callable | None  # inside a method's core: the target object it explained
    activations: jax.Array | None = None
    gradients: jax.Array | None = None
    flags: jax.Array | None = None


class Checks(NamedTuple):
    """What the jitted core reports beside the result, checked on the host after (or before) it runs."""

    finite: jax.Array  # () bool: every pixel of the images was finite
    outputs: jax.Array  # (0, N): N the model's number of classes for explicit class indices (else 0), by shape only


class LayoutError(ValueError):
    """A batch whose shape does not fit the model (a missing batch or channel axis, channels first into
    a channels-last model, a wrong channel count): raised before the model runs, in one line."""


METHODS: dict[str, Callable[..., Explanation]] = {}


def renamed_options(name: str, options: dict) -> dict:
    """`options` with the older names `RENAMED[name]` replaced by the new ones, a DeprecationWarning
    (naming the new one, pointing at the caller's caller) for each; TypeError if both are given."""
    table = RENAMED.get(name, {})
    if not table.keys() & options.keys():
        return options
    options = dict(options)
    for old, new in table.items():
        if old in options:
            if new in options:
                raise TypeError(f"{name}: give {new}= or its older name {old}=, not both")
            warnings.warn(
                f"{name}'s {old}= is now {new}= ({old}= goes in the next release)", DeprecationWarning, stacklevel=3
            )
            options[new] = options.pop(old)
    return options


def accepting_old_names(name: str) -> Callable[[Callable], Callable]:
    """Decorator: `fn` (a metric) also takes the older names of its keyword options, `RENAMED[name]`
    (`renamed_options`); its signature shows the new ones only."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **options):
            return fn(*args, **renamed_options(name, options))

        return wrapper

    return decorate


def published_signature(impl: Callable, score: str | None) -> inspect.Signature:
    """`impl`'s signature with `score` (its default the method's) as the first keyword-only option,
    for a method that has a score choice: the signature of the public function."""
    signature = inspect.signature(impl)
    parameters = list(signature.parameters.values())
    if score is None or "score" in signature.parameters:
        return signature
    at = next((i for i, p in enumerate(parameters) if p.kind is p.KEYWORD_ONLY), len(parameters))
    parameters.insert(at, inspect.Parameter("score", inspect.Parameter.KEYWORD_ONLY, default=score, annotation="str"))
    return signature.replace(parameters=parameters)


def drop_k(result: Explanation) -> Explanation:
    """Remove the K axis (of size 1) from every per-target field."""
    take = lambda x: None if x is None else x[:, 0]  # noqa: E731
    return result._replace(
        map=take(result.map),
        scores=take(result.scores),
        targets=take(result.targets),
        gradients=take(result.gradients),
        flags=take(result.flags),
    )


def gives_one_score(model, variables, images, target) -> bool:
    """Whether `target` gives (B,) scores rather than (B, K); decided at trace time."""
    if isinstance(target, targets_lib.Classes):
        return target.indices is None or target.indices.ndim == 1
    shape = jax.eval_shape(lambda t, v, x: t(taps.call_model(model, v, x)), target, variables, images)
    return len(getattr(shape, "shape", ())) == 1


def publish(impl, model, variables, images, target, **options) -> tuple[Explanation, Checks]:
    """The jitted core: `impl`, its maps flagged (`diagnostics.degenerate_flags`), then the K axis and
    the targets field as the user asked; and the `Checks` (in the same program: no extra pass or sync)."""
    result = impl(model, variables, images, target, **options)
    explained = result.targets
    is_classes = isinstance(explained, targets_lib.Classes)
    softmax = is_classes and explained.score == "softmax"
    flags = diagnostics.degenerate_flags(result.map, result.scores, softmax, result.gradients)
    indices = explained.indices.reshape(images.shape[0], -1) if is_classes else None
    result = result._replace(targets=indices, flags=flags)
    if gives_one_score(model, variables, images, target):
        result = drop_k(result)
    classes = 0
    # the model's logits as a jaxpr, traced once more: their count (to check explicit class indices),
    # and their last op (a softmax score of a model that ends in a softmax); top-1 logits need neither
    if isinstance(target, targets_lib.Classes) and (target.indices is not None or softmax):
        logits = jax.make_jaxpr(lambda v, x: targets_lib.logits_of(taps.call_model(model, v, x)))(variables, images)
        classes = logits.out_avals[0].shape[-1]
        if softmax and diagnostics.ends_in_softmax(logits.jaxpr):
            result = result._replace(flags=flags_of(result) | diagnostics.SOFTMAX_TWICE)
    return result, Checks(jnp.isfinite(images).all(), jnp.zeros((0, classes), jnp.int8))


def flags_of(result: Explanation) -> jax.Array:
    """`result.flags`, set by `publish` before anything reads it."""
    assert result.flags is not None
    return result.flags


def hashable(option):
    """A static option as jit can hash it: lists as tuples, a concrete array as nested tuples."""
    if isinstance(option, (np.ndarray, jax.Array)) and is_concrete(option):
        option = option.tolist()
    return tuple(hashable(v) for v in option) if isinstance(option, list) else option


def register(
    name: str, score: str | None = "logit"
) -> Callable[[Callable[..., Explanation]], Callable[..., Explanation]]:
    """Decorator: publish `impl` as a checked, jitted explanation method under `name`. `score` is
    the default class score of its class targets ("softmax" or "logit"), shown in the published
    signature; None for a method that has no choice (CAM: logits), which then refuses a `score`
    option. The older names of its options (`RENAMED[name]`) are translated before anything else."""

    def decorate(impl):
        parameters = inspect.signature(impl).parameters
        static = [p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY and p.name not in TRACED_OPTIONS]
        core = impl
        if "batch_size" in parameters:

            def core(model, variables, images, target, **options):
                # class indices are per image and may be sliced with the images; a target function may
                # hold arrays that are not per image (a concept, a shared mask), so its batch runs whole
                if not isinstance(target, targets_lib.Classes):
                    return impl(model, variables, images, target, **options)
                size = options.get("batch_size", parameters["batch_size"].default)
                return in_slices(lambda x, t: impl(model, variables, x, t, **options), size, images, target)

        jitted = jax.jit(functools.partial(publish, core), static_argnames=("model", *static))

        def method(model, variables, images, targets=None, **options) -> Explanation:
            options = renamed_options(name, options)
            variables = taps.prepare(model, variables)
            images = check_images(images, values=False)
            try:
                target = resolve_target(name, score, model, images, targets, options.pop("score", None))
            except ValueError:  # targets sized for another batch: perhaps the batch is laid out wrong
                raise_layout_mismatch(model, variables, images, targets)
                raise
            options = {k: v if k in TRACED_OPTIONS else hashable(v) for k, v in options.items()}  # static
            if isinstance(target, targets_lib.Classes) and target.indices is not None:  # before any FLOPs
                with layout_errors(model, variables, images, target):  # by shape only (a cached trace)
                    checks = jitted.eval_shape(model, variables, images, target, **options)[1]
                targets_lib.check_class_range(target.indices, images.shape[0], checks.outputs.shape[-1])
            with layout_errors(model, variables, images, target):
                result, ran = jitted(model, variables, images, target, **options)
            if is_concrete(ran.finite) and not bool(ran.finite):  # inside the caller's jit/grad: not checked
                raise ValueError("images contain NaN or Inf values; expected finite pixel values")
            if is_concrete(result.flags):
                diagnostics.warn_flags(name, result.flags)
            return result

        functools.update_wrapper(method, impl)  # name and doc of `impl`
        method.__signature__ = published_signature(impl, score)  # pyright: ignore[reportAttributeAccessIssue]  # every option, `score` too
        method.jitted = jitted  # pyright: ignore[reportAttributeAccessIssue]  # the compiled core, for `._cache_size()`
        method.impl = impl  # pyright: ignore[reportAttributeAccessIssue]  # the K-axis core, for use inside another trace
        method.default_score = score  # pyright: ignore[reportAttributeAccessIssue]
        METHODS[name] = method
        return method

    return decorate


@contextlib.contextmanager
def layout_errors(model, variables, images, targets) -> Iterator[None]:
    """Errors raised while a method's core is traced or run, in one line: a batch that does not fit the
    model fails while tracing, before any FLOPs, and becomes a `LayoutError` saying how
    (`raise_layout_mismatch`); other errors lose jit's note on their traceback."""
    try:
        yield
    except Exception as err:
        raise_layout_mismatch(model, variables, images, targets)
        notes = getattr(err, "__notes__", None)
        if notes:
            notes[:] = [note for note in notes if not note.startswith(JAX_NOTE)]
        raise


JAX_NOTE = "--------------------\nFor simplicity, JAX has removed"  # the note jit adds to errors raised in a trace


def raise_layout_mismatch(model, variables, images, targets) -> None:
    """A `LayoutError` if `images` fail the model only for their layout (`diagnostics.layout_mismatch`:
    a missing batch or channel axis, channels first, ...), naming the fix; else nothing."""
    classifier = isinstance(targets, targets_lib.Classes) or not targets_lib.is_function(targets)
    message = diagnostics.layout_mismatch(
        lambda x: taps.call_model(model, variables, x), tuple(images.shape), images.dtype, classifier
    )
    if message is not None:
        raise LayoutError(message) from None


def resolve_target(name: str, default_score: str | None, model, images, targets, score: str | None):
    """The target object for `targets` (see the module doc); ValueError/TypeError for a `score`
    that does not apply. Giving the default score is the same as leaving it out."""
    if score is not None and score == default_score:
        score = None
    if score is not None and default_score is None:
        raise TypeError(f"{name} has no score option: it explains logits")
    if targets_lib.is_function(targets):
        if isinstance(targets, targets_lib.Classes):
            if score is not None and score != targets.score:
                raise ValueError(f"score={score!r} conflicts with the target's own score {targets.score!r}")
        elif score is not None:
            raise ValueError("score applies to class targets; a target function is its own score")
    return targets_lib.as_target(
        targets, images.shape[0], score or default_score or "logit", getattr(taps.unwrap(model), "num_classes", None)
    )

"""What every explanation method shares: its result type, its calling convention, its registry.

A method is written as `impl(model, variables, images, targets, *, options...)` on checked inputs,
with `targets` (B, K) int32 or None (top-1), and returns an `Explanation` with a K axis.
`@register(name)` turns it into the public function: inputs checked (a clear ValueError), jitted
once per input shape with the model and the keyword options static, and the K axis dropped again
when `targets` was (B,) or None. A method with a `batch_size` option (images per forward pass)
runs a batch larger than that in slices (`common.in_slices`), so its memory follows `batch_size`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax

from gradcam_jax.inputs import check_images, check_targets
from gradcam_jax.methods.common import in_slices

DEFAULT_LAYER = "inception_5b-output"


class Explanation(NamedTuple):
    """map: (B, H, W) or (B, K, H, W) float32 in [0, 1] at the input resolution.
    scores: (B,) or (B, K) float32, the class scores explained. targets: the same shape, int32.
    activations: (B, h, w, C) at the layer, and gradients: (B, [K,] h, w, C), where the method has them."""

    map: jax.Array
    scores: jax.Array
    targets: jax.Array
    activations: jax.Array | None = None
    gradients: jax.Array | None = None


METHODS: dict[str, Callable[..., Explanation]] = {}


def drop_k(result: Explanation) -> Explanation:
    """Remove the K axis (of size 1) from every per-target field."""
    take = lambda x: None if x is None else x[:, 0]  # noqa: E731
    return result._replace(
        map=take(result.map), scores=take(result.scores), targets=take(result.targets), gradients=take(result.gradients)
    )


def register(name: str):
    """Decorator: publish `impl` as a checked, jitted explanation method under `name`."""

    def decorate(impl):
        parameters = inspect.signature(impl).parameters
        static = [p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY]
        bounded = impl
        if "batch_size" in parameters:

            @functools.wraps(impl)
            def bounded(model, variables, images, targets, **options):
                size = options.get("batch_size", parameters["batch_size"].default)
                return in_slices(lambda x, t: impl(model, variables, x, t, **options), size, images, targets)

        jitted = jax.jit(bounded, static_argnames=("model", *static))

        @functools.wraps(impl)
        def method(model, variables, images, targets=None, **options) -> Explanation:
            images = check_images(images)
            targets, implicit_k = check_targets(targets, images.shape[0], getattr(model, "num_classes", None))
            result = jitted(model, variables, images, targets, **options)
            return drop_k(result) if implicit_k else result

        method.jitted = jitted  # the compiled core, e.g. for `method.jitted._cache_size()`
        METHODS[name] = method
        return method

    return decorate

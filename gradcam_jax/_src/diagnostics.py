"""No silent wrong map: why a result is not informative (flags), and what went wrong when a batch
does not fit the model (one line instead of a deep framework traceback).

Flags are computed inside each method's jitted program (a few reductions of what it returns), one
int32 bit set per map, shaped like `Explanation.scores`:

- CONSTANT_MAP: the map has one value everywhere (an all-zero map included): it shows nothing;
- NONFINITE_SCORE: the explained score is NaN or Inf;
- SATURATED_SCORE: a softmax score within 1e-6 of 1 or 0, where its gradient vanishes;
- ZERO_GRADIENT: the method's gradient (at the layer or the input) is zero everywhere;
- SOFTMAX_TWICE: a softmax score of a model whose outputs are a softmax already (its last operation,
  read from its jaxpr at trace time): the probabilities are softmaxed again, which flattens them.

`flag_names(flags)` reads them; a method warns once per call, naming the causes and the fixes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src.targets import logits_of

CONSTANT_MAP = 1
NONFINITE_SCORE = 2
SATURATED_SCORE = 4
ZERO_GRADIENT = 8
SOFTMAX_TWICE = 16

FLAGS = {
    CONSTANT_MAP: ("constant map", "the map is one value everywhere"),
    NONFINITE_SCORE: ("non-finite score", "check the inputs' scale and the model's outputs"),
    SATURATED_SCORE: ("saturated softmax", 'explain score="logit" (a softmax at 0 or 1 has no gradient)'),
    ZERO_GRADIENT: ("zero gradient", 'try another layer, or score="logit"'),
    SOFTMAX_TWICE: ("softmax of a softmax", 'the model outputs probabilities: score="logit" explains them as they are'),
}
SATURATION = 1e-6


def degenerate_flags(maps: jax.Array, scores: jax.Array, softmax: bool, gradients: jax.Array | None) -> jax.Array:
    """(B, K) int32 flags of `(B, K, *spatial)` maps and their (B, K) scores; `softmax`: the scores are
    softmax probabilities; `gradients` `(B, K, ...)` or None (the method has none)."""
    spatial = tuple(range(2, maps.ndim))
    flat = maps.astype(jnp.float32)
    constant = (flat.max(axis=spatial) - flat.min(axis=spatial)) == 0
    constant = constant | ~jnp.isfinite(flat).all(axis=spatial)
    flags = jnp.where(constant, CONSTANT_MAP, 0)
    flags = flags | jnp.where(jnp.isfinite(scores), 0, NONFINITE_SCORE)
    if softmax:
        saturated = (scores > 1 - SATURATION) | (scores < SATURATION)
        flags = flags | jnp.where(saturated, SATURATED_SCORE, 0)
    if gradients is not None and gradients.ndim > 2 and gradients.shape[:2] == scores.shape:
        zero = (gradients == 0).all(axis=tuple(range(2, gradients.ndim)))
        flags = flags | jnp.where(zero, ZERO_GRADIENT, 0)
    return flags.astype(jnp.int32)


def ends_in_softmax(jaxpr, out: int = 0) -> bool:
    """Whether output `out` of `jaxpr` is computed last by a softmax, exp(z) / sum(exp(z)) (jax.nn and
    flax's `softmax`, or written out), looking through nested jit/custom-derivative calls."""
    producers = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}

    def made_by(var, *names):  # the equation making `var`, through broadcasts and reshapes
        eqn = producers.get(var)
        while eqn is not None and eqn.primitive.name in ("broadcast_in_dim", "reshape", "convert_element_type"):
            eqn = producers.get(eqn.invars[0])
        return eqn if eqn is not None and eqn.primitive.name in names else None

    eqn = producers.get(jaxpr.outvars[out])
    if eqn is None:
        return False
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if inner is not None:  # a nested call: follow the same output inside it
        inner = getattr(inner, "jaxpr", inner)
        return ends_in_softmax(inner, eqn.outvars.index(jaxpr.outvars[out]))
    if eqn.primitive.name != "div":
        return False
    numerator, denominator = eqn.invars
    return made_by(numerator, "exp") is not None and made_by(denominator, "reduce_sum") is not None


def flag_names(flags) -> list[str]:
    """The causes set in an int flag value (or any array of them, combined)."""
    combined = int(np.bitwise_or.reduce(np.asarray(flags).reshape(-1))) if np.size(flags) else 0
    return [name for bit, (name, _) in FLAGS.items() if combined & bit]


def warn_flags(method: str, flags) -> None:
    """One warning for the call when any map is flagged: how many, why, and the fix."""
    host = np.asarray(flags)
    flagged = int((host != 0).sum())
    if not flagged:
        return
    causes = "; ".join(
        f"{name} ({int(((host & bit) != 0).sum())}): {fix}" for bit, (name, fix) in FLAGS.items() if (host & bit).any()
    )
    warnings.warn(
        f"{method}: {flagged} of {host.size} maps are not informative (Explanation.flags) - {causes}",
        DegenerateMapWarning,
        stacklevel=3,
    )


class DegenerateMapWarning(UserWarning):
    """Some maps of a call show nothing (`Explanation.flags` says which and why)."""


def relaid(shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    """(shape, how to get it) for each common layout mistake a batch of `shape` may hold, the likeliest
    first: channels first, an alpha channel, RGB into a one-channel model, then a missing batch axis
    or a missing channel axis (one channel, or grayscale for an RGB model)."""
    tries: list[tuple[tuple[int, ...], str]] = []
    if len(shape) >= 3:
        order = (0, *range(2, len(shape)), 1)
        tries.append((tuple(shape[i] for i in order), f"these look channels-first: pass images.transpose{order}"))
        if shape[-1] == 4:
            tries.append(((*shape[:-1], 3), "4 channels where the model takes 3 (alpha?): pass images[..., :3]"))
        if shape[-1] == 3:
            tries.append(((*shape[:-1], 1), "3 channels where the model takes 1: pass images.mean(-1, keepdims=True)"))
    channel_axis = [
        ((*shape, 1), "the channel axis is missing: pass images[..., None]"),
        ((*shape, 3), "the channel axis is missing (grayscale?): pass np.repeat(images[..., None], 3, axis=-1)"),
    ]
    batch_axis = [((1, *shape), "the batch axis is missing: pass images[None]")]
    # a last axis of 1 to 4 is likelier channels (one image) than the width of a grayscale batch
    tries += batch_axis + channel_axis if shape and shape[-1] <= 4 else channel_axis + batch_axis
    return [(s, fix) for s, fix in tries if 1 <= len(s) - 2 <= 3]


def fits(call: Callable, shape: tuple[int, ...], dtype, classifier: bool) -> bool:
    """Whether `call` traces on a batch of `shape`, and, for a `classifier`, gives (B, N) logits for its
    B images (linen layers read extra leading axes as more batch: that is not a fit)."""
    try:
        out = jax.eval_shape(call, jax.ShapeDtypeStruct(shape, dtype))
        if not classifier:
            return True
        logits = logits_of(out).shape
        return len(logits) == 2 and logits[0] == shape[0]
    except Exception:  # noqa: BLE001 - any failure: it does not fit
        return False


def layout_mismatch(call: Callable, shape: tuple[int, ...], dtype, classifier: bool) -> str | None:
    """One line saying how a batch of `shape` fails to fit a model that `call(images)` runs: the first
    layout of `relaid` it fits (`fits`), named with its fix. None when it fits as it is, or on none of
    them (the failure is not the layout's). Only traced, after a failure: nothing is computed."""
    if fits(call, shape, dtype, classifier):
        return None
    for fitting, fix in relaid(shape):
        if fits(call, fitting, dtype, classifier):
            return f"images of shape {tuple(shape)} do not fit the model, which takes {fitting}: {fix}"
    return None

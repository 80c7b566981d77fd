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

import jax
import jax.numpy as jnp
import numpy as np

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


def kernels(variables) -> list[tuple[str, tuple[int, ...]]]:
    """(path, shape) of every convolution kernel among `variables`, linen/NNX `(*window, C_in, C_out)`,
    in tree order. (Equinox models take whatever layout their own code transposes from: not judged.)"""
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        shape = tuple(getattr(leaf, "shape", ()))
        if not names or len(shape) < 3:
            continue
        if names[-1] == "kernel" or (names[-1] == "value" and len(names) > 1 and names[-2] == "kernel"):
            found.append(("/".join(n for n in names if n not in ("params", "value", "kernel")), shape))
    return found


def layout_mismatch(variables, shape: tuple[int, ...]) -> str | None:
    """One line saying how a batch of `shape` does not fit a model with `variables`, from its first
    convolution (fewest input channels): a missing batch or channel axis, channels first into a
    channels-last model, a wrong channel count or rank. None when the batch fits (or there is no
    convolution to judge by)."""
    found = kernels(variables)
    if not found:
        return None
    path, kernel = min(found, key=lambda pk: pk[1][-2])
    rank, channels = len(kernel) - 2, kernel[-2]
    expected = (
        "(B, " + ", ".join(("L",) if rank == 1 else ("H", "W") if rank == 2 else ("D", "H", "W")) + f", {channels})"
    )
    given = f"images of shape {tuple(shape)}"
    head = f"{given} do not fit the model: its first convolution ({path!r}) takes {expected}"
    if len(shape) == rank + 2 and shape[-1] == channels:
        return None
    if len(shape) == rank + 1 and shape[-1] == channels:
        return f"{head}; the batch axis is missing: pass images[None]"
    if len(shape) == rank + 1 and channels == 1:
        return f"{head}; the channel axis is missing: pass images[..., None]"
    if len(shape) == rank + 1:
        return f"{head}; the channel axis is missing (grayscale? np.repeat(images[..., None], {channels}, axis=-1))"
    if len(shape) == rank + 2 and shape[1] == channels:
        order = (0, *range(2, len(shape)), 1)
        return f"{head}; these look channels-first: pass images.transpose{order}"
    if len(shape) == rank + 2:
        return f"{head}; got {shape[-1]} channels"
    return f"{head}; got {len(shape) - 2} spatial axes"

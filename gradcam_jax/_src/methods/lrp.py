"""Layer-wise relevance propagation (Bach et al., PLoS ONE 2015; Montavon et al. 2019), with zennit's
rules and composites (`gradcam_jax.relevance`): the class's logit is sent back layer by layer as
relevance, each layer sharing it among its inputs by its rule, down to the first linear layer's input.

    relevance  (B, [K,] *spatial, C)   at the input of the first Dense/Conv layer the model calls
    map        = normalise( relu( sum_c relevance ) )

One forward pass (each rule-bearing layer also runs its modified copies: z+ two, alpha-beta and gamma
four, half of them skipped where the layer's input has no negative entry) and one backward pass per
target column. The relevance of a bias-free ReLU network under LRP-0
sums to the explained logit (conservation); biases and stabilisers absorb some. `composite` is a name
("EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox",
"Epsilon") or a `Composite` (`gradcam_jax.relevance`). The explained score is the logit (as zennit's
and captum's LRP); `Explanation.gradients` holds the signed relevance, in the first layer's input
layout (the image's unless the model preprocesses it into another shape), channels last.

Linen, NNX, Equinox and Keras models, unmodified: their Dense and Conv layers (1-D, 2-D, 3-D),
batch norms (folded into the layer before them, else passed), ReLUs and other activations, pooling,
sums and reshapes. A layer with parameters that no rule covers is an error naming it. Transformers:
`attn_lrp`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.gradients import column_cotangents
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import target_scores
from gradcam_jax._src.relevance import composites, propagate


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def not_differentiable(relevance: jax.Array, method: str) -> jax.Array:
    """`relevance` unchanged; differentiating it is a one-line error. The rules' backward passes hold
    `stop_gradient`s, so jax.grad through them would run and give a derivative that is not the map's:
    a training loss on LRP maps would silently optimise something else."""
    return relevance


@not_differentiable.defjvp
def _refuse(method, primals, tangents):
    raise TypeError(
        f"{method} maps cannot be differentiated (LRP's rules are modified gradients, with stop_gradient "
        "inside); for a loss on maps use input_x_gradient, integrated_gradients or grad_cam"
    )


def input_relevance(
    model,
    variables,
    images,
    targets,
    composite,
    method: str = "lrp",
    around: Callable[[], contextlib.AbstractContextManager] | None = None,
):
    """((B, K, *s, C) float32 relevance at the first layer's input (channels last), (B, K) scores,
    the target resolved) of `composite` for the K target columns: one forward pass, K backward passes.
    `around()`: a context the forward pass runs in besides the LRP tap (the transformer rules of
    `attn_lrp` and `cp_lrp`)."""
    the_plan = propagate.plan(model, variables, images, composites.resolve(composite), method)
    probe = jnp.zeros((images.shape[0], *the_plan.probe_shape[1:]), images.dtype)
    holder = {}

    def scores_of(probe):
        propagating = propagate.Propagating(the_plan, probe)
        with taps.opened(propagating), around() if around is not None else contextlib.nullcontext():
            scores, target = target_scores(model, variables, images, targets)
        holder["moves"] = propagating.moves(probe)
        return scores, target

    scores, vjp, target = jax.vjp(scores_of, probe, has_aux=True)
    (relevance,) = jax.vmap(vjp, out_axes=1)(column_cotangents(scores))
    if holder["moves"]:  # a channel-first model: its first layer's input is (B, C, *s)
        relevance = jnp.moveaxis(relevance, 2, -1)
    return not_differentiable(maps.float32_or_wider(relevance), method), scores, target


@register("lrp", score=None)
def lrp(model, variables, images, targets=None, *, composite="EpsilonPlus") -> Explanation:
    """LRP maps of `targets` (B,) or (B, K) (None: top-1) at input resolution; see the module doc.
    images: float ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)``
    float32 in [0, 1] and the relevance ``(B, [K,] *s, C)`` as `gradients`."""
    images = maps.float32_or_wider(images)
    relevance, scores, target = input_relevance(model, variables, images, targets, composite)
    return Explanation(maps.finish(relevance.sum(-1), images.shape[1:-1], relu=True), scores, target, None, relevance)

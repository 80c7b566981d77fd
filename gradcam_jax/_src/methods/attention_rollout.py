"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

Per block, the attention probabilities are fused over heads (mean by default; "max", "min"), the
lowest `discard` fraction of the fused matrix's entries set to 0, the residual connection added as
`0.5 A + 0.5 I`, and the rows renormalised; the product over blocks, from first to last, says how
much each token's input reaches each token's output. The map is the class token's row over the
patches (`transformer.final_row`; a MAP head's probe row where the model pools with one). Class-agnostic: every target gets the same map; the scores are
still the targets' own. One forward pass, no gradient.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import attention
from gradcam_jax._src.gradients import resolved_scores
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.transformer import final_row, on_grid, token_setup

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(probabilities: jax.Array, how: str) -> jax.Array:
    """(B, heads, N, N) -> (B, N, N) by the mean, max or min over heads."""
    return {"mean": jnp.mean, "max": jnp.max, "min": jnp.min}[how](probabilities, axis=1)


def discard_lowest(fused: jax.Array, fraction: float) -> jax.Array:
    """(B, N, N) with the lowest `fraction` of each matrix's entries set to 0."""
    flat = fused.reshape(fused.shape[0], -1)
    drop = int(flat.shape[1] * fraction)
    if drop == 0:
        return fused
    ranks = jnp.argsort(jnp.argsort(flat, axis=1), axis=1)
    return jnp.where(ranks < drop, 0.0, flat).reshape(fused.shape)


def rollout_step(probabilities: jax.Array, head_fusion: str = "mean", discard: float = 0.0) -> jax.Array:
    """(B, N, N): one block's rollout matrix from its (B, heads, N, N) probabilities (the product of
    the blocks' matrices, first block first, is the rollout; `transformer.final_row` reads its row)."""
    a = discard_lowest(fuse_heads(maps.float32_or_wider(probabilities), head_fusion), discard)
    a = 0.5 * a + 0.5 * jnp.eye(a.shape[-1], dtype=a.dtype)
    return a / a.sum(axis=-1, keepdims=True)


@register("attention_rollout")
def attention_rollout(
    model,
    variables,
    images,
    targets=None,
    *,
    blocks: Iterable[str] | None = None,
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
    head_fusion: str = "mean",
    discard: float = 0.0,
) -> Explanation:
    """Attention-rollout maps of a ViT; see the module doc. The same map for every target (B,) or
    (B, K) (None: top-1), whose scores (logits by default) come with it.

    blocks: paths of the transformer blocks (default: every block holding a self-attention
    submodule, in call order); prefix_tokens: class and register tokens ahead of the patches;
    grid: (h, w) of the patches (both None: inferred from the patch embedding, else from the token
    count and the image's aspect ratio; see `transformer`). A MAP-pooled model's map is its probe's
    attention row times the rollout.
    Returns an `Explanation` with maps (B, [K,] H, W) float32 in [0, 1].
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head_fusion {head_fusion!r}; choose from {', '.join(HEAD_FUSIONS)}")
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1); got {discard}")
    setup = token_setup(model, variables, images, blocks, prefix_tokens, grid)
    outputs, tapped = attention.forward(model, variables, images)
    scores, resolved = resolved_scores(targets, outputs, images.shape[0])
    steps = [rollout_step(tapped.probabilities[b.attention], head_fusion, discard) for b in setup.blocks]
    pool = None
    if setup.pool is not None:  # the probe's attention, fused over heads and probes: (B, N)
        pool = fuse_heads(maps.float32_or_wider(tapped.probabilities[setup.pool]), head_fusion).mean(axis=-2)
    raw = on_grid(final_row(steps, setup, pool), setup)  # (B, h, w)
    raw = jnp.broadcast_to(raw[:, None], (raw.shape[0], scores.shape[1], *raw.shape[1:]))
    return Explanation(maps.finish(raw, images.shape[1:-1]), scores, resolved)

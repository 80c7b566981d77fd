"""Generic attention relevancy (Chefer, Gur & Wolf, "Generic Attention-model Explainability for
Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021), self-attention rule.

    R = I;  for each block in order:  R <- R + mean_h[(dA ⊙ A)^+] R

A (B, heads, N, N) are the block's attention probabilities and dA the gradient of the target score
with respect to them (`adapters.attention`: a zero perturbation of A, differentiated). The map is
the class token's row of R over the patches (`transformer.final_row`; a MAP-pooled model: the
probe's row mean_h[(dA ⊙ A)^+] of its pooling attention, times R). One forward pass and one
backward pass per target column; any target function works (e.g. `targets.similarity` for an
image-text match), class targets are scored by their logit by default.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import attention
from gradcam_jax._src.gradients import column_vjp, resolved_scores
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.transformer import TokenSetup, final_row, on_grid, token_setup


def attention_gradients(model, variables, images, target, setup: TokenSetup):
    """({attention path: (B, heads, N, N) probabilities}, {path: (B, K, heads, N, N) gradients of
    each target column w.r.t. them}, (B, K) scores, the target with top-1 resolved) for the chosen
    blocks: one forward pass, one vmapped backward pass per column."""

    def all_scores(deltas):
        outputs, tapped = attention.forward(model, variables, images, deltas)
        scores, resolved = resolved_scores(target, outputs, images.shape[0])
        return scores, ({p: tapped.probabilities[p] for p in deltas}, resolved)

    scores, gradients, (probabilities, resolved) = column_vjp(all_scores, attention.zeros_like(setup.shapes))
    return probabilities, gradients, scores, resolved


@register("generic_attention")
def generic_attention(
    model,
    variables,
    images,
    targets=None,
    *,
    blocks: Iterable[str] | None = None,
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Explanation:
    """Chefer et al.'s relevancy maps of `targets` (B,) or (B, K) (None: top-1; class targets scored
    by their logit unless `score="softmax"`; any target function) for a ViT; see the module doc.

    blocks, prefix_tokens, grid: as `attention_rollout`. Returns an `Explanation` with maps
    (B, [K,] H, W) float32 in [0, 1].
    """
    setup = token_setup(model, variables, images, blocks, prefix_tokens, grid)
    probabilities, gradients, scores, resolved = attention_gradients(model, variables, images, targets, setup)
    steps = []  # per block I + mean_h[(dA ⊙ A)^+]: R is their product, first block first
    for block in setup.blocks:
        a = maps.float32_or_wider(probabilities[block.attention])[:, None]  # (B, 1, heads, N, N)
        cam = jax.nn.relu(maps.float32_or_wider(gradients[block.attention]) * a).mean(axis=2)
        steps.append(cam + jnp.eye(cam.shape[-1], dtype=cam.dtype))
    pool = None
    if setup.pool is not None:  # the probe's row: mean over heads and probes of (dA ⊙ A)^+, (B, K, N)
        a = maps.float32_or_wider(probabilities[setup.pool])[:, None]
        pool = jax.nn.relu(maps.float32_or_wider(gradients[setup.pool]) * a).mean(axis=(2, 3))
    raw = on_grid(final_row(steps, setup, pool), setup)  # (B, K, h, w)
    return Explanation(maps.finish(raw, images.shape[1:-1]), scores, resolved)

"""AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
Transformers", ICML 2024), as lxt 2.1 computes it: LRP through a transformer, with rules for what
zennit's composites do not cover (`gradcam_jax._src.relevance.transformer`): the softmax (its
gradient), the products q k^T and A v (uniform: each factor half the relevance), LayerNorm and RMSNorm
(the std a constant), GELU and SiLU (identity); linear layers take the composite's rule (epsilon by
default, lxt's gradient), as in `lrp`.

    relevance  (B, [K,] H, W, C)   at the first linear layer's input (the patch embedding's: pixels)
    map        = normalise( relu( sum_c relevance ) )

Where the first linear layer reads tokens (B, N, D) (patches flattened before a Dense embedding),
the relevance is summed over D and laid out on the token grid with the transformer methods' rule
(`prefix_tokens`, `grid`; `adapters.tokens.token_layout`), then upsampled. A patch embedding applied
channels first inside the model (an Equinox ViT's `Conv2d` on (C, H, W)) is read as such.

The explained score is the logit, the relevance at the output its value (lxt's and captum's
convention); one forward pass and one backward pass per target column. `cp_lrp` is the same with the
attention probabilities held constant. A model with no attention to read, or an attention submodule
that runs unread (a custom `attention_fn`), is a one-line ValueError before any work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import tokens
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.lrp import input_relevance
from gradcam_jax._src.relevance import transformer


def relevance_map(relevance: jax.Array, image_shape, prefix_tokens=None, grid=None) -> tuple[jax.Array, jax.Array]:
    """((B, K, H, W) maps, (B, K, ...) relevance as kept) from the first layer's input relevance
    (B, K, *s, C) of (B, H, W, C) images: pixels (s = (H, W)), pixels channels first ((C, H, W),
    moved last), or tokens (s = (N,): summed over features, laid out on the token grid)."""
    size, channels = tuple(image_shape[1:3]), image_shape[3]
    inner = tuple(relevance.shape[2:])
    if inner == (channels, *size) and inner != (*size, channels):
        relevance = jnp.moveaxis(relevance, 2, -1)
        inner = tuple(relevance.shape[2:])
    if len(inner) == 2:  # tokens (N, D)
        prefix, (h, w) = tokens.token_layout(inner[0], size, prefix_tokens, grid)
        raw = relevance.sum(-1)[..., prefix:].reshape(*relevance.shape[:2], h, w)
    else:
        raw = relevance.sum(-1)
    return maps.finish(raw, size, relu=True), relevance


def transformer_lrp(model, variables, images, targets, composite, prefix_tokens, grid, conservative, method):
    """The body of `attn_lrp` (`conservative` False) and `cp_lrp` (True)."""
    images = maps.float32_or_wider(images)
    transformer.check_attention(model, variables, images, method)
    around = functools.partial(transformer.transformer_rules, model, conservative)
    relevance, scores, target = input_relevance(
        model, variables, images, targets, transformer.with_transformer_rules(composite), method, around
    )
    found, relevance = relevance_map(relevance, images.shape, prefix_tokens, grid)
    return Explanation(found, scores, target, None, relevance)


@register("attn_lrp", score=None)
def attn_lrp(
    model,
    variables,
    images,
    targets=None,
    *,
    composite="Epsilon",
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Explanation:
    """AttnLRP maps of `targets` (B,) or (B, K) (None: top-1) for a transformer; see the module doc.

    composite: the linear layers' rules, a name ("Epsilon", the default: lxt's gradient; "EpsilonPlus",
    "EpsilonGammaBox", ...) or a `Composite` (`gradcam_jax.relevance`); LayerNorms get `DetachedStd`
    unless it sets `norm`. prefix_tokens, grid: the token layout, where the first linear layer reads
    tokens (as `attention_rollout`). Returns an `Explanation` with map (B, [K,] H, W) float32 in
    [0, 1] and the signed relevance at the first linear layer's input as `gradients`."""
    return transformer_lrp(model, variables, images, targets, composite, prefix_tokens, grid, False, "attn_lrp")

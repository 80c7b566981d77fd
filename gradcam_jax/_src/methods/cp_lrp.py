"""CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through Conservative Propagation",
ICML 2022), as lxt 2.1 computes it (its torchvision ViT map): `attn_lrp`'s rules outside the
attention (LayerNorm with the std a constant, identity on GELU, the composite's rule on linear
layers), and inside it the attention probabilities held constant: no relevance reaches the queries
and keys, and the attention passes the values' relevance on as a fixed linear map. Conservative
where AttnLRP is not (the softmax's rule leaks relevance into its bias), and lxt's choice for ViTs
with gamma on the linear layers.

    relevance  (B, [K,] H, W, C)   at the first linear layer's input
    map        = normalise( relu( sum_c relevance ) )

The same options, outputs, costs and errors as `attn_lrp`.
"""

from __future__ import annotations

from gradcam_jax._src.methods.attn_lrp import transformer_lrp
from gradcam_jax._src.methods.base import Explanation, register


@register("cp_lrp", score=None)
def cp_lrp(
    model,
    variables,
    images,
    targets=None,
    *,
    composite="Epsilon",
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Explanation:
    """CP-LRP maps of `targets` (B,) or (B, K) (None: top-1) for a transformer; see the module doc and
    `attn_lrp` for the options. Returns an `Explanation` with map (B, [K,] H, W) float32 in [0, 1] and
    the signed relevance at the first linear layer's input as `gradients`."""
    return transformer_lrp(model, variables, images, targets, composite, prefix_tokens, grid, True, "cp_lrp")

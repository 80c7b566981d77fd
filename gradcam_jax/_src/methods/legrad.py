"""LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature
Formation Sensitivity", 2024), as torchcam 0.5 defines it.

For each block l, the target score of that block's output tokens, `s_l = target(head(variables,
tokens_l))`, is differentiated with respect to block l's attention probabilities A_l (B, heads, N, N);
the gradient goes through a ReLU and is averaged over heads and queries, and the prefix keys are
dropped; the blocks' maps are averaged. The attention values themselves are not multiplied in.

`head(variables, tokens) -> logits` maps a block's tokens (B, N, C) to the model's logits (B, classes):
the model's final norm and classifier, applied to any block's tokens. torchcam's for a torchvision
ViT is `heads(ln(tokens.mean(1)))`. For a linen ViT with submodules `norm` and `head`:

    def head(variables, tokens):
        return model.apply(variables, tokens, method=lambda m, t: m.head(m.norm(t.mean(axis=1))))

For an NNX ViT split as `(graphdef, state)`: `nnx.merge(graphdef, state)`, then the same two
submodules. Pass a module-level function (it is a static argument of the jitted method).

Cost: one forward pass and one backward pass per target column. Each block's output goes on through
the model without gradient (`adapters.attention`'s `detach`), so one backward pass of the summed
block scores gives every block the gradient of its own score only. The price: unlike the other
methods, LeGrad's maps cannot be differentiated with respect to the weights or the images (the
cut also hides later blocks' dependence on earlier ones from an outer `jax.grad`); use
`generic_attention` inside a training loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src import targets as targets_lib
from gradcam_jax._src.adapters import attention
from gradcam_jax._src.gradients import column_vjp, resolved_scores
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.transformer import on_grid, token_setup


def check_head(head: Callable, variables, tokens: jax.ShapeDtypeStruct, classes: int | None) -> None:
    """A clear error, before any FLOPs, for a `head` that does not map (B, N, C) tokens to (B, classes)."""
    if not callable(head):
        raise TypeError(f"head must be a function (variables, tokens) -> logits; got {type(head).__name__}")
    out = jax.eval_shape(head, variables, tokens)
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != tokens.shape[0] or (classes and shape[1] != classes):
        raise ValueError(
            f"head(variables, tokens {tuple(tokens.shape)}) must return logits (batch, classes)"
            f"{f' = ({tokens.shape[0]}, {classes})' if classes else ''}; got {shape}"
        )


@register("legrad")
def legrad(
    model,
    variables,
    images,
    targets=None,
    *,
    head: Callable,
    blocks: Iterable[str] | None = None,
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> Explanation:
    """LeGrad maps of `targets` (B,) or (B, K) (None: top-1; class targets scored by their logit
    unless `score="softmax"`) for a ViT; see the module doc.

    head: function (variables, tokens (B, N, C)) -> logits (B, classes), applied to each block's
    output. blocks, prefix_tokens, grid: as `attention_rollout`. Returns an `Explanation` with maps
    (B, [K,] H, W) float32 in [0, 1].
    """
    setup = token_setup(model, variables, images, blocks, prefix_tokens, grid)
    paths = [b.path for b in setup.blocks]
    for path in paths:
        if len(setup.layout.outputs[path].shape) != 3:
            raise ValueError(f"block {path!r} outputs {setup.layout.outputs[path].shape}, not tokens (B, N, C)")
    classes = getattr(targets_lib.logits_of(setup.layout.model_outputs), "shape", (None, None))[-1]
    check_head(head, variables, setup.layout.outputs[paths[0]], classes)

    def block_scores(deltas):
        outputs, tapped = attention.forward(model, variables, images, deltas, layers=paths, detach=paths)
        scores, resolved = resolved_scores(targets, outputs, images.shape[0])
        per_block = [targets_lib.columns(resolved(head(variables, tapped.outputs[p])), images.shape[0]) for p in paths]
        return jnp.stack(per_block).sum(axis=0), (scores, resolved)

    deltas = attention.zeros_like(setup.shapes)
    _, gradients, (scores, resolved) = column_vjp(block_scores, deltas)  # {path: (B, K, heads, N, N)}
    per_block = [
        on_grid(jax.nn.relu(maps.float32_or_wider(gradients[b.attention])).mean(axis=(2, 3)), setup)
        for b in setup.blocks
    ]
    raw = jnp.mean(jnp.stack(per_block), axis=0)  # (B, K, h, w)
    return Explanation(maps.finish(raw, images.shape[1:-1]), scores, resolved)

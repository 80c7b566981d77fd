"""LRP for transformers: AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
Propagation for Transformers", ICML 2024) and CP-LRP (Ali et al., "XAI for Transformers: Better
Explanations through Conservative Propagation", ICML 2022), with lxt 2.1's rules in its efficient
mode (gradient x input, the backward pass carrying g = R / a, as `rules` does everywhere):

| layer | AttnLRP | CP-LRP |
|---|---|---|
| Dense / Conv / the attention's projections | the composite's rule (default epsilon) | the same |
| LayerNorm, RMSNorm | std detached (`rules.DetachedStd`) | the same |
| GELU, SiLU (elementwise) | identity: g_x = y / x g_y (`rules.passed`) | the same |
| softmax | its gradient (AttnLRP's softmax rule) | no gradient (probabilities detached) |
| q k^T, A v | uniform: each factor half (`adapters.attention.RelevanceRules`) | A fixed: v gets all |
| residual sums, reshapes, token concat | gradient (proportional) | the same |
| other layers with parameters (position embeddings, class tokens, MAP probes) | gradient | the same |

Each piece sits where the library already reaches it: linear layers and norms through the LRP tap
(`propagate.Propagating`), the activations *functions* `jax.nn.gelu` / `flax.linen.gelu` / `silu`
swapped while the model is traced (`patching`, as guided backpropagation swaps ReLUs), and the
attention internals through the attention taps (`adapters.attention`). An attention submodule that
runs without its probabilities being read (a custom `attention_fn`, a fused kernel) is an error
before anything is computed, as is a model with no attention (use `lrp`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator

import flax.linen
import flax.linen.activation
import jax

from gradcam_jax._src import patching
from gradcam_jax._src.adapters import attention
from gradcam_jax._src.relevance import composites
from gradcam_jax._src.relevance import rules as R

ACTIVATIONS = ("gelu", "silu", "swish")  # elementwise activations model code calls by name


def activation_homes() -> list:
    """The modules whose activation functions model code calls: `jax.nn`, `flax.linen` (and its
    `activation` module), `flax.nnx` when loaded."""
    homes = [jax.nn, flax.linen, flax.linen.activation]
    if "flax.nnx" in sys.modules:
        homes.append(sys.modules["flax.nnx"])
    return homes


def identity_rule(previous: Callable) -> Callable:
    """An activation `previous` with the identity rule (lxt's `identity_rule_implicit`): its value,
    with the cotangent g_x = y / x * g_y, so its relevance reaches its input whole."""

    def activation(x, *args, **kwargs):
        return R.passed(x, previous(x, *args, **kwargs))

    return activation


@contextlib.contextmanager
def identity_activations() -> Iterator[None]:
    """Within this context, in this thread, the `ACTIVATIONS` of `activation_homes` carry the identity
    rule; restored on leaving. (Activations bound at import time, `from jax.nn import gelu`, or
    passed to a module as objects, as `eqx.nn.MLP(activation=...)` keeps them, keep their gradient.)"""
    patches = [
        (home, name, identity_rule) for home in activation_homes() for name in ACTIVATIONS if hasattr(home, name)
    ]
    with patching.all_patched(patches):
        yield


@contextlib.contextmanager
def transformer_rules(model, conservative: bool) -> Iterator[None]:
    """The activation and attention rules of AttnLRP (or CP-LRP: `conservative`) while `model` runs."""
    with identity_activations(), attention.relevance_rules(model, conservative):
        yield


def with_transformer_rules(composite: str | composites.Composite) -> composites.Composite:
    """`composite` (a name or a `Composite`; default "Epsilon") with `DetachedStd` on LayerNorms and
    RMSNorms, and the gradient on other layers with parameters (position embeddings, class tokens:
    lxt leaves them unpatched), unless it sets them itself."""
    resolved = composites.resolve(composite)
    return dataclasses.replace(resolved, norm=resolved.norm or R.DetachedStd(), other=resolved.other or R.Gradient())


def check_attention(model, variables, images, method: str) -> attention.AttentionLayout:
    """The model's `AttentionLayout` (one shape-only trace); one-line ValueError when it has no
    attention these rules can read, or an attention submodule that ran unread."""
    layout = attention.attention_layout(model, variables, images)
    if layout.unread:
        raise ValueError(
            f"{method} cannot read the attention of {', '.join(layout.unread)} (a custom attention_fn or a "
            f"fused kernel); it reads {attention.ATTENTION_MODULES}, each with its default attention function"
        )
    if not layout.probabilities:
        raise ValueError(
            f"{method}: the model has no attention to read ({attention.ATTENTION_MODULES}); "
            "for a model without attention use lrp"
        )
    return layout

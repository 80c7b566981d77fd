"""Guided backpropagation (Springenberg et al., ICLR-W 2015): the input gradient, computed with
every ReLU's backward pass letting through only positive gradients at positive inputs:

    forward  y = max(x, 0)        backward  dx = dy * [x > 0] * [dy > 0]

The guided ReLU is a `jax.custom_vjp`, swapped in only while these methods trace the model: the
ReLU *functions* `jax.nn.relu` and `flax.linen.relu` (and `flax.nnx.relu` when NNX is loaded) are
replaced for the duration of the trace, in the tracing thread only (`patching.patched`: code
running in other threads meanwhile, another explanation included, calls the ordinary ReLU), and
restored afterwards, so the model and every other method stay untouched. This catches ReLUs
written as `nn.relu(x)` / `jax.nn.relu(x)` in any module — function-style or wrapped in a module
(GoogLeNet's `ReLU`), any depth, any model.

Limits, checked or documented:
- ReLUs reached some other way are not guided: `from jax.nn import relu` bound at import time,
  `jnp.maximum(x, 0)`, or ReLU inside a function the model `jax.jit`s itself (its cached trace).
  If *no* ReLU is swapped, the method raises instead of silently returning plain gradients.

The map is the channel reduction of the guided gradient (`reduce`, default "abs_max"), rescaled
to [0, 1]; `Explanation.gradients` holds the guided gradients `(B, [K,] *spatial, C)`. Guided
backpropagation is known to be class- and model-insensitive (Adebayo et al. 2018; see
`gradcam_jax._src.metrics.model_randomisation`): `guided_grad_cam` multiplies in a class map.

Differentiable with respect to `variables` and `images`, under `jit`: jax.grad differentiates the
guided backward pass as written (the custom rule serves only that inner pass; the forward ReLUs
keep their own derivative), so it is the exact derivative of this map — but the map is not the
model's input gradient: for a "Right for the Right Reasons" penalty use
`training.input_gradient_penalty`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import flax.linen
import jax
import jax.numpy as jnp

from gradcam_jax._src import maps, patching
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import InputGradients, input_gradients, reduce_channels


@jax.custom_vjp
def guided_relu(x):
    return jnp.maximum(x, 0)


def _guided_relu_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_relu_bwd(x, dy):
    return (jnp.where((x > 0) & (dy > 0), dy, jnp.zeros_like(dy)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def relu_homes() -> list:
    """The modules whose `relu` attribute model code calls."""
    homes = [jax.nn, flax.linen, flax.linen.activation]
    if "flax.nnx" in sys.modules:
        homes.append(sys.modules["flax.nnx"])
    relu = patching.original(jax.nn, "relu")
    return [h for h in homes if h is jax.nn or patching.original(h, "relu") is relu]


@contextlib.contextmanager
def swapped_relus(relu: Callable[[jax.Array], jax.Array], method: str) -> Iterator[None]:
    """Within this context, in this thread, `jax.nn.relu` / `flax.linen.relu` (/ `flax.nnx.relu`)
    are `relu`; they are restored on leaving. ValueError on leaving if the body traced no call of
    them (a model whose ReLUs `method` cannot reach: it would silently get plain gradients)."""
    calls: list = []

    def counted(x):
        calls.append(1)
        return relu(x)

    with patching.all_patched((home, "relu", patching.replaced(counted)) for home in relu_homes()):
        yield
    if not calls:
        raise ValueError(
            f"{method} found no ReLU to swap: the model must call jax.nn.relu or "
            "flax.linen.relu (through the module attribute, not a name imported earlier)"
        )


def guided_input_gradients(model, variables, images, target) -> InputGradients:
    """`common.input_gradients` with guided ReLUs; ValueError if the model called no swappable ReLU."""
    with swapped_relus(guided_relu, "guided backpropagation"):
        return input_gradients(model, variables, images, target)


@register("guided_backprop", score="logit")
def guided_backprop(model, variables, images, targets=None, *, reduce: str = "abs_max") -> Explanation:
    """Guided-backpropagation maps of `targets` (B,) or (B, K) (None: top-1) at input resolution.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1] and the guided gradients."""
    g = guided_input_gradients(model, variables, images, targets)
    fine = maps.rescale(reduce_channels(g.gradients, reduce), images.ndim - 2)
    return Explanation(fine, g.scores, g.target, None, g.gradients)

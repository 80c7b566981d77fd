"""Flax NNX models, explained with the same functions as linen ones.

An NNX model is passed as its split form, `model, variables = nnx.split(module)`: the `GraphDef`
is hashable (a static argument under `jit`, equal for equal architectures) and the `State` is a
pytree of arrays, exactly like linen's `(model, variables)`. Call `module.eval()` before splitting
so dropout and batch norm run in inference mode.

    graphdef, state = nnx.split(module)
    grad_cam(graphdef, state, images, layer="blocks/1/conv")

Taps: NNX has no `intercept_methods`, so while a merged copy of the model runs, its submodules'
calls are hooked by `adapters.hooks` and handed, with their attribute paths
(`"blocks/1/conv"`), to the open `taps.tap` contexts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import errors as flax_errors
from flax import nnx

from gradcam_jax._src.adapters.hooks import hooked_calls
from gradcam_jax._src.adapters.linen import batch_norm_bias


def is_graphdef(model) -> bool:
    """Whether `model` is an NNX `GraphDef` (from `nnx.split`) rather than a linen Module."""
    return isinstance(model, nnx.GraphDef)


def check_not_module(model) -> None:
    """A clear TypeError for an unsplit NNX module: its weights would be baked into the jit."""
    if isinstance(model, nnx.Module):
        raise TypeError(
            f"got the NNX module {type(model).__name__} itself; pass it split: "
            "`graphdef, state = nnx.split(module)`, then `(graphdef, state, images, ...)`"
        )


def call(graphdef, state, images, hooks: Sequence[Callable]):
    """Merge `graphdef` and `state`, call the module on `images`, and return what it returns.

    Every submodule output is passed through each `hook(path, output) -> output` in order
    (`taps.Tapped.see`); with no hooks the model runs untouched. A module left in training mode
    (batch statistics updated in the call) is a ValueError saying to call `.eval()`.
    """
    module = nnx.merge(graphdef, state)
    # `iter_graph` (every node, Modules among them) rather than `iter_modules`: the same in every flax >= 0.10
    named = [("/".join(map(str, path)), m) for path, m in nnx.iter_graph(module) if path and isinstance(m, nnx.Module)]
    before = jax.tree.leaves(nnx.state(module))
    try:
        with hooked_calls(named, hooks):
            out = module(images)
    except flax_errors.TraceContextError as err:
        raise ValueError(TRAINING_MODE) from err
    if any(a is not b for a, b in zip(before, jax.tree.leaves(nnx.state(module)))):
        raise ValueError(TRAINING_MODE)
    return out


TRAINING_MODE = (
    "the NNX model updates its state when called (training mode: BatchNorm statistics, dropout); "
    "call `module.eval()` before `nnx.split(module)`"
)


def bias_layers(graphdef, state) -> dict[str, jax.Array]:
    """{path: bias (C,)} of every `nnx.Conv` with a bias and every `nnx.BatchNorm` with a bias over
    the last axis (its folded bias, `linen.batch_norm_bias`, from the running statistics) in the
    model, by attribute path."""
    found: dict[str, jax.Array] = {}
    for path, m in nnx.iter_graph(nnx.merge(graphdef, state)):
        name = "/".join(map(str, path))
        if path and isinstance(m, nnx.Conv) and m.bias is not None:
            found[name] = m.bias[...]
        elif path and isinstance(m, nnx.BatchNorm) and m.bias is not None and m.axis in (-1, (-1,)):
            scale = m.scale[...] if m.scale is not None else 1.0
            found[name] = batch_norm_bias(m.bias[...], scale, m.mean[...], m.var[...], m.epsilon)
    return found

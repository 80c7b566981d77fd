"""Equinox models, explained with the same functions as linen and NNX ones (`pip install gradcam-jax[equinox]`).

An Equinox model is passed partitioned, mirroring NNX: the static half is hashable (a static
argument under `jit`) and the arrays are traced:

    params, static = eqx.partition(net, eqx.is_array)
    grad_cam(static, params, images, layer="features/conv3")

`eqx.combine(params, static)` is called on the library's NHWC batch, so the model takes (B, H, W, C)
images; a per-image CHW model needs a few lines of wrapper (see docs/your-model.md). A model with
state (BatchNorm: `net, state = eqx.nn.make_with_state(Net)(key)`, `__call__(x, state) -> (y, state)`)
takes `(params, state)` as variables; the state is read, never updated (the returned one is
dropped). Every model runs in inference mode (`eqx.nn.inference_mode`: BatchNorm's running
statistics, no dropout). Submodules are
tapped by their attribute path (`"conv2"`, `"layers/2"`, `"features/conv3"`), also when they run
under `jax.vmap` one image at a time. Their outputs are taken as channel-first ((C, h, w) per
image, (B, C, h, w) per batch) unless the model is wrapped in `gradcam_jax.channels_last`.
Equinox is imported only by code that already holds an Equinox model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from gradcam_jax._src.adapters.hooks import hooked_calls


def is_module(model) -> bool:
    """Whether `model` is an Equinox module (without importing equinox when nobody has)."""
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


def check_partitioned(static) -> None:
    """A clear TypeError for a whole Equinox model passed as `model`: its arrays would be constants."""
    if any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree.leaves(static)):
        raise TypeError(
            f"got the Equinox model {type(static).__name__} with its arrays; pass it partitioned: "
            "`params, static = eqx.partition(net, eqx.is_array)`, then `(static, params, images, ...)`"
        )


def is_stateful(static) -> bool:
    """Whether the model holds state (an `eqx.nn.StateIndex`, e.g. in a BatchNorm)."""
    index = sys.modules["equinox"].nn.StateIndex
    return any(isinstance(x, index) for x in jax.tree.leaves(static, is_leaf=lambda x: isinstance(x, index)))


def check_variables(static, variables) -> None:
    """A clear TypeError for a model with state passed without its `eqx.nn.State`, or with
    something else in its place."""
    eqx = sys.modules["equinox"]
    if isinstance(variables, tuple) and len(variables) == 2:
        if not isinstance(variables[1], eqx.nn.State):
            raise TypeError(
                "variables of an Equinox model with state are (params, state), the state an eqx.nn.State "
                f"(from eqx.nn.make_with_state); got a {type(variables[1]).__name__} as the state"
            )
    elif is_stateful(static):
        raise TypeError(
            f"the Equinox model {type(static).__name__} has state (BatchNorm or another eqx.nn.StateIndex); "
            "pass (params, state) as variables: `net, state = eqx.nn.make_with_state(Net)(...)`"
        )


def submodules(module, prefix: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """(path, submodule) for every Equinox module below `module`, by attribute path ("layers/2")."""
    eqx = sys.modules["equinox"]
    found = []
    children, _ = jax.tree_util.tree_flatten_with_path(
        module, is_leaf=lambda x: x is not module and isinstance(x, eqx.Module)
    )
    for key_path, child in children:
        if isinstance(child, eqx.Module):
            path = (*prefix, *(key_name(k) for k in key_path))
            found += [("/".join(path), child), *submodules(child, path)]
    return found


def key_name(key) -> str:
    for attribute in ("name", "idx", "key"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def call(static, variables, images, hooks: Sequence[Callable]):
    """`eqx.combine(params, static)` in inference mode, called on `images` (and the state, for
    `(params, state)` variables: its output, the new state dropped); every submodule output passed
    through `hooks`."""
    check_partitioned(static)
    eqx = sys.modules["equinox"]
    params, state = variables if isinstance(variables, tuple) else (variables, None)
    net = eqx.nn.inference_mode(eqx.combine(params, static))
    with hooked_calls(submodules(net), hooks):
        if state is None:
            return net(images)
        returned = net(images, state)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise TypeError(
            f"an Equinox model called with state must return (output, state); got {type(returned).__name__}"
        )
    return returned[0]


def bias_layers(static, variables) -> dict[str, jax.Array]:
    """{path: bias (C,)} of every `eqx.nn.Conv` (Conv1d/2d/3d) with a bias in the model, by attribute
    path. Batch norms are not read: Equinox keeps their running statistics in a separate State."""
    eqx = sys.modules["equinox"]
    params = variables[0] if isinstance(variables, tuple) else variables
    net = eqx.combine(params, static)
    found: dict[str, jax.Array] = {}
    for path, module in submodules(net):
        conv: Any = module  # an eqx.nn.Conv when the test below holds
        if isinstance(conv, eqx.nn.Conv) and conv.use_bias:
            found[path] = conv.bias.reshape(-1)  # stored (C, 1, ...) to broadcast over the spatial axes
    return found

"""Equinox models, explained with the same functions as linen and NNX ones (`pip install gradcam-jax[equinox]`).

An Equinox model is passed partitioned, mirroring NNX: the static half is hashable (a static
argument under `jit`) and the arrays are traced:

    params, static = eqx.partition(net, eqx.is_array)
    grad_cam(static, params, images, layer="features/conv3")

`eqx.combine(params, static)` is called on the library's NHWC batch, so the model takes (B, H, W, C)
images; a per-image CHW model needs a few lines of wrapper (see docs/your-model.md). Submodules are
tapped by their attribute path (`"conv2"`, `"layers/2"`, `"features/conv3"`), also when they run
under `jax.vmap` one image at a time. Their outputs are taken as channel-first ((C, h, w) per
image, (B, C, h, w) per batch) unless the model is wrapped in `gradcam_jax.channels_last`.
Equinox is imported only by code that already holds an Equinox model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import jax
import numpy as np

from gradcam_jax.adapters.hooks import hooked_calls


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


def call(static, params, images, hooks: Sequence[Callable]):
    """`eqx.combine(params, static)(images)`, every submodule output passed through `hooks`."""
    check_partitioned(static)
    net = sys.modules["equinox"].combine(params, static)
    with hooked_calls(submodules(net), hooks):
        return net(images)

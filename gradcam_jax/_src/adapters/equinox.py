"""Equinox models, explained with the same functions as linen and NNX ones (`pip install gradcam-jax[equinox]`).

An Equinox model is passed partitioned, mirroring NNX: the static half is hashable (a static
argument under `jit`) and the arrays are traced:

    params, static = eqx.partition(net, eqx.is_array)
    grad_cam(static, params, images, layer="features/conv3")

A model takes either the library's NHWC batch (B, H, W, C) or, as Equinox users write it, one
channel-first example (C, H, W) (`(C, L)`, `(C, D, H, W)`), the caller vmapping it. Rule: the model is
called on the batch if it accepts it (`jax.eval_shape`, nothing computed), else vmapped over
channel-first examples; `gradcam_jax.per_example(static, True/False)` says which. A model with
state (BatchNorm: `net, state = eqx.nn.make_with_state(Net)(key)`, `__call__(x, state) -> (y, state)`)
takes `(params, state)` as variables; the state is read, never updated (the returned one is
dropped); a submodule returning `(y, state)` (a BatchNorm, a residual block) is tapped at `y`.
Every model runs in inference mode (`eqx.nn.inference_mode`: BatchNorm's running
statistics, no dropout), and a model whose `__call__` takes an `inference` argument (the Equinox
convention: `eqx.nn.Dropout`, equimo's models, which otherwise ask for a dropout key) is called with
`inference=True`. Submodules are
tapped by their attribute path (`"conv2"`, `"layers/2"`, `"features/conv3"`), also when they run
under `jax.vmap` one image at a time. Their outputs are taken as channel-first ((C, h, w) per
image, (B, C, h, w) per batch) unless the model is wrapped in `gradcam_jax.channels_last`.
Equinox is imported only by code that already holds an Equinox model.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
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


def check_hashable(static) -> None:
    """A one-line TypeError for a model that cannot be a static argument of `jit`: a `list`, `dict` or
    `set` field (the usual cause: blocks held in a list), naming the field and the fix."""
    try:
        hash(static)
        return
    except TypeError:
        pass
    for path, value in unhashable_fields(static):
        kind = type(value).__name__
        fix = "a tuple: `self.blocks = tuple(...)`" if kind == "list" else "a tuple of pairs, or separate fields"
        raise TypeError(
            f"the Equinox model {type(static).__name__} holds a {kind} in its field {path!r}, which makes its "
            f"static half unhashable, so it cannot be a static argument of jit; make it {fix}"
        )
    raise TypeError(
        f"the static half of the Equinox model {type(static).__name__} is unhashable; pass a hashable model"
    )


def unhashable_fields(module, prefix: str = "") -> list[tuple[str, object]]:
    """(attribute path, value) of every list / dict / set field in `module` and its submodules."""
    eqx = sys.modules["equinox"]
    found = []
    for name, value in vars(module).items() if hasattr(module, "__dict__") else ():
        path = f"{prefix}{name}"
        if isinstance(value, (list, dict, set)):
            found.append((path, value))
        children = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        for i, child in enumerate(children):
            if isinstance(child, eqx.Module):
                inner = f"{path}/{i}/" if child is not value else f"{path}/"
                found += unhashable_fields(child, inner)
    return found


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


def examples(images) -> jax.Array:
    """The NHWC batch as channel-first examples: (B, C, H, W) (any number of spatial axes)."""
    return jnp.moveaxis(images, -1, 1)


def takes_inference(net) -> bool:
    """Whether `net`'s `__call__` takes an `inference` argument by keyword (`__call__(x, key=None,
    inference=None)`, as `eqx.nn.Dropout` and equimo's models have it)."""
    try:
        parameter = inspect.signature(net).parameters.get("inference")
    except (TypeError, ValueError):  # no signature to read: called as it is
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


def run(net, state, images, per_example: bool):
    """`net` on `images` (with `state`: its output, the new state dropped), on the batch or vmapped
    over channel-first examples; with `inference=True` if it takes that argument (`takes_inference`)."""
    if takes_inference(net):
        net = functools.partial(net, inference=True)
    if per_example:
        if state is None:
            return jax.vmap(net)(examples(images))
        return jax.vmap(lambda x: output_of(net(x, state)), axis_name="batch")(examples(images))
    return net(images) if state is None else output_of(net(images, state))


def output_of(returned):
    """The output of a model called with state, `(output, state)`; TypeError for anything else."""
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise TypeError(
            f"an Equinox model called with state must return (output, state); got {type(returned).__name__}"
        )
    return returned[0]


def takes_examples(static, net, state, images) -> bool:
    """Whether `net` takes one channel-first example rather than the NHWC batch: it is called on the
    batch if that works (`jax.eval_shape`: traced, nothing computed), else per example; the first
    error is raised if neither does. Decided at each trace, not remembered: jit's own cache keeps the
    compiled program, so this runs once per compilation (`per_example` says it outright)."""
    spec = jax.ShapeDtypeStruct(images.shape, images.dtype)
    try:
        jax.eval_shape(lambda x: run(net, state, x, False), spec)
        return False
    except Exception as batched_error:  # noqa: BLE001 - any failure on the batch: try one example
        try:
            jax.eval_shape(lambda x: run(net, state, x, True), spec)
        except Exception:  # noqa: BLE001
            raise batched_error from None
        return True


def state_aware(hook: Callable) -> Callable:
    """`hook`, applied to `y` of a submodule returning `(y, state)` (an `eqx.nn.State`)."""
    eqx = sys.modules["equinox"]

    def see(path, out):
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], eqx.nn.State) and hasattr(out[0], "shape"):
            return hook(path, out[0]), out[1]
        return hook(path, out)

    return see


def call(static, variables, images, hooks: Sequence[Callable], per_example: bool | None = None):
    """`eqx.combine(params, static)` in inference mode, called on `images` (and the state, for
    `(params, state)` variables: its output, the new state dropped), or vmapped over channel-first
    examples (`per_example`; None: `takes_examples`); every submodule output passed through `hooks`."""
    check_partitioned(static)
    eqx = sys.modules["equinox"]
    params, state = variables if isinstance(variables, tuple) else (variables, None)
    net = eqx.nn.inference_mode(eqx.combine(params, static))
    if per_example is None:
        per_example = takes_examples(static, net, state, images)
    with hooked_calls(submodules(net), [state_aware(hook) for hook in hooks]):
        return run(net, state, images, per_example)


def not_default(static) -> set[str]:
    """Paths `layer=None` passes over: dropout and identity submodules (in inference mode they
    repeat their input, which may be an attention matrix) and strided 1x1 convolutions (projection
    shortcuts)."""
    eqx = sys.modules["equinox"]
    skipped = set()
    for path, module in submodules(static):
        conv: Any = module
        if isinstance(module, (eqx.nn.Dropout, eqx.nn.Identity)) or (
            isinstance(conv, eqx.nn.Conv) and all(k == 1 for k in conv.kernel_size) and any(s > 1 for s in conv.stride)
        ):
            skipped.add(path)
    return skipped


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

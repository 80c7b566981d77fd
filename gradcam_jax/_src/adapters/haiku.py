"""Haiku models, explained with the same functions as the others (`pip install gradcam-jax[haiku]`).

A Haiku model is the object `hk.transform(f)` or `hk.transform_with_state(f)` returns (or its
`apply`), with its parameters as variables, or `(params, state)` for a model with state:

    net = hk.transform_with_state(lambda x: hk.nets.ResNet18(1000)(x, is_training=False))
    grad_cam(net, (params, state), images, layer="res_net18/~/block_group_3")

It runs as `apply(params, None, images)` (`apply(params, state, None, images)`, the new state
dropped): no random key, so write the function in inference mode (`is_training=False`, no dropout).
Submodules are tapped by their Haiku names (`module.module_name`, `"res_net18/~/block_group_3"`),
through Haiku's own `hk.intercept_methods`, at the output of their `__call__`. A function that builds
Haiku modules but was not transformed is a TypeError that says to `hk.transform` it. Haiku is
imported only by code that already holds a Haiku model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

NOT_TRANSFORMED = (
    "the model builds Haiku modules but is not transformed: pass `hk.transform(f)` (or "
    "`hk.transform_with_state(f)` for a model with BatchNorm state) with its params (or (params, state)) "
    "as variables, f taking the images: e.g. `hk.transform_with_state(lambda x: net(x, is_training=False))`"
)


def is_model(model) -> bool:
    """Whether `model` is a transformed Haiku function (`hk.Transformed`, `hk.TransformedWithState`,
    or the `apply` of one), without importing haiku when nobody has."""
    hk = sys.modules.get("haiku")
    if hk is None:
        return False
    return isinstance(model, (hk.Transformed, hk.TransformedWithState)) or is_apply(model)


def is_apply(model) -> bool:
    """Whether `model` is the `apply` function of a transformed Haiku function."""
    return callable(model) and hasattr(model, "_original_fn") and getattr(model, "__name__", "") == "apply_fn"


def with_state(model, variables) -> bool:
    """Whether the model takes `(params, state)`: a `TransformedWithState`, or an `apply` given a pair."""
    hk = sys.modules["haiku"]
    if isinstance(model, hk.TransformedWithState):
        return True
    if isinstance(model, hk.Transformed):
        return False
    return isinstance(variables, tuple) and len(variables) == 2 and all(isinstance(v, Mapping) for v in variables)


def check_variables(model, variables) -> None:
    """A clear TypeError for variables that do not fit the model: a `TransformedWithState` needs
    `(params, state)`, a `Transformed` its params (a mapping)."""
    hk = sys.modules["haiku"]
    if isinstance(model, hk.TransformedWithState):
        if not (isinstance(variables, tuple) and len(variables) == 2):
            raise TypeError(
                "variables of a Haiku model transformed with state are (params, state), as its init returns; "
                f"got {type(variables).__name__}"
            )
    elif isinstance(model, hk.Transformed) and not isinstance(variables, Mapping):
        raise TypeError(
            f"variables of a transformed Haiku model are its params (a mapping); got {type(variables).__name__}"
        )


def interceptor(hooks: Sequence[Callable]) -> Callable:
    """A Haiku method interceptor passing each module's `__call__` output, by its name, through `hooks`."""

    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        for hook in hooks:
            out = hook(context.module.module_name, out)
        return out

    return intercept


def call(model, variables, images, hooks: Sequence[Callable]):
    """The transformed function's output on `images`, every module's output passed through `hooks`."""
    hk = sys.modules["haiku"]
    apply = model if is_apply(model) else model.apply
    with hk.intercept_methods(interceptor(hooks)):
        if with_state(model, variables):
            params, state = variables
            return apply(params, state, None, images)[0]
        return apply(variables, None, images)


def not_transformed(err: BaseException) -> bool:
    """Whether `err` is Haiku's complaint about a module built outside `hk.transform`."""
    return (
        "haiku" in sys.modules
        and isinstance(err, ValueError)
        and "must be initialized inside an `hk.transform`" in str(err)
    )

"""Flax linen models, and plain functions that call linen modules inside them.

Linen has a public hook for exactly this: `nn.intercept_methods` wraps every submodule's method
calls while `model.apply` runs. Each `taps.tap` context installs one interceptor for as long as it
is open, which sees a submodule's `__call__` output with the submodule's path
(`"backbone/stage3/block1"`) and may record it and add a perturbation. So linen submodules inside a
plain function `(variables, images) -> outputs` are tapped by their paths too, and a linen model may
open a tap inside its own `__call__` (GoogLeNet's `layers=`).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn


def is_module(model) -> bool:
    """Whether `model` is a linen Module."""
    return isinstance(model, nn.Module)


def interceptor(hook: Callable) -> Callable:
    """A linen interceptor passing each submodule's `__call__` output, with its path, to `hook(path, out)`."""

    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__" or not context.module.path:
            return out
        return hook("/".join(context.module.path), out)

    return intercept


def intercepted(hook: Callable):
    """A context in which every linen submodule's `__call__` output passes through `hook(path, out)`."""
    return nn.intercept_methods(interceptor(hook))


def call(model, variables, images):
    """`model.apply(variables, images)` for a linen Module, `model(variables, images)` for a function."""
    return model.apply(variables, images) if is_module(model) else model(variables, images)

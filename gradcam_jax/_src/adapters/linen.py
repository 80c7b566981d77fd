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
import jax
import jax.numpy as jnp

from gradcam_jax._src.adapters import hooks, lifted


def is_module(model) -> bool:
    """Whether `model` is a linen Module."""
    return isinstance(model, nn.Module)


def interceptor(hook: Callable) -> Callable:
    """A linen interceptor passing each submodule's `__call__` output, with its path, to `hook(path, out)`."""

    def intercept(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not context.module.path:
            return next_fun(*args, **kwargs)
        path = lifted.iteration_path("/".join(context.module.path))  # before its submodules: see `lifted`
        if lifted.hidden(path):  # inside an nn.vmap that runs whole
            return next_fun(*args, **kwargs)
        out = next_fun(*args, **kwargs)
        with hooks.seen(hooks.Call(path, context.module, tuple(args))):
            return hook(path, out)

    return intercept


def intercepted(hook: Callable):
    """A context in which every linen submodule's `__call__` output passes through `hook(path, out)`."""
    return nn.intercept_methods(interceptor(hook))


def call(model, variables, images):
    """`model.apply(variables, images)` for a linen Module, `model(variables, images)` for a function."""
    return model.apply(variables, images) if is_module(model) else model(variables, images)


def batch_norm_bias(bias, scale, mean, var, epsilon: float) -> jax.Array:
    """(C,) the bias a batch norm in inference mode adds, (x - mean) * scale / sqrt(var + eps) + bias
    = x * (...) + [bias - mean * scale / sqrt(var + eps)]: the bracket, as FullGrad folds it."""
    return bias - mean * scale / jnp.sqrt(var + epsilon)


def bias_layers(model, variables, images) -> dict[str, jax.Array]:
    """{path: bias (C,)} of every `nn.Conv` (1-D, 2-D or 3-D) with a bias and every `nn.BatchNorm`
    with a bias over the last axis (its folded bias, `batch_norm_bias`, from the running statistics)
    that `model` (a Module or a function calling linen modules) calls on `images`, in call order; the
    first call of a shared one."""
    found: dict[str, jax.Array] = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and module.path:
            path = "/".join(module.path)
            if isinstance(module, nn.Conv) and module.use_bias:
                found.setdefault(path, module.get_variable("params", "bias"))
            elif isinstance(module, nn.BatchNorm) and module.use_bias and module.axis in (-1, (-1,)):
                scale = module.get_variable("params", "scale") if module.use_scale else 1.0
                mean, var = (module.get_variable("batch_stats", name) for name in ("mean", "var"))
                bias = module.get_variable("params", "bias")
                found.setdefault(path, batch_norm_bias(bias, scale, mean, var, module.epsilon))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        call(model, variables, images)
    return found

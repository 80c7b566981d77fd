"""Flax NNX models, explained with the same functions as linen ones.

An NNX model is passed as its split form, `model, variables = nnx.split(module)`: the `GraphDef`
is hashable (a static argument under `jit`, equal for equal architectures) and the `State` is a
pytree of arrays, exactly like linen's `(model, variables)`. Call `module.eval()` before splitting
so dropout and batch norm run in inference mode.

    graphdef, state = nnx.split(module)
    grad_cam(graphdef, state, images, layer="blocks/1/conv")

Taps: NNX has no `intercept_methods`, so while a merged copy of the model runs, the `__call__` of
each submodule class is wrapped (as `nnx.capture(..., method_outputs=...)` does), restored right
after. The wrapper hands each submodule's output, with its attribute path (`"blocks/1/conv"`), to
the open `taps.tap` contexts, which record it and may add a perturbation. Only the merged copy's
submodules are tapped (by identity), and only the outermost call of a submodule (not its
`super().__call__`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from flax import nnx

# Classes are patched while one merged model runs; the lock keeps two threads tracing at once
# from restoring each other's wrappers.
_PATCH_LOCK = threading.RLock()


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
    (`taps.Tapped.see`); with no hooks the model runs untouched.
    """
    module = nnx.merge(graphdef, state)
    if not hooks:
        return module(images)
    paths = {id(m): "/".join(map(str, path)) for path, m in nnx.iter_modules(module) if path}
    classes = {type(m) for _, m in nnx.iter_modules(module) if instance_call(type(m)) is not None}
    running: set[int] = set()  # submodules inside their own call: super().__call__ is not a new output

    def watch(original):
        def watched(self, *args, **kwargs):
            key = id(self)
            if key not in paths or key in running:
                return original(self, *args, **kwargs)
            running.add(key)
            try:
                out = original(self, *args, **kwargs)
            finally:
                running.discard(key)
            for hook in hooks:
                out = hook(paths[key], out)
            return out

        return watched

    with _PATCH_LOCK:
        originals = {cls: (cls.__dict__.get("__call__"), instance_call(cls)) for cls in classes}
        try:
            for cls, (_, resolved) in originals.items():
                cls.__call__ = watch(resolved)
            return module(images)
        finally:
            for cls, (own, _) in originals.items():
                if own is None:
                    del cls.__call__
                else:
                    cls.__call__ = own


def instance_call(cls):
    """The `__call__` that instances of `cls` run (None if they are not callable), unpatched:
    `cls.__call__` itself would find the metaclass's for a class without one."""
    for base in cls.__mro__:
        if "__call__" in base.__dict__:
            return base.__dict__["__call__"]
    return None

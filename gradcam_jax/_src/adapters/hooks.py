"""Hooks on submodule calls for model libraries without linen's `intercept_methods` (NNX, Equinox).

While a model runs inside `hooked_calls`, the `__call__` of each submodule's class is wrapped (as
`nnx.capture(..., method_outputs=...)` does) and restored right after. The wrapper hands each
submodule's output, with its path (`"blocks/1/conv"`), to every `hook(path, output) -> output`
(`taps.Tapped.see`), which may record it and add a perturbation. Only the given submodule
instances are hooked (by identity), and only their outermost call (not a `super().__call__`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

# Classes are patched while one model runs; the lock keeps two threads tracing at once from
# restoring each other's wrappers.
_PATCH_LOCK = threading.RLock()


class _Running(threading.local):
    """The {id(submodule): path} maps of the `hooked_calls` contexts open in this thread."""

    def __init__(self):
        self.paths: list[dict[int, str]] = []


_running = _Running()


def path_of(module) -> str | None:
    """The path of `module` in the model running now under `hooked_calls` (None if it is not one of
    its submodules): how a hook on a submodule's inner workings (`adapters.attention`) names it."""
    for paths in reversed(_running.paths):
        if id(module) in paths:
            return paths[id(module)]
    return None


def instance_call(cls):
    """The `__call__` that instances of `cls` run (None if they are not callable), unpatched:
    `cls.__call__` itself would find the metaclass's for a class without one."""
    for base in cls.__mro__:
        if "__call__" in base.__dict__:
            return base.__dict__["__call__"]
    return None


@contextlib.contextmanager
def hooked_calls(named: Sequence[tuple[str, object]], hooks: Sequence[Callable]) -> Iterator[None]:
    """Within this context, a call of any submodule in `named` ((path, module) pairs) returns its
    output passed through each of `hooks` in order."""
    paths = {id(module): path for path, module in named}
    classes = {type(module) for _, module in named if instance_call(type(module)) is not None}
    running: set[int] = set()  # submodules inside their own call: super().__call__ is not a new output

    def watch(cls, original):
        def watched(self, *args, **kwargs):
            call = original.__get__(self, cls) if hasattr(original, "__get__") else original
            key = id(self)
            if key not in paths or key in running:
                return call(*args, **kwargs)
            running.add(key)
            try:
                out = call(*args, **kwargs)
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
                type.__setattr__(cls, "__call__", watch(cls, resolved))
            _running.paths.append(paths)
            yield
        finally:
            if _running.paths and _running.paths[-1] is paths:
                _running.paths.pop()
            for cls, (own, _) in originals.items():
                if own is None:
                    type.__delattr__(cls, "__call__")
                else:
                    type.__setattr__(cls, "__call__", own)

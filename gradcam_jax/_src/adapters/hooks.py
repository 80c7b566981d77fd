"""Hooks on submodule calls for model libraries without linen's `intercept_methods` (NNX, Equinox).

While a model runs inside `hooked_calls`, the `__call__` of each submodule's class is wrapped (as
`nnx.capture(..., method_outputs=...)` does) through `patching.patched`: for the calling thread
only, and restored when the last thread using it is done. The wrapper hands each submodule's
output, with its path (`"blocks/1/conv"`), to every `hook(path, output) -> output`
(`taps.Tapped.see`), which may record it and add a perturbation. Only the given submodule
instances are hooked (by identity), and only their outermost call (not a `super().__call__`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from gradcam_jax._src import patching


class Call(NamedTuple):
    """A submodule call whose output a hook is seeing: its path, the submodule object (a linen bound
    module, an NNX / Equinox module, a Keras layer) and its positional arguments."""

    path: str
    module: object
    args: tuple


class _Running(threading.local):
    """The {id(submodule): path} maps of the `hooked_calls` contexts open in this thread."""

    def __init__(self):
        self.paths: list[dict[int, str]] = []
        self.calls: list[tuple[str, tuple]] = []  # (path, positional arguments) of the submodules in their call
        self.seeing: list[Call] = []  # the submodule calls whose output the hooks are seeing now, innermost last


_running = _Running()


def path_of(module) -> str | None:
    """The path of `module` in the model running now under `hooked_calls` (None if it is not one of
    its submodules): how a hook on a submodule's inner workings (`adapters.attention`) names it."""
    for paths in reversed(_running.paths):
        if id(module) in paths:
            return paths[id(module)]
    return None


def running() -> tuple[str, tuple] | None:
    """(path, positional arguments) of the innermost hooked submodule inside its call now, if any:
    whose output a function called inside it (`adapters.attention`) belongs to."""
    return _running.calls[-1] if _running.calls else None


def seeing() -> Call | None:
    """The submodule call whose output the hooks see now (inside `hook(path, out)`), if any: what a
    hook needs beyond the output (the inputs and parameters of a layer, for `relevance`)."""
    return _running.seeing[-1] if _running.seeing else None


@contextlib.contextmanager
def seen(call: Call) -> Iterator[None]:
    """Within this context, `seeing()` is `call` (the linen adapter's interceptor opens it too)."""
    _running.seeing.append(call)
    try:
        yield
    finally:
        _running.seeing.pop()


def instance_call(cls):
    """The `__call__` that instances of `cls` run (None if they are not callable), unpatched:
    `cls.__call__` itself would find the metaclass's for a class without one."""
    return patching.original(cls, "__call__")


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
            _running.calls.append((paths[key], args))
            try:
                out = call(*args, **kwargs)
            finally:
                running.discard(key)
                _running.calls.pop()
            with seen(Call(paths[key], self, args)):
                for hook in hooks:
                    out = hook(paths[key], out)
            return out

        return watched

    with patching.all_patched((cls, "__call__", functools.partial(watch, cls)) for cls in classes):
        _running.paths.append(paths)
        try:
            yield
        finally:
            _running.paths = [p for p in _running.paths if p is not paths]

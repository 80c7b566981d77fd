"""Every temporary replacement of another library's attribute, in one place, per thread.

Some explanations need to change what a model's code calls without changing the code: the
`__call__` of NNX, Equinox and Keras submodule classes (`adapters.hooks`), the attention
probability functions of Flax and Equinox (`adapters.attention`), and the ReLU functions
`jax.nn.relu` / `flax.linen.relu` (`guided_backprop`, `deeplift`). Linen submodules need none of
this (`nn.intercept_methods`), nor do the custom backward passes (`jax.custom_vjp`): only reaching
the functions a model calls by name does.

`patched(owner, name, wrap)` opens such a replacement for the calling thread only:
- while any thread has one open on `owner.name`, that attribute is a dispatcher, installed once
  (the open contexts are counted per (owner, name) under one lock) and restored exactly once,
  to the very object it replaced, when the last one closes, exception or not;
- the dispatcher runs the innermost replacement open in the calling thread, and the original
  unchanged in a thread with none open: two threads tracing different models at once see only
  their own replacements, and code running in other threads meanwhile sees the original.
A replacement is `wrap(previous)`, `previous` being what the attribute does in this thread just
outside the context (the original, or an enclosing context's replacement), so nested contexts
compose; a context whose `wrap` is already open in this thread on the same attribute adds nothing.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_LOCK = threading.RLock()  # guards `_installed`: installing, counting and restoring dispatchers

_ABSENT = object()  # a class had no attribute of its own under that name (it inherited it)


class _Patch:
    """One attribute replaced by its dispatcher while `count` contexts (all threads) are open on it."""

    def __init__(self, owner: Any, name: str, own: Any, original: Callable, dispatcher: Callable):
        self.owner, self.name = owner, name
        self.own = own  # the owner's own attribute before (`_ABSENT`: none, a class inheriting it)
        self.original = original  # what the attribute resolved to before
        self.dispatcher = dispatcher
        self.count = 0


class _Open:
    """A replacement open in one thread: its `wrap` and the function it made."""

    def __init__(self, wrap: Callable, replacement: Callable):
        self.wrap, self.replacement = wrap, replacement


class _Thread(threading.local):
    """The replacements open in this thread, innermost last, by (id(owner), name)."""

    def __init__(self):
        self.open: dict[tuple[int, str], list[_Open]] = {}


_installed: dict[tuple[int, str], _Patch] = {}
_thread = _Thread()


def _key(owner, name: str) -> tuple[int, str]:
    return id(owner), name


def resolved(owner, name: str):
    """`owner.name` as its owner's users resolve it: for a class, its instances' attribute (the
    first class in the MRO that defines it, not a metaclass's), None if there is none."""
    if isinstance(owner, type):
        for base in owner.__mro__:
            if name in base.__dict__:
                return base.__dict__[name]
        return None
    return getattr(owner, name, None)


def original(owner, name: str):
    """What `owner.name` is with no replacement open in any thread (see `resolved`)."""
    with _LOCK:
        patch = _installed.get(_key(owner, name))
        return patch.original if patch is not None else resolved(owner, name)


def _set(owner, name: str, value) -> None:
    """Set (`_ABSENT`: delete) attribute `name` of a module or of a class (its own, not its bases')."""
    if isinstance(owner, type):  # type's own: metaclasses (Equinox's, NNX's) may refuse setattr
        if value is _ABSENT:
            type.__delattr__(owner, name)
        else:
            type.__setattr__(owner, name, value)
    elif value is _ABSENT:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


def _dispatcher(key: tuple[int, str], original: Callable, method: bool) -> Callable:
    """The function installed in place of `original`: the calling thread's innermost replacement
    open on `key`, or `original` itself. `method`: it is a class attribute, so it gets `self`."""

    def current() -> Callable:
        opened = _thread.open.get(key)
        return opened[-1].replacement if opened else original

    if method:

        def dispatch_method(self, *args, **kwargs):
            call = current()
            bound = call.__get__(self, type(self)) if hasattr(call, "__get__") else functools.partial(call, self)
            return bound(*args, **kwargs)

        dispatch = dispatch_method
    else:

        def dispatch_function(*args, **kwargs):
            return current()(*args, **kwargs)

        dispatch = dispatch_function
    functools.update_wrapper(dispatch, original, updated=())  # name, doc, signature (__wrapped__)
    return dispatch


def _install(owner, name: str) -> _Patch:
    """The `_Patch` of `owner.name`, its dispatcher installed if no thread had it open (under `_LOCK`)."""
    key = _key(owner, name)
    patch = _installed.get(key)
    if patch is None:
        before = resolved(owner, name)
        if before is None:
            raise AttributeError(f"{owner!r} has no attribute {name!r} to replace")
        own = vars(owner).get(name, _ABSENT)
        patch = _Patch(owner, name, own, before, _dispatcher(key, before, isinstance(owner, type)))
        _set(owner, name, patch.dispatcher)
        _installed[key] = patch
    return patch


def _release(patch: _Patch) -> None:
    """One context on `patch` closed (under `_LOCK`): the last one puts the attribute back, unless
    someone else has replaced the dispatcher meanwhile (theirs stays; ours falls back to the original)."""
    patch.count -= 1
    if patch.count == 0:
        del _installed[_key(patch.owner, patch.name)]
        if vars(patch.owner).get(patch.name, _ABSENT) is patch.dispatcher:
            _set(patch.owner, patch.name, patch.own)


@contextlib.contextmanager
def patched(owner, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Within this context, in this thread, `owner.name` (a module's function, or the method of a
    class's instances: then the replacement takes `self` first) is `wrap(previous)`; see the module doc."""
    key = _key(owner, name)
    with _LOCK:
        stack = _thread.open.get(key, [])
        if any(entry.wrap is wrap for entry in stack):
            patch = None  # already open here: nothing to add
        else:
            patch = _install(owner, name)
            patch.count += 1
            try:
                entry = _Open(wrap, wrap(stack[-1].replacement if stack else patch.original))
            except BaseException:
                _release(patch)
                raise
            _thread.open[key] = stack = [*stack, entry]
    if patch is None:
        yield
        return
    try:
        yield
    finally:
        with _LOCK:
            stack = [e for e in _thread.open.get(key, []) if e is not entry]  # innermost, unless out of order
            if stack:
                _thread.open[key] = stack
            else:
                _thread.open.pop(key, None)
            _release(patch)


@contextlib.contextmanager
def all_patched(patches: Iterable[tuple[Any, str, Callable[[Callable], Callable]]]) -> Iterator[None]:
    """`patched` for each (owner, name, wrap) at once, closed in reverse order."""
    with contextlib.ExitStack() as stack:
        for owner, name, wrap in patches:
            stack.enter_context(patched(owner, name, wrap))
        yield


def replaced(replacement: Callable) -> Callable[[Callable], Callable]:
    """A `wrap` that ignores what it replaces: the attribute becomes `replacement` itself."""
    return lambda previous: replacement


def open_patches() -> list[tuple[Any, str]]:
    """(owner, name) of every attribute replaced now, by any thread (for tests and debugging)."""
    with _LOCK:
        return [(patch.owner, patch.name) for patch in _installed.values()]

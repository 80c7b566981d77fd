"""Linen's lifted blocks (`nn.scan`, `nn.remat`, `nn.vmap`) while a tap is open: run plainly, each iteration named.

A tap records a submodule's output and adds a perturbation to it. Inside `nn.scan` the block runs
once, traced, for every iteration, and inside `nn.remat` (`jax.checkpoint`) under a trace of its own:
an output recorded there is a tracer of that inner trace and leaks (JAX's UnexpectedTracerError),
and one perturbation would hit every iteration. So while a tap is open, in the thread that opened it
(`patching.patched`; restored on exit):

- flax's scan (`flax.core.axes_scan.scan`, which every linen `nn.scan` and `nn.remat_scan` runs
  on) runs as a Python loop over the iterations, the carry passed on and the per-iteration outputs
  stacked as `lax.scan` stacks them: the same computation, unrolled;
- `jax.checkpoint` / `jax.remat` (linen's `nn.remat`, `nn.checkpoint`, and any the model calls
  itself) return the function unchanged: the same values, with the memory of no rematerialisation;
- flax's vmap (`flax.core.lift.vmap`, which every linen `nn.vmap` runs on; it calls `jax.vmap` on a
  function of its own, recognised by its code, every other `jax.vmap` passing through untouched)
  runs as a Python loop over the mapped axis, the outputs stacked at `out_axes`, unless it maps the
  batch: no variable collection mapped, every mapped input at axis 0, the axis as long as the batch
  of images the tap sees. A vmap over the batch stays a `jax.vmap` and its submodules are tapped per
  image, stacked back into the batch (`internals.unbatch`), as the per-example models of the other
  frameworks are. A vmap over anything else (an ensemble's members, `variable_axes={'params': 0}`;
  heads; crops) has an output with an axis that is not the batch's, which would be read as the batch:
  each of its indices runs on its own instead, as one of a scan's iterations. A vmap not over the batch
  that names an `axis_name` (its body may use collectives over the axis, which need it whole) runs as
  a `jax.vmap`, its submodules untapped: naming one is an error saying so (`hidden`). A vmap over
  another axis taken for the batch would need that axis as long as the batch, at axis 0 of inputs of no
  higher rank than the images, and shared variables: views of tokens stacked `(V, B, N, C)`, V = B.

Each iteration's submodules are then seen at their paths with the iteration index after the scanned
module: the block that `nn.scan` lifts at `"Transformer/encoderblock"` is `"Transformer/encoderblock[3]"`
in its 4th iteration, its attention `"Transformer/encoderblock[3]/MultiHeadDotProductAttention_0"`
(`iteration_path`). The scanned module without an index names no layer (`taps.UnknownLayerError`
lists the indices). An unrolled `nn.vmap` is named the same way, `"members[2]/conv"` the member 2 of
an ensemble lifted at `"members"`; its members are parallel, so `layer=None` passes over them
(`kind_of`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from gradcam_jax._src import patching

SCAN, VMAP, WHOLE = "nn.scan", "nn.vmap", "nn.vmap with an axis_name"  # WHOLE: run as a jax.vmap, not tapped


class _Iteration:
    """One iteration of an unrolled scan or vmap (`kind`): its index, and the path of the lifted module
    (the first submodule path seen inside it)."""

    def __init__(self, index: int, length: int, kind: str = SCAN):
        self.index, self.length, self.kind = index, length, kind
        self.prefix: str | None = None


class _Stack(threading.local):
    def __init__(self):
        self.iterations: list[_Iteration] = []
        self.kinds: dict[str, tuple[str, int]] = {}  # lifted module path -> (kind, length), as last seen
        self.batches: list[Callable[[], tuple[int | None, int | None]]] = []  # per `plain`: the images' (batch, rank)
        self.whole: list[list[str | None]] = []  # open WHOLE vmaps: [their module's path, once seen]


_stack = _Stack()


def iteration_path(path: str) -> str:
    """`path` as seen now: with `[i]` after each scanned module it lies in (`[i]` its iteration)."""
    if not _stack.iterations:
        return path
    for frame in _stack.iterations:
        if frame.prefix is None:
            frame.prefix = path  # the scanned module's own call comes first in its body
            _stack.kinds[path] = (frame.kind, frame.length)
    marks = []
    for frame in _stack.iterations:
        prefix = frame.prefix
        if prefix is not None and (path == prefix or path.startswith(prefix + "/")):
            marks.append((len(prefix), frame.index))
    for end, index in sorted(marks, reverse=True):  # innermost (longest) first keeps earlier offsets valid
        path = f"{path[:end]}[{index}]{path[end:]}"
    return path


def kind_of(path: str) -> tuple[str, int] | None:
    """(`SCAN` or `VMAP`, its length) if `path` is the lifted module `"block"` itself or lies in one
    of its iterations, `"block[3]"`, `"block[3]/mlp"`: the innermost such module seen in this
    thread; None for a path in no unrolled lifted module."""
    found, end = None, -1
    for prefix, kind in _stack.kinds.items():
        rest = path[len(prefix) :]
        if path.startswith(prefix) and (not rest or rest.startswith(("[", "/"))) and len(prefix) > end:
            found, end = kind, len(prefix)
    return found


def vmap_members(path: str) -> int | None:
    """The number of members of the outermost unrolled `nn.vmap` whose index `path` lies in
    (`"members[2]"`, `"members[2]/conv"`), None if it lies in none: parallel members, not one map."""
    for prefix, (kind, length) in sorted(_stack.kinds.items(), key=lambda item: len(item[0])):
        if kind == VMAP and path.startswith(prefix + "["):
            return length
    return None


def hidden(path: str) -> bool:
    """Whether the submodule at `path` runs inside a vmap that runs whole (`WHOLE`): not to be tapped."""
    for frame in _stack.whole:
        if frame[0] is None:
            frame[0] = path  # the vmapped module's own call comes first
            _stack.kinds[path] = (WHOLE, 0)
    return bool(_stack.whole)


@contextlib.contextmanager
def _whole() -> Iterator[None]:
    _stack.whole.append([None])
    try:
        yield
    finally:
        _stack.whole.pop()


@contextlib.contextmanager
def _iteration(index: int, length: int, kind: str = SCAN) -> Iterator[None]:
    _stack.iterations.append(_Iteration(index, length, kind))
    try:
        yield
    finally:
        _stack.iterations.pop()


def _take(x, axis: int, index: int):
    axis = axis % x.ndim
    return x[(slice(None),) * axis + (index,)]


def _unrolled_scan(original: Callable) -> Callable:
    """`flax.core.axes_scan.scan` as a Python loop (same signature and results; see the module doc)."""
    from flax.core import axes_scan

    broadcast = axes_scan.broadcast

    def scan(fn, in_axes, out_axes, length=None, reverse=False, unroll=1, _split_transpose=False, **kwargs):
        def run(broadcast_in, init, *args):
            n = length
            if n is None:
                sizes: set[int] = set()
                jax.tree.map(
                    lambda axis, arg: (
                        None
                        if axis is broadcast
                        else sizes.update(leaf.shape[axis % leaf.ndim] for leaf in jax.tree.leaves(arg))
                    ),
                    in_axes,
                    args,
                    is_leaf=lambda a: a is broadcast,
                )
                if len(sizes) != 1:
                    return original(fn, in_axes, out_axes, length, reverse, unroll, _split_transpose, **kwargs)(
                        broadcast_in, init, *args
                    )
                n = sizes.pop()
            carry, per_step, broadcast_out = init, [], None
            for step in reversed(range(n)) if reverse else range(n):
                xs = jax.tree.map(
                    lambda axis, arg, s=step: (
                        arg if axis is broadcast else jax.tree.map(lambda x: _take(x, axis, s), arg)
                    ),
                    in_axes,
                    args,
                    is_leaf=lambda a: a is broadcast,
                )
                with _iteration(step, n):
                    out_broadcast, carry, ys = fn(broadcast_in, carry, *xs)
                broadcast_out = out_broadcast if broadcast_out is None else broadcast_out
                per_step.append(ys)
            if reverse:
                per_step.reverse()

            def stack(axis, *ys):
                if axis is broadcast:
                    return ys[0]
                return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=axis), *ys)

            stacked = jax.tree.map(stack, out_axes, *per_step, is_leaf=lambda a: a is broadcast)
            return broadcast_out, carry, stacked

        return run

    return scan


def _no_remat(original: Callable) -> Callable:
    """`jax.checkpoint` / `jax.remat` returning the function itself (usable as a decorator factory too)."""

    def checkpoint(fun=None, *args, **kwargs):
        if fun is None:
            return lambda f: f
        return fun

    return checkpoint


def _is_flax_vmapped(fun) -> bool:
    """Whether `fun` is the function `flax.core.lift.vmap` hands to `jax.vmap` (its inner `mapped`)."""
    from flax.core import lift

    code = getattr(fun, "__code__", None)
    return code is not None and code.co_name == "mapped" and code.co_filename == lift.__file__


def _per_arg(in_axes, args: tuple) -> tuple:
    """`in_axes` as one entry per positional argument, as `jax.vmap` reads it."""
    return tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)


def _axis_leaves(axes, args) -> list[tuple[int, jax.Array]]:
    """(axis, array) for every array of `args` that `axes` (a prefix tree, None: broadcast) maps."""
    found: list[tuple[int, jax.Array]] = []
    jax.tree.map(
        lambda axis, arg: None if axis is None else found.extend((axis, leaf) for leaf in jax.tree.leaves(arg)),
        axes,
        args,
        is_leaf=lambda a: a is None,
    )
    return found


def _maps_batch(in_axes, args: tuple) -> bool:
    """Whether flax's `mapped(variable_groups, rng_groups, args)` under `jax.vmap(in_axes)` maps the
    batch of images the innermost tap sees: no variable collection mapped, every mapped input at axis
    0, as long as that batch and of no higher rank than the images (a stack of views of the batch has
    one more axis); batch unknown: no."""
    variable_axes, _, input_axes = _per_arg(in_axes, args)
    if any(axis is not None for axis in jax.tree.leaves(variable_axes, is_leaf=lambda a: a is None)):
        return False
    batch, rank = _stack.batches[-1]() if _stack.batches else (None, None)
    mapped = _axis_leaves(input_axes, args[2])
    if batch is None or not mapped:
        return False
    return all(a == 0 and x.shape[0] == batch and (rank is None or x.ndim <= rank) for a, x in mapped)


def _unrolled_vmap(original: Callable) -> Callable:
    """`jax.vmap` with flax's lifted vmap (`nn.vmap`) run as a Python loop over the mapped axis, unless
    it maps the batch; any other `jax.vmap` as it is (see the module doc)."""

    def vmap(fun, in_axes=0, out_axes=0, axis_name=None, axis_size=None, *args, **kwargs):
        if not _is_flax_vmapped(fun):
            return original(fun, in_axes, out_axes, axis_name, axis_size, *args, **kwargs)

        def run(*call_args):
            def as_jax_vmap():
                return original(fun, in_axes, out_axes, axis_name, axis_size, *args, **kwargs)(*call_args)

            if _maps_batch(in_axes, call_args):
                return as_jax_vmap()
            if axis_name is not None:  # collectives over the axis may need it whole: its layers are not tapped
                with _whole():
                    return as_jax_vmap()
            axes = _per_arg(in_axes, call_args)
            sizes = {leaf.shape[axis % leaf.ndim] for axis, leaf in _axis_leaves(axes, call_args)}
            n = axis_size if axis_size is not None else (sizes.pop() if len(sizes) == 1 else None)
            if n is None:
                return as_jax_vmap()
            per_index = []
            for index in range(n):
                taken = jax.tree.map(
                    lambda axis, arg, i=index: arg if axis is None else jax.tree.map(lambda x: _take(x, axis, i), arg),
                    axes,
                    call_args,
                    is_leaf=lambda a: a is None,
                )
                with _iteration(index, n, VMAP):
                    per_index.append(fun(*taken))

            def stack(axis, *outs):
                if axis is None:
                    return outs[0]
                return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=axis), *outs)

            return jax.tree.map(stack, out_axes, *per_index, is_leaf=lambda a: a is None)

        return run

    return vmap


def _patches() -> list[tuple[object, str, Callable[[Callable], Callable]]]:
    from flax.core import axes_scan

    return [
        (axes_scan, "scan", _unrolled_scan),
        (jax, "checkpoint", _no_remat),
        (jax, "remat", _no_remat),
        (jax, "vmap", _unrolled_vmap),
    ]


@contextlib.contextmanager
def plain(batch: Callable[[], tuple[int | None, int | None]] = lambda: (None, None)) -> Iterator[None]:
    """While open (in this thread): linen's scans and vmaps unrolled (a vmap over the batch kept:
    `batch()` gives the images' batch size and rank when it runs), rematerialisation off (see the
    module doc)."""
    _stack.batches.append(batch)
    try:
        with patching.all_patched(_patches()):
            yield
    finally:
        _stack.batches.pop()

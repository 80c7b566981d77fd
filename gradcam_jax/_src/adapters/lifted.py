"""Linen's lifted blocks (`nn.scan`, `nn.remat`) while a tap is open: run plainly, each iteration named.

A tap records a submodule's output and adds a perturbation to it. Inside `nn.scan` the block runs
once, traced, for every iteration, and inside `nn.remat` (`jax.checkpoint`) under a trace of its own:
an output recorded there is a tracer of that inner trace and leaks (JAX's UnexpectedTracerError),
and one perturbation would hit every iteration. So while a tap is open, in the thread that opened it
(`patching.patched`; restored on exit):

- flax's scan (`flax.core.axes_scan.scan`, which every linen `nn.scan` and `nn.remat_scan` runs
  on) runs as a Python loop over the iterations, the carry passed on and the per-iteration outputs
  stacked as `lax.scan` stacks them: the same computation, unrolled;
- `jax.checkpoint` / `jax.remat` (linen's `nn.remat`, `nn.checkpoint`, and any the model calls
  itself) return the function unchanged: the same values, with the memory of no rematerialisation.

Each iteration's submodules are then seen at their paths with the iteration index after the scanned
module: the block that `nn.scan` lifts at `"Transformer/encoderblock"` is `"Transformer/encoderblock[3]"`
in its 4th iteration, its attention `"Transformer/encoderblock[3]/MultiHeadDotProductAttention_0"`
(`iteration_path`). The scanned module without an index names no layer (`taps.UnknownLayerError`
lists the indices).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from gradcam_jax._src import patching


class _Iteration:
    """One iteration of an unrolled scan: its index, and the path of the scanned module (the first
    submodule path seen inside it)."""

    def __init__(self, index: int, length: int):
        self.index, self.length = index, length
        self.prefix: str | None = None


class _Stack(threading.local):
    def __init__(self):
        self.iterations: list[_Iteration] = []


_stack = _Stack()


def iteration_path(path: str) -> str:
    """`path` as seen now: with `[i]` after each scanned module it lies in (`[i]` its iteration)."""
    if not _stack.iterations:
        return path
    for frame in _stack.iterations:
        if frame.prefix is None:
            frame.prefix = path  # the scanned module's own call comes first in its body
    marks = []
    for frame in _stack.iterations:
        prefix = frame.prefix
        if prefix is not None and (path == prefix or path.startswith(prefix + "/")):
            marks.append((len(prefix), frame.index))
    for end, index in sorted(marks, reverse=True):  # innermost (longest) first keeps earlier offsets valid
        path = f"{path[:end]}[{index}]{path[end:]}"
    return path


@contextlib.contextmanager
def _iteration(index: int, length: int) -> Iterator[None]:
    _stack.iterations.append(_Iteration(index, length))
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


def _patches() -> list[tuple[object, str, Callable[[Callable], Callable]]]:
    from flax.core import axes_scan

    return [(axes_scan, "scan", _unrolled_scan), (jax, "checkpoint", _no_remat), (jax, "remat", _no_remat)]


def plain() -> contextlib.AbstractContextManager:
    """While open (in this thread): linen's scans unrolled, rematerialisation off (see the module doc)."""
    return patching.all_patched(_patches())

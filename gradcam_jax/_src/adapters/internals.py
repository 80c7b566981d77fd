"""Every use of JAX internals in gradcam-jax, in one place, each with what it relies on.

Only the per-image taps need them: a submodule that the model itself calls under `jax.vmap` (one
image at a time, the Equinox style) hands the tap a `BatchTracer` for one image, and Grad-CAM needs
the whole batch's activation and a perturbation of it. No public API exposes "the batch behind this
tracer", so the tap unwraps the model's own vmaps and wraps the perturbation back in them. Linen,
NNX and Keras models that take the batch whole never reach this code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Relies on: `jax._src.core.trace_ctx.trace`, the innermost trace open now, and each trace's
# `parent_trace` link (JAX >= 0.4.36's "stackless" tracing; older releases have neither).
from jax._src import core as jax_core

# Relies on: `BatchTracer(trace, val, batch_dim)`, its `.val`, `.batch_dim`, `._trace` and the
# trace's `axis_data.size` (the mapped axis' length), as in JAX >= 0.4.36.
from jax._src.interpreters import batching


def current_trace():
    """The innermost JAX trace open now: vmaps opened after this point are the model's own."""
    return jax_core.trace_ctx.trace


def unbatch(out, entry_trace) -> tuple[jax.Array, list]:
    """`out` with the vmaps opened since `entry_trace` undone: (the full batched array,
    [(trace, batch dim), ...], innermost first). An array not under such a vmap comes back as is."""
    outer, trace = set(), entry_trace
    while trace is not None:
        outer.add(id(trace))
        trace = getattr(trace, "parent_trace", None)
    levels = []
    while isinstance(out, batching.BatchTracer) and id(out._trace) not in outer:
        value, dim = out.val, out.batch_dim
        if not isinstance(dim, int):  # an output that does not depend on the mapped input
            value, dim = jnp.broadcast_to(value, (out._trace.axis_data.size, *value.shape)), 0
        levels.append((out._trace, dim))
        out = jnp.moveaxis(value, dim, 0)
    return out, levels


def rebatch(value: jax.Array, levels: list) -> jax.Array:
    """Undo `unbatch` for a (B, ...) `value`: the per-image tracer of the model's vmaps."""
    for trace, dim in reversed(levels):
        value = batching.BatchTracer(trace, jnp.moveaxis(value, 0, dim), dim)
    return value

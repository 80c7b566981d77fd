"""Layer taps: read, and perturb, the output of any submodule of an unmodified Flax model.

Every explanation method needs "the activation at layer L" and "the gradient of a score with
respect to it". Both come from one mechanism: `flax.linen.intercept_methods` wraps each
submodule's `__call__` while `model.apply` runs, records the output of the submodule at path L,
and adds a perturbation `delta` to it. The gradient with respect to `delta` at zero is the
gradient with respect to the activation, and nothing in the model's code has to change.

A layer is named by its Flax path (`"backbone/stage3/block1"`, `"Conv_2"`); MATLAB-style names
with `-` for `/` (`"inception_5b-output"`) are accepted too. A submodule called more than once
is tapped at its first call.

Flax NNX models come as `model, variables = nnx.split(module)` (a hashable `GraphDef`, static
under jit, and its `State`); `apply_logits` merges them and `gradcam_jax.nnx_support` taps the
submodules by their attribute path (`"blocks/0/conv"`) with the same `Tapped` object.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping

import flax.linen as nn
import jax

from gradcam_jax import nnx_support


class UnknownLayerError(ValueError):
    """A layer name that is not the path of any submodule; the message lists the valid ones."""

    def __init__(self, layer: str, valid: Iterable[str]):
        valid = list(valid)
        super().__init__(
            f"unknown layer {layer!r}; valid layers ('-' may stand for '/'): {', '.join(valid)}"
        )
        self.layer, self.valid = layer, valid


def candidate_paths(layer: str) -> tuple[str, ...]:
    """The Flax paths a layer name may denote: itself, then its MATLAB reading ('-' for '/')."""
    alias = layer.replace("-", "/")
    return (layer,) if alias == layer else (layer, alias)


class Tapped:
    """What one `tap` context sees: outputs of the requested layers, and every path called."""

    def __init__(self, layers: Iterable[str] | None, perturb: Mapping[str, jax.Array]):
        self.capture_all = layers is None
        self.perturb = dict(perturb)
        self._names_at: dict[str, list[str]] = {}
        for name in [*(layers or ()), *self.perturb]:
            for path in candidate_paths(name):
                self._names_at.setdefault(path, []).append(name)
        self.outputs: dict[str, jax.Array] = {}
        self.paths: list[str] = []

    def intercept(self, next_fun, args, kwargs, context):
        """A linen interceptor (`nn.intercept_methods`): taps each submodule's `__call__`."""
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__" or not context.module.path:
            return out
        return self.see("/".join(context.module.path), out)

    def see(self, path: str, out):
        """Record the output `out` of the submodule at `path`; return it, perturbed if asked."""
        if path in self.paths:
            return out  # a shared submodule: only its first call is tapped
        self.paths.append(path)
        if self.capture_all and isinstance(out, jax.Array):
            self.outputs[path] = out
        for name in self._names_at.get(path, ()):
            if name in self.outputs:
                continue  # matched by an exact path already
            if not hasattr(out, "shape"):
                raise TypeError(f"layer {name!r} outputs {type(out).__name__}, not an array")
            self.outputs[name] = out
            if name in self.perturb:
                out = out + self.perturb[name].astype(out.dtype)
        return out

    def by_name(self, layers: Iterable[str]) -> dict[str, jax.Array]:
        """`{name: activation}` for `layers`; `UnknownLayerError` for any that was never called."""
        for name in layers:
            if name not in self.outputs:
                raise UnknownLayerError(name, self.paths)
        return {name: self.outputs[name] for name in layers}


@contextlib.contextmanager
def tap(layers: Iterable[str] | None = (), perturb: Mapping[str, jax.Array] | None = None) -> Iterator[Tapped]:
    """Within this context, `model.apply` records the outputs of `layers` (every array output if
    None) and adds `perturb[name]` to the output of layer `name`. Read them from the yielded
    `Tapped` once `apply` returns."""
    tapped = Tapped(layers, perturb or {})
    _open.taps.append(tapped)  # NNX models read the open taps here; linen ones through the interceptor
    try:
        with nn.intercept_methods(tapped.intercept):
            yield tapped
    finally:
        _open.taps.remove(tapped)


class _OpenTaps(threading.local):
    """The `tap` contexts open in this thread, outermost first (per thread, like linen's interceptors)."""

    def __init__(self):
        self.taps: list[Tapped] = []


_open = _OpenTaps()


def logits_of(output) -> jax.Array:
    """A classifier's logits from what its `apply` returned: the output, or its first item."""
    return output[0] if isinstance(output, (tuple, list)) else output


def apply_logits(model, variables, images) -> jax.Array:
    """Run the classifier `model` and return its logits (B, num_classes); the one place models are called.

    model: a linen Module (`model.apply(variables, images)`), or an NNX `GraphDef` with its `State`
    as variables (`nnx.split(module)`). Either may return logits or a tuple led by them."""
    if nnx_support.is_graphdef(model):
        return logits_of(nnx_support.call(model, variables, images, [t.see for t in _open.taps]))
    nnx_support.check_not_module(model)
    return logits_of(model.apply(variables, images))


def layer_shapes(model, variables, images) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every submodule output, by Flax path, in call order (no FLOPs spent)."""

    order: list[str] = []

    def run(variables, images):
        with tap(None) as tapped:
            apply_logits(model, variables, images)
        order.extend(tapped.outputs)
        return tapped.outputs

    shapes = jax.eval_shape(run, variables, images)  # a dict comes back with its keys sorted
    return {path: shapes[path] for path in order}


def resolve_layer(model, variables, images, layer: str) -> tuple[str, jax.ShapeDtypeStruct]:
    """(Flax path, output shape) of `layer`; `UnknownLayerError` listing valid paths otherwise."""
    shapes = layer_shapes(model, variables, images)
    for path in candidate_paths(layer):
        if path in shapes:
            return path, shapes[path]
    raise UnknownLayerError(layer, shapes)


def forward_with_layer(model, variables, images, path: str, delta: jax.Array | None = None):
    """(logits, activation at `path`), with `delta` added to that activation if given."""
    with tap([path], {path: delta} if delta is not None else None) as tapped:
        logits = apply_logits(model, variables, images)
    return logits, tapped.outputs[path]

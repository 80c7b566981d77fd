"""Layer taps: read, and perturb, the output of any submodule of an unmodified Flax model.

Every explanation method needs "the activation at layer L" and "the gradient of a score with
respect to it". Both come from one mechanism: `flax.linen.intercept_methods` wraps each
submodule's `__call__` while `model.apply` runs, records the output of the submodule at path L,
and adds a perturbation `delta` to it. The gradient with respect to `delta` at zero is the
gradient with respect to the activation, and nothing in the model's code has to change.

A layer is named by its Flax path (`"backbone/stage3/block1"`, `"Conv_2"`); MATLAB-style names
with `-` for `/` (`"inception_5b-output"`) are accepted too. A submodule called more than once
is tapped at its first call. A submodule whose output is a tuple, list, dict or dataclass is tapped
at one array of it: the first array, depth-first in the container's own order, or the one that
selectors after the path pick, `"encoder/block0[1][key]"` (`adapters.elements`); the perturbation
goes back into that element. Blocks lifted by linen's `nn.scan` are tapped per iteration, the index
after the scanned module's path, `"encoder/block[3]"`, `"encoder/block[3]/mlp"` (while a tap is open
the scan runs unrolled and `nn.remat` plainly; `adapters.lifted`); so are those lifted by `nn.vmap`
over anything but the batch (an ensemble's members, `"members[2]/conv"`), while an `nn.vmap` over the
batch is tapped per image, as below.

`call_model` is the one place models are called. A model is any of:
- a linen `Module`: `model.apply(variables, images)`;
- any function `model(variables, images)`, e.g. `lambda v, x: resnet.apply(v, x, train=False)`:
  linen submodules called inside it are tapped by their paths as above;
- an NNX `GraphDef` with its `State` as variables (`nnx.split(module)`; `adapters.nnx`);
- the static half of an Equinox model with its arrays as variables (`eqx.partition`;
  `adapters.equinox`), or with `(arrays, state)` for a model with state;
- a Keras 3 model (JAX backend) with None (its own weights) or `(trainable, non_trainable)` values
  as variables (`adapters.keras`);
- a Haiku `hk.transform(f)` / `hk.transform_with_state(f)` (or its `apply`) with its params, or
  `(params, state)`, as variables (`adapters.haiku`): modules tapped by their Haiku names.
NNX and Equinox submodules are tapped by attribute path (`"blocks/0/conv"`), Keras layers by name
(`"backbone/conv5"`), with the same `Tapped`.

Layer outputs are seen in the library's layout, batch first and channels last (B, h, w, C); (B, l, C)
and (B, d, h, w, C) for signal and volume models. A
submodule the model calls under its own `jax.vmap` (one image at a time) is tapped per image and
its outputs are stacked back into a batch; a channel-first output (`(C, *s)` per image, any number of
spatial axes, Equinox's default) is moved to channels-last, and perturbations are moved back. `channels_first(model)` /
`channels_last(model)` say which layout a model's layers use (default: last, first for Equinox).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from gradcam_jax._src.adapters import elements, equinox, haiku, internals, keras, lifted, linen, nnx
from gradcam_jax._src.targets import logits_of


class UnknownLayerError(ValueError):
    """A layer name that is not the path of any submodule; the message lists the valid ones."""

    def __init__(self, layer: str, valid: Iterable[str]):
        valid = list(valid)
        super().__init__(f"unknown layer {layer!r}; valid layers ('-' may stand for '/'): {', '.join(valid)}")
        self.layer, self.valid = layer, valid


class AmbiguousLayerError(ValueError):
    """A layer name that may denote several submodules (a Keras name written without its number)."""

    def __init__(self, layer: str, candidates: Iterable[str]):
        candidates = list(candidates)
        super().__init__(f"layer {layer!r} is ambiguous; it may be any of: {', '.join(candidates)}; name one of them")
        self.layer, self.candidates = layer, candidates


def unknown_layer(layer: str, valid: Iterable[str]) -> UnknownLayerError:
    """The error for `layer`, which no path names; for a module lifted by `nn.scan` or `nn.vmap` named
    without its index (`lifted`), the message lists its indices."""
    valid = list(valid)
    for path in candidate_paths(layer):
        if (lifted.kind_of(path) or ("", 0))[0] == lifted.WHOLE:
            error = UnknownLayerError(layer, valid)
            error.args = (
                f"layer {layer!r} runs inside an {lifted.WHOLE} (collectives may need its axis whole), which is "
                f"run whole, its layers untapped: name a layer outside it, or remove the axis_name",
            )
            return error
        iterations = [p for p in valid if p.startswith(path + "[") and "/" not in p[len(path) :]]
        indexed = [p for p in iterations if p[len(path) + 1 : p.index("]", len(path))].isdigit()]
        if indexed:
            error = UnknownLayerError(layer, valid)
            kind, _ = lifted.kind_of(indexed[0]) or (lifted.SCAN, len(indexed))
            what = "iterations" if kind == lifted.SCAN else "indices of its mapped axis"
            error.args = (f"layer {layer!r} runs under {kind} ({len(indexed)} {what}): name one, {', '.join(indexed)}",)
            return error
    return UnknownLayerError(layer, valid)


def candidate_paths(layer: str) -> tuple[str, ...]:
    """The Flax paths a layer name may denote: itself, then its MATLAB reading ('-' for '/')."""
    alias = layer.replace("-", "/")
    return (layer,) if alias == layer else (layer, alias)


class Tapped:
    """What one `tap` context sees: outputs of the requested layers, and every path called."""

    def __init__(self, layers: Iterable[str] | None, perturb: Mapping[str, jax.Array]):
        self.capture_all = layers is None
        self.perturb = dict(perturb)
        self._names = list(dict.fromkeys([*(layers or ()), *self.perturb]))
        self.outputs: dict[str, jax.Array] = {}
        self.paths: list[str] = []
        self.channel_first = False  # set by `call_model` for the model being run
        self.channel_rank: int | None = None  # channel-first outputs are those of this rank (the images')
        self.batch_size: int | None = None  # the images' batch (set by `call_model`): an nn.vmap over it stays
        self.entry_trace = internals.current_trace()  # vmaps opened later are the model's own

    def _names_at(self, path: str) -> list[tuple[str, tuple]]:
        """(name, element selectors) of the requested names that denote `path` (`elements`): the
        exact path first, then its MATLAB reading, each name once."""
        found: dict[str, tuple] = {}
        for name in self._names:
            for candidate in candidate_paths(name):
                selectors = elements.split_selectors(candidate, path)
                if selectors is not None and name not in found:
                    found[name] = selectors
        return list(found.items())

    def see(self, path: str, out):
        """Record the output `out` of the submodule at `path`; return it, perturbed if asked. A
        tuple/list/dict/dataclass output is read at one array (`elements`)."""
        if path in self.paths:
            return out  # a shared submodule: only its first call is tapped
        self.paths.append(path)
        # each name once, and only if no exact path matched it already
        names = [(name, sel) for name, sel in self._names_at(path) if name not in self.outputs]
        default = () if elements.is_array(out) else elements.first_array(out)
        if self.capture_all and default is not None:
            names = [(path, default), *[(n, s) for n, s in names if n != path]]
        for name, selectors in names:
            if not selectors and default is None:
                raise TypeError(f"layer {name!r} outputs {type(out).__name__}, which holds no array")
            selectors = selectors or default or ()
            element = elements.select(out, selectors, path)
            if not hasattr(element, "shape"):
                raise TypeError(f"layer {name!r} outputs {type(element).__name__} there, not an array")
            seen, levels = internals.unbatch(element, self.entry_trace)
            seen = jnp.moveaxis(seen, 1, -1) if self.moves(seen) else seen
            self.outputs[name] = seen
            if name in self.perturb:
                delta = self.perturb[name].astype(element.dtype)
                delta = jnp.moveaxis(delta, -1, 1) if self.moves(delta) else delta
                current = elements.select(out, selectors, path)  # with any perturbation added before
                out = elements.replaced(out, selectors, current + internals.rebatch(delta, levels))
        return out

    def moves(self, seen) -> bool:
        """Whether the (batched) output `seen` is channel-first, to be moved: a channel-first model's
        outputs of the images' rank; tokens (B, N, C) and attention matrices of image models are not."""
        if not self.channel_first or seen.ndim < 3:
            return False
        return self.channel_rank is None or seen.ndim == self.channel_rank

    def by_name(self, layers: Iterable[str]) -> dict[str, jax.Array]:
        """`{name: activation}` for `layers`; `UnknownLayerError` for any that was never called."""
        for name in layers:
            if name not in self.outputs:
                raise unknown_layer(name, self.paths)
        return {name: self.outputs[name] for name in layers}


@contextlib.contextmanager
def tap(layers: Iterable[str] | None = (), perturb: Mapping[str, jax.Array] | None = None) -> Iterator[Tapped]:
    """Within this context, `model.apply` records the outputs of `layers` (every array output if
    None) and adds `perturb[name]` to the output of layer `name`. Read them from the yielded
    `Tapped` once `apply` returns."""
    with opened(Tapped(layers, perturb or {})) as tapped:
        yield tapped


@contextlib.contextmanager
def opened(tapped: Tapped) -> Iterator[Tapped]:
    """`tapped` (a `Tapped` or a subclass: `adapters.attention`) sees the models run in this context."""
    _open.taps.append(tapped)  # NNX and Equinox models read the open taps here (`call_model`)
    try:
        # linen submodules, wherever they run while this is open; nn.scan / nn.remat / nn.vmap run plainly (`lifted`)
        with lifted.plain(lambda: (tapped.batch_size, tapped.channel_rank)), linen.intercepted(tapped.see):
            yield tapped
    finally:
        _open.taps.remove(tapped)


def open_taps() -> tuple[Tapped, ...]:
    """The `tap` contexts open in this thread, outermost first."""
    return tuple(_open.taps)


class _OpenTaps(threading.local):
    """The `tap` contexts open in this thread, outermost first (per thread, like linen's interceptors)."""

    def __init__(self):
        self.taps: list[Tapped] = []


_open = _OpenTaps()


@dataclasses.dataclass(frozen=True)
class Layout:
    """A model whose layer outputs are channel-first (`channels_first`) or -last (`channels_last`),
    and (Equinox) which takes one example or the batch (`per_example`; None: found by trying)."""

    model: object
    channel_first: bool | None  # None: the model's kind's default (`default_channel_first`)
    per_example: bool | None = None
    attention: tuple = ()  # where the attention probabilities are (`attention_at`; `adapters.attention`)


def channels_first(model) -> Layout:
    """`model`, with its layers' outputs read as channel-first: `(C, *s)` per image, `(B, C, *s)`."""
    return dataclasses.replace(model, channel_first=True) if isinstance(model, Layout) else Layout(model, True)


def channels_last(model) -> Layout:
    """`model`, with its layers' outputs read as channel-last (B, h, w, C): the default but for Equinox."""
    return dataclasses.replace(model, channel_first=False) if isinstance(model, Layout) else Layout(model, False)


def per_example(model, per_example: bool = True) -> Layout:
    """An Equinox `model` (its static half) said to take one channel-first example `(C, H, W)` (True;
    the library vmaps it over the batch) or the NHWC batch (False). Without it the rule is: the batch
    if the model accepts it (tried with `jax.eval_shape`), else one example."""
    if not equinox.is_module(unwrap(model)):
        raise TypeError(f"per_example is for Equinox models (eqx.partition); got {type(unwrap(model)).__name__}")
    if isinstance(model, Layout):
        return dataclasses.replace(model, per_example=per_example)
    return Layout(model, None, per_example)


def attention_at(model, *where: str | tuple[object, str]) -> Layout:
    """`model`, with its attention probabilities (B, heads, queries, keys) read where it computes them
    inline, for the transformer methods: each of `where` is a submodule path whose output they are
    (`"blocks/*/attn/attn_drop"`, `*` matching one path segment; they count as the attention of the
    submodule's parent, `"blocks/0/attn"`), or an `(owner, "name")` pair naming the function that
    returns them (`(jax.nn, "softmax")`, `(my_module, "attention_weights")`; they count as the
    attention of the innermost submodule running it, and outputs of another rank are passed over)."""
    for item in where:
        if not (isinstance(item, str) or (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str))):
            raise TypeError(f"attention_at takes submodule paths or (owner, 'function name') pairs; got {item!r}")
    if isinstance(model, Layout):
        return dataclasses.replace(model, attention=(*model.attention, *where))
    return Layout(model, None, None, tuple(where))


def default_channel_first(model) -> bool:
    """Whether `model`'s layers output channel-first by default: Equinox's, and Keras' when
    `image_data_format()` says so."""
    return equinox.is_module(model) or (keras.is_model(model) and keras.channel_first())


def attention_places(model) -> tuple:
    """The `attention_at` places of `model` (() if none were given)."""
    return model.attention if isinstance(model, Layout) else ()


def unwrap(model):
    """The model inside a `Layout` wrapper (itself otherwise)."""
    return model.model if isinstance(model, Layout) else model


def check_model(model) -> None:
    """A clear TypeError, before any tracing, for a model passed in a form that cannot be static
    under `jit`: an unsplit NNX module, an unpartitioned Equinox model."""
    model = unwrap(model)
    nnx.check_not_module(model)
    if equinox.is_module(model):
        equinox.check_partitioned(model)
        equinox.check_hashable(model)


def prepare(model, variables):
    """`check_model` and the variables checked (an Equinox model with state needs `(params, state)`),
    then the variables to trace: a Keras model's own weights for None (read now, at the public call,
    so a model trained further is explained with its new weights)."""
    check_model(model)
    if equinox.is_module(unwrap(model)):
        equinox.check_variables(unwrap(model), variables)
    if haiku.is_model(unwrap(model)):
        haiku.check_variables(unwrap(model), variables)
    return keras.prepare(unwrap(model), variables) if keras.is_model(unwrap(model)) else variables


def call_model(model, variables, images):
    """Run `model` (see the module doc for the kinds) on `images` and return what it returns; the one
    place models are called. Open `tap` contexts see its submodules' outputs."""
    channel_first, per = None, None
    if isinstance(model, Layout):
        model, channel_first, per = model.model, model.channel_first, model.per_example
    if channel_first is None:
        channel_first = default_channel_first(model)
    for tapped in _open.taps:
        tapped.channel_first = channel_first
        tapped.channel_rank = getattr(images, "ndim", None)
        tapped.batch_size = images.shape[0] if getattr(images, "ndim", 0) else None
    hooks = [t.see for t in _open.taps]
    if nnx.is_graphdef(model):
        return nnx.call(model, variables, images, hooks)
    if equinox.is_module(model):
        return equinox.call(model, variables, images, hooks, per)
    if keras.is_model(model):
        return keras.call(model, variables, images, hooks)
    if haiku.is_model(model):
        return haiku.call(model, variables, images, hooks)
    nnx.check_not_module(model)
    if linen.is_module(model) or callable(model):
        try:
            return linen.call(model, variables, images)
        except ValueError as err:
            if haiku.not_transformed(err):
                raise TypeError(haiku.NOT_TRANSFORMED) from err
            raise
    raise TypeError(
        f"model must be a linen Module, a function (variables, images) -> outputs, an NNX GraphDef "
        f"(nnx.split), an Equinox module (eqx.partition), a Keras model or a Haiku transformed function "
        f"(hk.transform); got {type(model).__name__}"
    )


def not_default(model) -> set[str]:
    """Paths `layer=None` passes over (`equinox.not_default`: dropout, identity, strided 1x1 convs)."""
    return equinox.not_default(unwrap(model)) if equinox.is_module(unwrap(model)) else set()


def bias_layers(model, variables, images) -> dict[str, jax.Array]:
    """{path: bias (C,)} of the layers FullGrad reads: every convolution with a bias (linen `nn.Conv`,
    NNX `nnx.Conv`, Equinox `eqx.nn.Conv`; any number of spatial axes) and, in linen and NNX, every
    batch norm with a bias, folded with its running statistics. A Keras model is a TypeError; a
    model with none of these gives {}."""
    model = unwrap(model)
    if nnx.is_graphdef(model):
        return nnx.bias_layers(model, variables)
    if equinox.is_module(model):
        return equinox.bias_layers(model, variables)
    if keras.is_model(model):
        raise TypeError(
            "reading convolution biases is not supported for Keras models; use a linen, NNX or Equinox model"
        )
    return linen.bias_layers(model, variables, images)


def apply_logits(model, variables, images) -> jax.Array:
    """The logits (B, num_classes) of the classifier `model` (`call_model`, then `targets.logits_of`)."""
    return logits_of(call_model(model, variables, images))


def layer_shapes(model, variables, images) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every submodule output, by Flax path, in call order (no FLOPs spent)."""

    order: list[str] = []

    def run(variables, images):
        with tap(None) as tapped:
            call_model(model, variables, images)
        order.extend(tapped.outputs)
        return tapped.outputs

    shapes = jax.eval_shape(run, variables, images)  # a dict comes back with its keys sorted
    return {path: shapes[path] for path in order}


def is_spatial_map(shape: tuple[int, ...], image_shape: tuple[int, ...]) -> bool:
    """Whether a layer output of `shape` is a feature map of (B, *S, C) inputs with as many spatial
    axes, (B, *s, C): a signal's (B, l, C), an image's (B, h, w, C), a volume's (B, d, h, w, C); more
    than one position, each axis no longer than the input's, and strides S/s within a factor 2 of each
    other (which rules out an attention's (B, tokens, heads, depth) projections of images)."""
    if len(shape) != len(image_shape) or len(shape) < 3:
        return False
    spatial, full = shape[1:-1], image_shape[1:-1]
    if math.prod(spatial) <= 1 or any(s < 1 or s > n for s, n in zip(spatial, full)):
        return False
    strides = [n / s for s, n in zip(spatial, full)]
    return max(strides) / min(strides) < 2


class Candidate(NamedTuple):
    """A layer `default_layer` considered: its path, output shape, and why it was kept or skipped."""

    path: str
    shape: tuple[int, ...]
    reason: str  # "chosen", "feeds the output", or why it was skipped


def explain_default_layer(model, variables, images) -> list[Candidate]:
    """Every spatial-map layer (`is_spatial_map`) in call order, with why `default_layer` takes or
    skips it: the model's own `default_layer` attribute wins (then it is the one entry); else the last
    spatial map that feeds the model's logits (every output array if it has none), skipping:

    - side branches that do not feed them (big_vision's `head` applied to the 2-D token map for
      `logits_2d`): the dependence is read from the traced computation (`jax.make_jaxpr`), not values;
    - maps computed inside an attention submodule (its query/key/value projections);
    - maps of one member of an `nn.vmap` over anything but the batch (an ensemble's, `lifted`): one
      of several parallel maps, none of them the model's;
    - 1x1-convolution shortcuts: a linen `nn.Conv` with a 1x1 kernel (and a norm applied right after
      it) called after a map of the same shape in the same parent module (a projection shortcut).
    """
    named = getattr(unwrap(model), "default_layer", None)
    if isinstance(named, str):
        shapes = layer_shapes(model, variables, images)
        shape = tuple(shapes[named].shape) if named in shapes else ()
        return [Candidate(named, shape, "chosen: the model's own default_layer")]
    shapes = layer_shapes(model, variables, images)
    spatial = [p for p, s in shapes.items() if is_spatial_map(s.shape, images.shape)]
    if not spatial:
        return []
    kinds: dict[str, tuple[str, bool]] = {}  # linen path -> (class name, whether a 1x1 conv)

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and module.path:
            path = lifted.iteration_path("/".join(module.path))
            kernel = getattr(module, "kernel_size", None)
            one = isinstance(module, linen.nn.Conv) and kernel is not None and all(k == 1 for k in tuple(kernel))
            kinds.setdefault(path, (type(module).__name__, one))
        return next_fun(*args, **kwargs)

    def explained(deltas):
        with linen.nn.intercept_methods(record), tap(list(deltas), deltas):
            outputs = call_model(model, variables, images)
        try:
            return logits_of(outputs)
        except TypeError:
            return [leaf for leaf in jax.tree.leaves(outputs) if hasattr(leaf, "shape")]

    deltas = {p: jnp.zeros(shapes[p].shape, shapes[p].dtype) for p in spatial}
    feeding = _feeding(jax.make_jaxpr(explained)(deltas), list(deltas))
    attention_paths = [p for p, (kind, _) in kinds.items() if "Attention" in kind]
    passed_over = not_default(model)  # Equinox: dropout, identity, strided 1x1 convolutions
    reasons: dict[str, str] = {}
    for i, path in enumerate(spatial):
        parent = path.rpartition("/")[0]
        kind, one = kinds.get(path, ("", False))
        before = [q for q in spatial[:i] if q.rpartition("/")[0] == parent and shapes[q].shape == shapes[path].shape]
        after_one = i > 0 and kinds.get(spatial[i - 1], ("", False))[1] and spatial[i - 1].rpartition("/")[0] == parent
        if path not in feeding:
            reasons[path] = "skipped: a side branch, does not feed the explained output"
        elif path in passed_over:
            reasons[path] = "skipped: dropout, identity or a strided 1x1 convolution"
        elif lifted.vmap_members(path):
            reasons[path] = f"skipped: one of {lifted.vmap_members(path)} parallel members of an nn.vmap (name one)"
        elif any(path.startswith(a + "/") for a in attention_paths):
            reasons[path] = "skipped: inside an attention submodule"
        elif before and (
            one or (after_one and "Norm" in kind and reasons.get(spatial[i - 1], "").startswith("skipped"))
        ):
            reasons[path] = "skipped: a 1x1 convolution shortcut"
        else:
            reasons[path] = "feeds the output"
    kept = [p for p in spatial if reasons[p] == "feeds the output"]
    if kept:
        reasons[kept[-1]] = "chosen: the last spatial map feeding the output"
    return [Candidate(p, tuple(shapes[p].shape), reasons[p]) for p in spatial]


def _feeding(closed, names: list[str]) -> set[str]:
    """The names of the jaxpr's inputs (one per name, in order) that its outputs depend on, read
    from the equations (an equation's outputs depend on all its inputs: conservative)."""
    jaxpr = closed.jaxpr
    labels: dict = {}
    for name, var in zip(names, jaxpr.invars):
        labels[var] = {name}
    for eqn in jaxpr.eqns:
        found: set[str] = set()
        for var in eqn.invars:
            if not isinstance(var, Literal):
                found |= labels.get(var, set())
        if found:
            for var in eqn.outvars:
                labels[var] = found
    reached: set[str] = set()
    for var in jaxpr.outvars:
        if not isinstance(var, Literal):
            reached |= labels.get(var, set())
    return reached


def default_layer(model, variables, images) -> str:
    """The layer explained when `layer=None` (every layer method's default): the layer the model names
    itself, as a `default_layer` attribute (GoogLeNet: "inception_5b-output", MATLAB's), else the last
    submodule whose output is a spatial map (B, h, w, C) with h*w > 1, or (B, l, C) / (B, d, h, w, C)
    for signals and volumes (torchcam's automatic layer;
    `is_spatial_map`) that feeds the model's logits, skipping side branches, attention internals and
    1x1 shortcuts (`explain_default_layer` lists the candidates and why). ValueError saying to pass
    `layer` when there is none."""
    named = getattr(unwrap(model), "default_layer", None)
    if isinstance(named, str):
        return named
    chosen = [c.path for c in explain_default_layer(model, variables, images) if c.reason.startswith("chosen")]
    if not chosen:
        raise ValueError(
            "no submodule outputs a spatial map (B, h, w, C) with h*w > 1 that feeds the output; pass `layer` (a path)"
        )
    return chosen[0]


def resolve_layer(model, variables, images, layer: str | None) -> tuple[str, jax.ShapeDtypeStruct]:
    """(Flax path, output shape) of `layer` (None: `default_layer`); `UnknownLayerError` listing
    valid paths otherwise."""
    if layer is None:
        layer = default_layer(model, variables, images)
    shapes = layer_shapes(model, variables, images)
    for path in candidate_paths(layer):
        if path in shapes:
            return path, shapes[path]
    for path in shapes:  # a path followed by element selectors (`elements`): its own entry
        if any(elements.split_selectors(c, path) for c in candidate_paths(layer)):
            return layer, _element_shapes(model, variables, images, layer)
    aliases = keras.aliases(unwrap(model)) if keras.is_model(unwrap(model)) else {}
    for alias in candidate_paths(layer):  # a Keras name written without its per-instance number
        found = [path for path in aliases.get(alias, ()) if path in shapes]
        if len(found) > 1:
            raise AmbiguousLayerError(layer, found)
        if found:
            return found[0], shapes[found[0]]
    raise unknown_layer(layer, shapes)


def _element_shapes(model, variables, images, layer: str) -> jax.ShapeDtypeStruct:
    """Shape and dtype of the output element `layer` (a path with selectors, `elements`)."""

    def run(variables, images):
        with tap([layer]) as tapped:
            call_model(model, variables, images)
        return tapped.by_name([layer])[layer]

    return jax.eval_shape(run, variables, images)


class FlatLayerError(ValueError):
    """A layer whose output has no spatial or token axis ((B, C), a scalar per image), asked of a
    method that lays its map out over the layer's positions; the message lists layers that qualify."""


def resolve_map_layer(model, variables, images, layer: str | None, reshape=None) -> tuple[str, jax.ShapeDtypeStruct]:
    """`resolve_layer` for the methods that weigh a layer's positions (the CAM family): its output must
    be a map `(B, *s, C)` or tokens `(B, N, C)` (or come with a `reshape` hook). A flat output (B, C)
    would give a "map" over its channels: a `FlatLayerError` naming the layers that qualify instead."""
    path, shape = resolve_layer(model, variables, images, layer)
    if reshape is None and len(shape.shape) < 3:
        shapes = layer_shapes(model, variables, images)
        fit = [p for p, s in shapes.items() if len(s.shape) >= 3]
        listed = ", ".join(fit[-8:]) if fit else "none: pass `reshape` or explain the input (saliency, occlusion)"
        raise FlatLayerError(
            f"layer {layer or path!r} outputs {tuple(shape.shape)}, no spatial or token axis to lay a map on; "
            f"layers that qualify (the last {min(len(fit), 8)}): {listed}"
        )
    return path, shape


def forward_with_layer(model, variables, images, path: str, delta: jax.Array | None = None):
    """(the model's outputs, activation at `path`), with `delta` added to that activation if given."""
    with tap([path], {path: delta} if delta is not None else None) as tapped:
        outputs = call_model(model, variables, images)
    return outputs, tapped.outputs[path]

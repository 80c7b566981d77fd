"""Attention taps: read, and perturb, the post-softmax attention probabilities of an unmodified model.

The transformer methods (`attention_rollout`, `generic_attention`, `legrad`) need each self-attention
submodule's probabilities A (B, heads, queries, keys) and the gradient of a score with respect to
them. They come from the layer taps' mechanism: while an `attention_tap` is open, the function that
turns queries and keys into probabilities is wrapped, records A for the attention submodule running
now, by its path (`"encoder/block0/attn"`), and adds a perturbation `delta`; the gradient with
respect to `delta` at zero is the gradient with respect to A. The model's code does not change.

Supported attention modules: linen `nn.MultiHeadDotProductAttention` (and `nn.SelfAttention`,
`nn.MultiHeadAttention`), NNX `nnx.MultiHeadAttention` and Equinox `eqx.nn.MultiheadAttention`,
each with its default `attention_fn`, and Keras `keras.layers.MultiHeadAttention` (its explicit-scores
path forced while a tap is open; flash attention is not read). The fused
`jax.nn.dot_product_attention`, called by any submodule (its path: the innermost submodule running
it), is replaced while a tap is open by the same computation done explicitly (softmax of the scaled
scores, with `bias`, `mask` and `is_causal`; grouped-query heads repeated), whose probabilities are
read; calls with sequence lengths, a local window or `return_residual` run the original, unread.
A model that computes its softmax inline names where the probabilities are with
`taps.attention_at(model, ...)`: a submodule whose output they are (equimo's `attn_drop`) or the
function that returns them (see `AttentionTapped.see` and `_watched_function`). The submodule path comes from linen's interceptor, or for NNX and Equinox from
`adapters.hooks` (the hooked call that is running). A module called on different query and key/value
inputs is cross-attention; the methods refuse it as a block. (Inputs are compared by identity: an
Equinox block calling `attn(x, x, x)` is self-attention, `jax.vmap(attn)(x, x, x)` is not seen as such,
since vmap hands each argument its own tracer; call the attention inside the vmapped function.)

What this relies on inside Flax and Equinox (checked against flax 0.12.8 and equinox 0.13.8; nothing
else in the library does) is in `_WEIGHTS`, `_framed_call` and `_watched_weights` below:
- each library's default `dot_product_attention` looks up the module-level function
  `dot_product_attention_weights` by name when called, and that function returns the post-softmax
  probabilities (batch..., heads, queries, keys) (Equinox: (queries, keys), vmapped over heads);
- NNX's `dot_product_attention` takes the fused `jax.nn.dot_product_attention` unless it is given a
  `module`, which `MultiHeadAttention` passes when called with `sow_weights=True`: the tap passes it,
  then drops the `module` argument on the way into the weights function, so nothing is sown and the
  module's state is unchanged.
While a tap is open these attributes are replaced through `patching.patched` (for the thread that
opened it only; restored when the last thread using them is done).

The same places carry LRP's rules inside attention (`RelevanceRules`, for `attn_lrp` and `cp_lrp`):
the probabilities' gradient halved (AttnLRP) or cut (CP-LRP), and the product of probabilities and
values halved (AttnLRP) at the attention submodule's output, or inside the explicit
`jax.nn.dot_product_attention`. An attention submodule that runs without its probabilities being
read (a custom `attention_fn`, Keras flash attention) is listed in `AttentionLayout.unread`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradcam_jax._src import patching
from gradcam_jax._src.adapters import hooks, internals, lifted, taps
from gradcam_jax._src.relevance.rules import scaled_gradient

# (module, attribute): the probability functions wrapped while a tap is open. Each library's default
# attention calls its module's global `dot_product_attention_weights` by name at call time.
_WEIGHTS = (
    ("flax.linen.attention", "dot_product_attention_weights"),
    ("flax.nnx.nn.attention", "dot_product_attention_weights"),
    ("equinox.nn._attention", "dot_product_attention_weights"),
)

ATTENTION_MODULES = (
    "linen nn.MultiHeadDotProductAttention, nnx.MultiHeadAttention, eqx.nn.MultiheadAttention, "
    "keras.layers.MultiHeadAttention, jax.nn.dot_product_attention; elsewhere name them with "
    "gradcam_jax.attention_at(model, ...)"
)


class Frame(NamedTuple):
    """An attention submodule inside its call: its path, whether its queries, keys and values are
    one input (self-attention), and whether the `module` argument the weights function gets was
    put there by this file (NNX, to avoid the fused path) and must not sow."""

    path: str
    self_attention: bool
    drop_module: bool = False


class _Frames(threading.local):
    def __init__(self):
        self.stack: list[Frame] = []


_frames = _Frames()


def _entered(path: str) -> None:
    """Tell the open attention taps that the attention submodule at `path` runs (read or not)."""
    for tapped in taps.open_taps():
        if isinstance(tapped, AttentionTapped) and path not in tapped.entered:
            tapped.entered.append(path)


@contextlib.contextmanager
def _inside(frame: Frame) -> Iterator[None]:
    _entered(frame.path)
    _frames.stack.append(frame)
    try:
        yield
    finally:
        _frames.stack.pop()


def is_self_attention(query, key=None, value=None) -> bool:
    """Whether keys and values (None: the query, as linen and NNX default them) are the query itself."""
    key = query if key is None else key
    value = key if value is None else value
    return key is query and value is query


class AttentionTapped(taps.Tapped):
    """A layer tap that also sees attention: `probabilities[path]` (B, heads, queries, keys) of every
    attention submodule in call order, `self_attention[path]`, and the layer outputs as `Tapped`.
    `perturb_attention[path]` is added to that submodule's probabilities; the outputs of the layers
    in `detach` go on through the model without gradient (recorded with theirs): LeGrad's
    per-block scores then reach only their own block's attention."""

    def __init__(
        self,
        layers: Iterable[str] | None = (),
        perturb_attention: Mapping[str, jax.Array] | None = None,
        detach: Iterable[str] = (),
    ):
        super().__init__(layers, {})
        self.perturb_attention = dict(perturb_attention or {})
        self.detach = set(detach)
        self.probabilities: dict[str, jax.Array] = {}
        self.self_attention: dict[str, bool] = {}
        self.places: tuple[str, ...] = ()  # `attention_at` submodule paths (set by `forward`)
        self.entered: list[str] = []  # attention submodules that ran (read or not), in call order

    def see_attended(self, frame: Frame, attended):
        """The product probabilities x values of the explicit `jax.nn.dot_product_attention` in
        `frame`, before the heads are merged; returned as is (`RelevanceRules` changes its gradient)."""
        return attended

    def see(self, path: str, out):
        if isinstance(out, jax.Array) and any(matches(path, place) for place in self.places):
            out = self.see_attention(Frame(path.rpartition("/")[0] or path, True), out)
        out = super().see(path, out)
        return jax.lax.stop_gradient(out) if path in self.detach else out

    def see_attention(self, frame: Frame, probabilities, strict: bool = True):
        """Record the probabilities of the submodule in `frame` (its first call only); return them,
        perturbed if asked. Not `strict` (a named function): other shapes pass unread."""
        if frame.path in self.probabilities:
            return probabilities
        seen, levels = internals.unbatch(probabilities, self.entry_trace)  # Equinox: per image and head
        if seen.ndim != 4 and not strict:
            return probabilities
        if seen.ndim != 4:
            raise TypeError(
                f"attention {frame.path!r} gives probabilities of shape {tuple(seen.shape)}; "
                "expected (batch, heads, queries, keys)"
            )
        self.probabilities[frame.path] = seen
        self.self_attention[frame.path] = frame.self_attention
        if frame.path in self.perturb_attention:
            delta = self.perturb_attention[frame.path].astype(probabilities.dtype)
            probabilities = probabilities + internals.rebatch(delta, levels)
        return probabilities


def matches(path: str, place: str) -> bool:
    """Whether submodule `path` is the `attention_at` place `place` (`*` matching one segment; '-'
    may stand for '/')."""
    parts = path.split("/")
    for candidate in taps.candidate_paths(place):
        wanted = candidate.split("/")
        if len(wanted) == len(parts) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted)):
            return True
    return False


@contextlib.contextmanager
def attention_tap(
    layers: Iterable[str] | None = (),
    perturb_attention: Mapping[str, jax.Array] | None = None,
    detach: Iterable[str] = (),
) -> Iterator[AttentionTapped]:
    """Within this context, models run by `taps.call_model` record their attention probabilities (and
    the outputs of `layers`, every output if None) into the yielded `AttentionTapped`."""
    tapped = AttentionTapped(layers, perturb_attention, detach)
    with _watching(), taps.opened(tapped), nn.intercept_methods(_linen_frames):
        yield tapped


@contextlib.contextmanager
def _placed(model, tapped: AttentionTapped) -> Iterator[None]:
    """The `attention_at` places of `model` given to `tapped`, the named functions wrapped meanwhile."""
    places = taps.attention_places(model)
    tapped.places = tuple(p for p in places if isinstance(p, str))
    functions = [(owner, name, _watched_function) for owner, name in (p for p in places if not isinstance(p, str))]
    with patching.all_patched(functions):
        yield


class _LinenCalls(threading.local):
    def __init__(self):
        self.stack: list[tuple[str, tuple]] = []  # (path, positional arguments) of linen submodules in their call


_linen_calls = _LinenCalls()


def running_frame() -> Frame | None:
    """The attention frame a function called now belongs to: the innermost attention submodule's, else
    the innermost submodule running (NNX / Equinox / Keras hooks, or linen), self-attention when it
    was called on one input (or the same one thrice)."""
    if _frames.stack:
        return _frames.stack[-1]
    running = hooks.running() or (_linen_calls.stack[-1] if _linen_calls.stack else None)
    if running is None:
        return None
    path, args = running
    return Frame(path, len(args) == 1 or (len(args) >= 2 and is_self_attention(*args[:3])))


def _linen_frames(next_fun, args, kwargs, context):
    """Linen interceptor: a `MultiHeadDotProductAttention` call runs inside its `Frame`; every
    submodule call is on `_linen_calls` (whose a fused attention is)."""
    module = context.module
    if context.method_name != "__call__":
        return next_fun(*args, **kwargs)
    if not isinstance(module, nn.MultiHeadDotProductAttention):
        if not module.path:
            return next_fun(*args, **kwargs)
        _linen_calls.stack.append(("/".join(module.path), args))
        try:
            return next_fun(*args, **kwargs)
        finally:
            _linen_calls.stack.pop()
    query = args[0] if args else kwargs.get("inputs_q")
    key = args[1] if len(args) > 1 else kwargs.get("inputs_k", kwargs.get("inputs_kv"))
    value = args[2] if len(args) > 2 else kwargs.get("inputs_v", kwargs.get("inputs_kv"))
    with _inside(Frame(lifted.iteration_path("/".join(module.path)), is_self_attention(query, key, value))):
        return next_fun(*args, **kwargs)


def _framed_call(original: Callable, force_unfused: bool) -> Callable:
    """An NNX or Equinox attention class's `__call__`, run inside its `Frame` when it is a submodule
    of the model running now (`hooks.path_of`)."""

    def call(self, *args, **kwargs):
        path = hooks.path_of(self)
        if path is None:
            return original(self, *args, **kwargs)
        query, key, value = (*args, None, None, None)[:3]
        forced = force_unfused and not kwargs.get("sow_weights", False)
        if forced:
            kwargs = {**kwargs, "sow_weights": True}  # NNX: the path that computes the probabilities
        with _inside(Frame(path, is_self_attention(query, key, value), forced)):
            return original(self, *args, **kwargs)

    return call


def _framed_unfused(original: Callable) -> Callable:
    """`_framed_call` for NNX (forced off the fused path; see the module doc)."""
    return _framed_call(original, True)


def _framed(original: Callable) -> Callable:
    """`_framed_call` for Equinox."""
    return _framed_call(original, False)


def _watched_weights(original: Callable) -> Callable:
    """`original` (a library's `dot_product_attention_weights`), its result passed to the open
    attention taps with the attention submodule running now."""
    signature = inspect.signature(original)

    def weights(*args, **kwargs):
        frame = _frames.stack[-1] if _frames.stack else None
        if frame is None:
            return original(*args, **kwargs)
        if frame.drop_module:  # sow_weights was ours: the library must not sow
            bound = signature.bind(*args, **kwargs)
            bound.arguments["module"] = None
            args, kwargs = bound.args, bound.kwargs
        probabilities = original(*args, **kwargs)
        for tapped in taps.open_taps():
            if isinstance(tapped, AttentionTapped):
                probabilities = tapped.see_attention(frame, probabilities)
        return probabilities

    return weights


def _watched_function(original: Callable) -> Callable:
    """A function named by `attention_at` (it returns attention probabilities), its result passed to
    the open attention taps with the submodule running it (`running_frame`)."""

    def function(*args, **kwargs):
        probabilities = original(*args, **kwargs)
        frame = running_frame()
        if frame is None or not hasattr(probabilities, "ndim"):
            return probabilities
        for tapped in taps.open_taps():
            if isinstance(tapped, AttentionTapped):
                probabilities = tapped.see_attention(frame, probabilities, strict=False)
        return probabilities

    return function


def _explicit_attention(original: Callable) -> Callable:
    """`jax.nn.dot_product_attention`, computed explicitly inside a submodule (`running_frame`) so its
    probabilities (..., heads, queries, keys) are read and perturbed; the original elsewhere."""

    def dot_product_attention(query, key, value, bias=None, mask=None, *, scale=None, is_causal=False, **options):
        frame = running_frame()
        if frame is None or any(v not in (None, False) for k, v in options.items() if k != "implementation"):
            return original(query, key, value, bias, mask, scale=scale, is_causal=is_causal, **options)
        heads, depth = query.shape[-2], query.shape[-1]
        if key.shape[-2] != heads:  # grouped-query attention: each key/value head serves several
            key, value = (jnp.repeat(a, heads // key.shape[-2], axis=-2) for a in (key, value))
        scale = depth**-0.5 if scale is None else scale
        logits = jnp.einsum("...tnh,...snh->...nts", query, key, preferred_element_type=jnp.float32) * scale
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        if is_causal:
            queries, keys = logits.shape[-2:]
            causal = jnp.tril(jnp.ones((queries, keys), bool))
            mask = causal if mask is None else jnp.logical_and(mask, causal)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        probabilities = jax.nn.softmax(logits, axis=-1).astype(query.dtype)
        for tapped in taps.open_taps():
            if isinstance(tapped, AttentionTapped):
                probabilities = tapped.see_attention(frame, probabilities)
        attended = jnp.einsum("...nts,...snh->...tnh", probabilities, value)
        for tapped in taps.open_taps():
            if isinstance(tapped, AttentionTapped):
                attended = tapped.see_attended(frame, attended)
        return attended

    return dot_product_attention


def _keras_framed(original: Callable) -> Callable:
    """`keras.layers.MultiHeadAttention.call` (query, value, key=None, ...), inside its `Frame`."""

    def call(self, *args, **kwargs):
        path = hooks.path_of(self)
        if path is None or getattr(self, "_flash_attention", False):
            if path is not None:
                _entered(path)  # flash attention: it runs unread
            return original(self, *args, **kwargs)
        query, value, key = (*args, None, None, None)[:3]
        query = kwargs.get("query", query)
        value = kwargs.get("value", value)
        key = kwargs.get("key", key)
        with _inside(Frame(path, is_self_attention(query, value if key is None else key, value))):
            return original(self, *args, **kwargs)

    return call


def _keras_scores(original: Callable) -> Callable:
    """`MultiHeadAttention._compute_attention`, asked for its scores inside a frame: the explicit path
    (softmax, then `_masked_softmax`) rather than the fused one."""
    signature = inspect.signature(original)

    def compute(self, *args, **kwargs):
        if not (_frames.stack and _frames.stack[-1].path == hooks.path_of(self)):
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.arguments["return_attention_scores"] = True
        return original(*bound.args, **bound.kwargs)

    return compute


def _keras_softmax(original: Callable) -> Callable:
    """`MultiHeadAttention._masked_softmax`, its probabilities passed to the open attention taps."""

    def softmax(self, *args, **kwargs):
        probabilities = original(self, *args, **kwargs)
        if not (_frames.stack and _frames.stack[-1].path == hooks.path_of(self)):
            return probabilities
        for tapped in taps.open_taps():
            if isinstance(tapped, AttentionTapped):
                probabilities = tapped.see_attention(_frames.stack[-1], probabilities)
        return probabilities

    return softmax


def _watching() -> contextlib.AbstractContextManager:
    """Wrap the probability functions and the NNX/Equinox attention classes' `__call__` in this thread
    (restored on exit). The wraps are these module functions, so a nested tap wraps nothing twice."""
    return patching.all_patched(_patches())


def _patches() -> list[tuple[object, str, Callable[[Callable], Callable]]]:
    """(owner, attribute, wrap) for every library loaded now (Equinox only if imported)."""
    patches: list[tuple[object, str, Callable[[Callable], Callable]]] = []
    for module_name, name in _WEIGHTS:
        if module_name.startswith("equinox") and "equinox" not in sys.modules:
            continue
        patches.append((importlib.import_module(module_name), name, _watched_weights))
    from flax import nnx

    patches.append((nnx.MultiHeadAttention, "__call__", _framed_unfused))
    if "equinox" in sys.modules:
        patches.append((sys.modules["equinox"].nn.MultiheadAttention, "__call__", _framed))
    patches.append((jax.nn, "dot_product_attention", _explicit_attention))
    if "keras" in sys.modules:
        mha = sys.modules["keras"].layers.MultiHeadAttention
        patches += [(mha, "call", _keras_framed), (mha, "_compute_attention", _keras_scores)]
        patches.append((mha, "_masked_softmax", _keras_softmax))
    return patches


# --- what the methods need: the attention submodules, the blocks holding them -----------------------


class AttentionLayout(NamedTuple):
    """What a model's forward pass shows, without running it (`jax.eval_shape`)."""

    probabilities: dict[str, jax.ShapeDtypeStruct]  # attention path -> (B, heads, queries, keys), call order
    self_attention: dict[str, bool]  # attention path -> whether it is self-attention
    outputs: dict[str, jax.ShapeDtypeStruct]  # every submodule's output, by path, in call order
    model_outputs: object  # the shapes of what the model returns
    unread: tuple[str, ...] = ()  # attention submodules that ran without their probabilities being read


class Block(NamedTuple):
    path: str  # the block (its output: the tokens LeGrad scores)
    attention: str  # the self-attention submodule inside it


def attention_layout(model, variables, images) -> AttentionLayout:
    """The attention submodules of `model` on `images`, and every submodule's output shape."""
    order: dict[str, list] = {}

    def run(variables, images):
        with attention_tap(None) as tapped, _placed(model, tapped):
            model_outputs = taps.call_model(model, variables, images)
        order.update(attention=list(tapped.probabilities), outputs=list(tapped.outputs))
        order["unread"] = [p for p in tapped.entered if p not in tapped.probabilities]
        order["self"] = [tapped.self_attention[p] for p in tapped.probabilities]
        return tapped.probabilities, tapped.outputs, model_outputs

    probabilities, outputs, model_outputs = jax.eval_shape(run, variables, images)  # dicts come back sorted
    return AttentionLayout(
        {p: probabilities[p] for p in order["attention"]},
        dict(zip(order["attention"], order["self"])),
        {p: outputs[p] for p in order["outputs"]},
        model_outputs,
        tuple(order["unread"]),
    )


def resolve_blocks(layout: AttentionLayout, blocks: Iterable[str] | None = None) -> tuple[Block, ...]:
    """The blocks to explain: `blocks` (paths; '-' may stand for '/'), each holding one
    self-attention submodule (or naming it), or by default the parent of every self-attention
    submodule in call order (the submodule itself where its parent holds several or is the model).
    One ValueError, listing the valid blocks, for anything else."""
    selfs = [p for p, own in layout.self_attention.items() if own]
    if not layout.probabilities:
        raise ValueError(f"the model has no attention submodule ({ATTENTION_MODULES}, default attention_fn)")
    if not selfs:
        raise ValueError(f"the model's attention submodules are all cross-attention: {', '.join(layout.probabilities)}")

    def inside(block: str) -> list[str]:
        return [p for p in layout.probabilities if p == block or p.startswith(block + "/")]

    def parent_block(attention: str) -> Block:
        parent = attention.rpartition("/")[0]
        if parent and parent in layout.outputs and inside(parent) == [attention]:
            return Block(parent, attention)
        return Block(attention, attention)

    default = tuple(parent_block(p) for p in selfs)
    if blocks is None:
        return default
    if isinstance(blocks, str):
        blocks = (blocks,)
    valid = ", ".join(b.path for b in default)
    resolved = []
    for name in blocks:
        path = next((p for p in taps.candidate_paths(name) if p in layout.outputs or inside(p)), None)
        found = inside(path) if path is not None else []
        own = [p for p in found if layout.self_attention[p]]
        if not found:
            raise ValueError(f"block {name!r} holds no attention submodule; valid blocks: {valid}")
        if not own:
            raise ValueError(f"block {name!r} holds cross-attention only ({', '.join(found)}); valid blocks: {valid}")
        if len(own) > 1:
            raise ValueError(f"block {name!r} holds {len(own)} self-attention submodules; name one: {', '.join(own)}")
        resolved.append(Block(path, own[0]))  # pyright: ignore[reportArgumentType]  # path is set when found
    return tuple(resolved)


def forward(model, variables, images, perturb_attention=None, layers=(), detach=()):
    """(the model's outputs, the `AttentionTapped` of one forward pass)."""
    with attention_tap(layers, perturb_attention, detach) as tapped, _placed(model, tapped):
        outputs = taps.call_model(model, variables, images)
    return outputs, tapped


def has_attention(model, variables, images) -> bool:
    """Whether `model` has a self-attention submodule the transformer methods can read."""
    return any(attention_layout(model, variables, images).self_attention.values())


def zeros_like(shapes: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, jax.Array]:
    """Zero perturbations for the probabilities with these shapes."""
    return {p: jnp.zeros(s.shape, s.dtype) for p, s in shapes.items()}


# --- LRP inside attention: AttnLRP's and CP-LRP's rules ---------------------------------------------


class RelevanceRules(AttentionTapped):
    """The rules of AttnLRP (Achtibat et al., ICML 2024) or CP-LRP (Ali et al., ICML 2022) inside
    every attention it reads, as lxt 2.1's efficient mode applies them (gradient x input, the backward
    pass carrying g = R / a; `relevance.rules`):

    - AttnLRP: the softmax's rule is its gradient; the two bilinear products q k^T and A v get the
      uniform rule (each factor half the relevance): the probabilities' cotangent is halved (q and
      k each get a quarter, through the softmax and the scaled scores, lxt's `divide_gradient(q, 4)`),
      and so is the attention module's output (v gets half: the output projection is linear in the
      relevance), or, in the explicit `jax.nn.dot_product_attention`, the product A v itself;
    - CP-LRP (`conservative`): the probabilities carry no gradient (lxt's `stop_gradient` on q and k):
      the attention is a fixed linear map of the values, whose relevance it passes whole."""

    def __init__(self, conservative: bool):
        super().__init__((), None, ())
        self.conservative = conservative
        self.attended: set[str] = set()  # frames whose A v product got its rule inside

    def see_attention(self, frame: Frame, probabilities, strict: bool = True):
        probabilities = super().see_attention(frame, probabilities, strict)
        if frame.path not in self.probabilities:  # a named function's other outputs: not attention
            return probabilities
        if self.conservative:
            return jax.lax.stop_gradient(probabilities)
        return scaled_gradient(probabilities, 0.5)

    def see_attended(self, frame: Frame, attended):
        if self.conservative:
            return attended
        self.attended.add(frame.path)
        return scaled_gradient(attended, 0.5)

    def see(self, path: str, out):
        out = super().see(path, out)
        if self.conservative or path not in self.probabilities or path in self.attended:
            return out
        return scaled_gradient(out, 0.5) if isinstance(out, jax.Array) else out


@contextlib.contextmanager
def relevance_rules(model, conservative: bool) -> Iterator[RelevanceRules]:
    """Within this context, models run by `taps.call_model` get `RelevanceRules` in their attention."""
    tapped = RelevanceRules(conservative)
    with _watching(), taps.opened(tapped), nn.intercept_methods(_linen_frames), _placed(model, tapped):
        yield tapped

"""Running a model with LRP's backward pass: which rule each layer gets (`plan`, read from one
shape-only trace of the model, before any heavy work), and the forward pass whose gradient is the
relevance (`Propagating`, a tap on every submodule call).

`plan` sees every submodule call (its path, its class, its input and output) and decides:
- linear layers (Dense, Conv) get the composite's rule; the first one called is the *first layer*,
  whose input relevance is the explanation (a zero probe collects it: `rules.apply_rule`);
- a batch norm whose input is a linear layer's output is folded into that layer (zennit's
  `SequentialMergeBatchNorm`): the pair is one linear layer for the rule; any other batch norm, and
  parameter-free normalisations (LRN), pass relevance through (`rules.passed`);
- LayerNorms and RMSNorms get the composite's `norm` rule (`DetachedStd`, AttnLRP's) where it has one,
  and other layers with parameters its `other` rule where that is `Gradient` (they keep their own
  backward pass: position embeddings, class tokens);
- any other layer with parameters of its own that no rule covers is an error naming its class and
  paths, as is a composite naming a path the model does not call.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradcam_jax._src.adapters import hooks, internals, layers, taps
from gradcam_jax._src.relevance import rules as R
from gradcam_jax._src.relevance.composites import Composite


class LayerCall(NamedTuple):
    path: str
    type: str  # the class name
    kind: str  # layers.LINEAR, BATCH_NORM, LAYER_NORM or OTHER
    conv: bool
    parameters: bool  # holds parameters of its own
    normalisation: bool  # parameter-free normalisation (LRN)
    fused: bool  # a linear layer with an activation of its own (Keras)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `Propagating` does at each path: `rules` for linear layers, `folded` {batch norm path:
    linear path}, `passing` paths (unfolded batch norms, LRNs), the `first` layer's path and the
    shape of its input (one image: the probe's, after the model's own vmaps are undone)."""

    rules: tuple[tuple[str, R.Rule], ...]
    folded: tuple[tuple[str, str], ...]
    passing: frozenset[str]
    first: str
    probe_shape: tuple[int, ...]
    norms: frozenset[str] = frozenset()  # LayerNorm / RMSNorm paths with the std detached (`rules.normalised`)


class _Recorder(taps.Tapped):
    """Records each submodule call (a shape-only trace) and which outputs feed which inputs."""

    def __init__(self):
        super().__init__(layers=(), perturb={})
        self.calls: list[LayerCall] = []
        self.inputs: dict[str, object] = {}
        self.outputs: dict[str, object] = {}
        self.first_input_shape: dict[str, tuple[int, ...]] = {}

    def see(self, path, out):
        call = hooks.seeing()
        if call is None or path in self.outputs:
            return out
        module = call.module
        kind = layers.kind(module)
        x = call.args[0] if call.args else None
        self.calls.append(
            LayerCall(path, layers.type_name(module), kind, "Conv" in layers.type_name(module),
                      kind == layers.LINEAR or layers.has_parameters(module), layers.is_normalisation(module),
                      layers.fused_activation(module))
        )  # fmt: skip
        self.inputs[path], self.outputs[path] = x, out
        if kind == layers.LINEAR and hasattr(x, "shape"):
            full, _ = internals.unbatch(x, self.entry_trace)
            self.first_input_shape[path] = tuple(full.shape)
        return out


def plan(model, variables, images, composite: Composite, method: str = "lrp") -> Plan:
    """The `Plan` of `composite` on `model` (one shape-only trace); one-line ValueError for a layer
    with parameters no rule covers, a composite path the model does not call, a first-layer-only
    rule elsewhere, or a model whose layers cannot be seen."""
    recorder = _Recorder()

    def run(variables, images):
        with taps.opened(recorder):
            taps.call_model(model, variables, images)

    jax.eval_shape(run, variables, images)
    calls = recorder.calls
    if not calls:
        raise ValueError(
            f"{method}: no layer of the model could be seen; LRP reads linen, NNX, Equinox and Keras "
            "layers (Dense, Conv, BatchNorm) called as submodules"
        )
    linear = [c for c in calls if c.kind == layers.LINEAR]
    if not linear:
        raise ValueError(f"{method}: the model calls no Dense or Conv layer for the rules to act on")
    named = composite.named()

    def named_rule(c: LayerCall) -> R.Rule | None:  # the composite's rule for this layer by path, then class
        return named.get(c.path) or named.get(c.type)

    paths = {c.path for c in calls}
    unknown = [key for key in named if key not in paths and key not in {c.type for c in calls}]
    if unknown:
        raise ValueError(
            f"{method}: the composite names {unknown}, which the model does not call (layers: {sorted(paths)})"
        )
    first = linear[0].path
    chosen: dict[str, R.Rule] = {}
    for c in linear:
        rule = named_rule(c)
        if rule is None:
            rule = composite.first if (c.path == first and composite.first is not None) else (
                composite.conv if c.conv else composite.dense)  # fmt: skip
        if rule.first_layer_only and c.path != first:
            raise ValueError(f"{method}: the {rule.name} rule is for the first layer ({first}), not {c.path}")
        chosen[c.path] = rule
    folded, passing, norms, kept = {}, set(), set(), set()
    # a batch norm folds into the linear layer whose output it takes (not past a fused activation)
    by_output = {id(recorder.outputs[c.path]): c.path for c in linear if not c.fused}
    for c in calls:
        if c.kind == layers.BATCH_NORM:
            source = by_output.get(id(recorder.inputs[c.path]))
            if source is not None and recorder.inputs[c.path] is recorder.outputs[source]:
                folded[c.path] = source
            else:
                passing.add(c.path)
        elif c.normalisation or isinstance(named_rule(c), R.Pass):
            passing.add(c.path)
        elif c.kind == layers.LAYER_NORM and isinstance(named_rule(c) or composite.norm, R.DetachedStd):
            norms.add(c.path)
        elif c.kind == layers.OTHER and isinstance(named_rule(c) or composite.other, R.Gradient):
            kept.add(c.path)  # its parameters add constants: relevance follows its gradient
    uncovered: dict[str, list[str]] = {}
    for c in calls:
        if c.parameters and c.kind in (layers.OTHER, layers.LAYER_NORM) and c.path not in passing | norms | kept:
            uncovered.setdefault(c.type, []).append(c.path)
    if uncovered:
        kinds = "; ".join(f"{t} at {', '.join(p[:3])}{' ...' if len(p) > 3 else ''}" for t, p in uncovered.items())
        raise ValueError(
            f"{method}: no LRP rule covers {kinds}; map them in the composite (layers=((name, rule), ...)) "
            "or use attn_lrp for transformers"
        )
    return Plan(
        tuple(chosen.items()),
        tuple(folded.items()),
        frozenset(passing),
        first,
        recorder.first_input_shape[first],
        frozenset(norms),
    )


class Propagating(taps.Tapped):
    """A tap that gives every layer its rule's backward pass (`plan`); `probe` (B, *probe_shape)
    zeros whose gradient is the first layer's input relevance."""

    def __init__(self, the_plan: Plan, probe: jax.Array):
        super().__init__(layers=(), perturb={})
        self.plan = the_plan
        self.rules = dict(the_plan.rules)
        self.folded = dict(the_plan.folded)
        self.folding = set(self.folded.values())  # linear layers whose batch norm is folded into them
        self.probe = probe
        self.stash: dict[str, tuple] = {}
        self.busy = False  # while reading a batch norm's affine map, its calls are not layers

    def see(self, path, out):
        call = hooks.seeing()
        if call is None or self.busy or not call.args:
            return out
        module, x = call.module, call.args[0]
        if path in self.rules:
            if path in self.folding:  # its batch norm applies the rule to the pair
                self.stash[path] = (x, module)
                return jax.lax.stop_gradient(out)
            rule = self.rules[path]
            if rule.gradient and path != self.plan.first:  # LRP-0 in g = R / a terms: the layer's own gradient
                return out
            if isinstance(rule, R.Epsilon) and path != self.plan.first and not layers.fused_activation(module):
                return R.epsilon_output(out, rule.epsilon)
            return R.apply_rule(rule, x, out, linear_parts(module), self.probe_at(path, x))
        if path in self.folded:
            source = self.folded[path]
            linear_x, linear_module = self.stash[source]
            self.busy = True
            try:
                scale, shift = layers.affine(module, call.args, out.shape, out.dtype)
            finally:
                self.busy = False
            parts = folded_parts(linear_parts(linear_module), scale, shift)
            return R.apply_rule(self.rules[source], linear_x, out, parts, self.probe_at(source, linear_x))
        if path in self.plan.passing:
            return R.passed(x, out)
        if path in self.plan.norms:
            return R.normalised(x, out, layers.norm(module, x))
        return out

    def probe_at(self, path: str, x) -> jax.Array | None:
        """The probe inside the model's own vmaps (an Equinox model run per image), at the first layer."""
        if path != self.plan.first:
            return None
        _, levels = internals.unbatch(x, self.entry_trace)
        return internals.rebatch(self.probe, levels)


def linear_parts(module) -> R.Parts:
    """`rules.Parts` of a Dense or Conv layer of any supported library."""
    layer = layers.linear(module)

    def linear(x, how):
        return layer.apply(R.modified(layer.kernel, how), None, x)

    def bias(how):
        return jnp.zeros(()) if layer.bias is None or how is None else R.modified(layer.bias, how)

    return R.Parts(linear, bias)


def folded_parts(parts: R.Parts, scale: jax.Array, shift: jax.Array) -> R.Parts:
    """A linear layer followed by a batch norm y = scale * z + shift, as one linear layer (per output
    channel, scale times the kernel). Its modified kernels come from the layer's own: with a = scale,
    (a W)+ = a+ W+ + a- W-, (a W)- = a+ W- + a- W+, (a W)^2 = a^2 W^2; its bias is a b + shift."""
    a_pos, a_neg = R.positive(scale), R.negative(scale)

    def linear(x, how):
        if how == R.KEEP:
            return scale * parts.linear(x, R.KEEP)
        if how in (R.POSITIVE, R.NEGATIVE):
            same, other = (R.POSITIVE, R.NEGATIVE) if how == R.POSITIVE else (R.NEGATIVE, R.POSITIVE)
            return a_pos * parts.linear(x, same) + a_neg * parts.linear(x, other)
        if how == R.SQUARE:
            return scale * scale * parts.linear(x, R.SQUARE)
        if how == R.ONES:
            return parts.linear(x, R.ONES)
        part, gamma = R.gamma_of(how)  # W + gamma (aW)+ or (aW)-
        return linear(x, R.KEEP) + gamma * linear(x, part)

    def bias(how):
        return jnp.zeros(()) if how is None else R.modified(scale * parts.bias(R.KEEP) + shift, how)

    return R.Parts(linear, bias)

"""The rules of layer-wise relevance propagation (LRP), as zennit 0.5.1 defines them, written as
modified gradients.

LRP sends the score back layer by layer as *relevance* R. For a linear layer z = W x + b a rule
says how the relevance R_z of its outputs is shared among its inputs, e.g. the epsilon rule
(Bach et al. 2015)

    R_x = x * W^T (R_z / stab(z)),        stab(z) = z + eps * sign(z)   (sign(0) = +1)

This library propagates `g = R / a` (relevance over activation) as the cotangent of an ordinary
backward pass instead of R itself, as lxt's "efficient" AttnLRP does. Then every operation whose
rule is the gradient needs nothing: ReLU, max and average pooling (zennit's `Norm`), residual sums
(`Norm`, the proportional split), concatenation, reshapes — relevance a * g is conserved through
them by the chain rule. Only layers whose rule differs change their backward pass, and that is
done without `custom_vjp`, so models run under `jax.vmap`, `nn.scan` and `jit` alike: a layer's
output z becomes

    stop_gradient(z) + sum_i c_i * (L_i(u_i) - stop_gradient(L_i(u_i))) * stop_gradient(w_i)

the same value in the forward pass, whose gradient is the rule's g_x = R_x / x: L_i the layer with
modified parameters (W+, W-, W^2, ...), u_i the modified input (x+, x-; `where`, whose gradient is
the exact mask), w_i = z * mask_i / stab(denominator_i) turning the upper g into R / stab. For the
first layer the inputs u_i are multiplied by (1 + p), p a zero probe: d score / d p is R_x exactly,
whatever the rule (z^B, flat and w^2 give relevance that is not x * something).

Each rule is a frozen dataclass (hashable: a static option under `jit`) whose `terms` gives the
c_i, u_i, L_i and denominators for a layer `Parts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# How a rule modifies the kernel: keep it, its positive or negative part, its square, or ones.
KEEP, POSITIVE, NEGATIVE, SQUARE, ONES = "keep", "positive", "negative", "square", "ones"


def stabilize(z: jax.Array, epsilon: float) -> jax.Array:
    """zennit's stabiliser: z + epsilon * sign(z), with sign(0) = +1 (so a zero becomes epsilon)."""
    return z + epsilon * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def positive(x: jax.Array) -> jax.Array:
    """x+ = max(x, 0), with derivative exactly [x > 0] (jnp.maximum's is 1/2 at 0)."""
    return jnp.where(x > 0, x, 0)


def negative(x: jax.Array) -> jax.Array:
    """x- = min(x, 0), with derivative exactly [x < 0]."""
    return jnp.where(x < 0, x, 0)


class Parts(NamedTuple):
    """A linear layer (or a linear layer with its batch norm folded in) as the rules see it.

    linear(x, how): the layer without bias, its kernel modified `how` (KEEP, POSITIVE, ...);
    bias(how): its bias modified `how` (KEEP, POSITIVE, NEGATIVE, SQUARE, ONES, or None: zero),
    shaped to broadcast against the output."""

    linear: Callable[[jax.Array, str], jax.Array]
    bias: Callable[[str | None], jax.Array]


class Term(NamedTuple):
    """One modified forward pass of a rule: sign c, input u, kernel and bias modifications, and
    which denominator (index into `Rule.denominators`) its cotangent is divided by, under `mask`
    (None: everywhere) of the true output z."""

    sign: float
    inputs: jax.Array
    kernel: str
    bias: str | None
    denominator: int
    mask: Callable[[jax.Array], jax.Array] | None = None
    negative_inputs: bool = False  # u is x- (zero wherever x >= 0: `apply_rule` skips it then)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base of the rules: `terms(x, parts)` and how its denominators combine the terms' outputs.
    `first_layer_only`: the rule gives relevance that is not x times something (z^B, flat, w^2),
    which only the first layer's probe can collect."""

    name = "rule"
    first_layer_only = False
    gradient = False  # the layer keeps its own backward pass (`Pass` on elementwise layers)

    def terms(self, x: jax.Array, low=None, high=None) -> list[Term]:
        raise NotImplementedError

    def denominators(self, outputs: list[jax.Array]) -> list[jax.Array]:
        """The terms' outputs (each L_i(u_i) + bias_i) -> the denominators, before stabilising."""
        return [outputs[0]]

    @property
    def stabilizer(self) -> float:
        return getattr(self, "epsilon", 1e-6)


@dataclasses.dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon (Bach et al. 2015; zennit `Epsilon`): R_x = x * W^T (R / stab(z)). epsilon 0: LRP-0."""

    epsilon: float = 1e-6
    name = "epsilon"

    def terms(self, x, low=None, high=None):
        return [Term(1.0, x, KEEP, KEEP, 0)]


@dataclasses.dataclass(frozen=True)
class Gamma(Rule):
    """LRP-gamma (Montavon et al. 2019), generalised to negative inputs as zennit's `Gamma`: positive
    contributions boosted by gamma, for positive and negative outputs apart."""

    gamma: float = 0.25
    epsilon: float = 1e-6
    name = "gamma"

    def terms(self, x, low=None, high=None):
        above, below = (lambda z: z > 0), (lambda z: z < 0)
        xp, xn = positive(x), negative(x)
        return [
            Term(1.0, xp, f"gamma+{self.gamma}", f"gamma+{self.gamma}", 0, above),
            Term(1.0, xn, f"gamma-{self.gamma}", None, 0, above, True),
            Term(1.0, xp, f"gamma-{self.gamma}", f"gamma-{self.gamma}", 1, below),
            Term(1.0, xn, f"gamma+{self.gamma}", None, 1, below, True),
        ]

    def denominators(self, outputs):
        return [outputs[0] + outputs[1], outputs[2] + outputs[3]]


@dataclasses.dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta (Bach et al. 2015; zennit `AlphaBeta`): alpha times the positive contributions'
    share minus beta times the negative ones'; alpha - beta = 1. (1, 0) is z+ (`ZPlus`)."""

    alpha: float = 2.0
    beta: float = 1.0
    epsilon: float = 1e-6
    name = "alpha_beta"

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1) > 1e-12:
            raise ValueError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1; got {self.alpha}, {self.beta}")

    def terms(self, x, low=None, high=None):
        xp, xn = positive(x), negative(x)
        return [
            Term(self.alpha, xp, POSITIVE, POSITIVE, 0),
            Term(self.alpha, xn, NEGATIVE, None, 0, negative_inputs=True),
            Term(-self.beta, xp, NEGATIVE, NEGATIVE, 1),
            Term(-self.beta, xn, POSITIVE, None, 1, negative_inputs=True),
        ]

    def denominators(self, outputs):
        return [outputs[0] + outputs[1], outputs[2] + outputs[3]]


@dataclasses.dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z+ (zennit `ZPlus`: alpha 1, beta 0, negative inputs with negative weights counted)."""

    epsilon: float = 1e-6
    name = "zplus"

    def terms(self, x, low=None, high=None):
        return [
            Term(1.0, positive(x), POSITIVE, POSITIVE, 0),
            Term(1.0, negative(x), NEGATIVE, None, 0, negative_inputs=True),
        ]

    def denominators(self, outputs):
        return [outputs[0] + outputs[1]]


@dataclasses.dataclass(frozen=True)
class ZBox(Rule):
    """LRP-z^B (Montavon et al. 2017; zennit `ZBox`) for a first layer whose inputs lie in [low, high]
    (numbers, or arrays broadcasting against the layer's input, e.g. per channel)."""

    low: float | tuple = 0.0
    high: float | tuple = 1.0
    epsilon: float = 1e-6
    name = "zbox"
    first_layer_only = True

    def terms(self, x, low=None, high=None):
        low = jnp.broadcast_to(jnp.asarray(self.low if low is None else low, x.dtype), x.shape)
        high = jnp.broadcast_to(jnp.asarray(self.high if high is None else high, x.dtype), x.shape)
        return [
            Term(1.0, x, KEEP, KEEP, 0),
            Term(-1.0, low, POSITIVE, POSITIVE, 0),
            Term(-1.0, high, NEGATIVE, NEGATIVE, 0),
        ]

    def denominators(self, outputs):
        return [outputs[0] - outputs[1] - outputs[2]]


@dataclasses.dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat (zennit `Flat`): relevance spread evenly over each output's receptive field. As zennit's
    (`zero_bias`), the bias is zero, not one: the denominator counts the receptive field's inputs only."""

    epsilon: float = 1e-6
    name = "flat"
    first_layer_only = True

    def terms(self, x, low=None, high=None):
        return [Term(1.0, jnp.ones_like(x), ONES, None, 0)]


@dataclasses.dataclass(frozen=True)
class WSquare(Rule):
    """LRP-w^2 (Montavon et al. 2017; zennit `WSquare`): shares by the squared weights, for unbounded inputs."""

    epsilon: float = 1e-6
    name = "wsquare"
    first_layer_only = True

    def terms(self, x, low=None, high=None):
        return [Term(1.0, jnp.ones_like(x), SQUARE, SQUARE, 0)]


@dataclasses.dataclass(frozen=True)
class Pass(Rule):
    """zennit `Pass`: the layer's relevance goes to its input unchanged (elementwise layers:
    activations, unfolded batch norms, LRN); in this library's terms, g_x = y / x * g_y."""

    name = "pass"


@dataclasses.dataclass(frozen=True)
class Gradient(Rule):
    """The layer keeps its own backward pass (max pooling's winner takes all, zennit's default for
    layers no rule maps)."""

    name = "gradient"
    gradient = True


def modified(array: jax.Array, how: str | None) -> jax.Array:
    """A kernel or bias modified as a term asks (None: zero)."""
    if how is None:
        return jnp.zeros_like(array)
    if how == KEEP:
        return array
    if how == POSITIVE:
        return positive(array)
    if how == NEGATIVE:
        return negative(array)
    if how == SQUARE:
        return array * array
    if how == ONES:
        return jnp.ones_like(array)
    part, gamma = gamma_of(how)
    return array + gamma * modified(array, part)


def gamma_of(how: str) -> tuple[str, float]:
    """(POSITIVE or NEGATIVE, gamma) of a gamma modification: "gamma+0.25" is W + 0.25 W+, "gamma-0.25"
    W + 0.25 W- (`Gamma.terms` writes them)."""
    return (POSITIVE if how[5] == "+" else NEGATIVE), float(how[6:])


def apply_rule(rule: Rule, x: jax.Array, z: jax.Array, parts: Parts, probe=None) -> jax.Array:
    """The layer's output `z` (computed from input `x`) with the backward pass of `rule` (module doc).
    `probe`: a zero array like x (the first layer): d score / d probe is then R_x."""
    terms = rule.terms(x)
    scale = 1.0 if probe is None else 1.0 + probe
    linear_of = _skipping_negative_inputs(parts.linear, x, skip=probe is None)  # the first layer: never
    # each modified layer runs once: its output (the probe is zero) feeds the denominators, whose
    # weights are constants of the backward pass, and its gradient carries the term's share
    linears = [linear_of(t.inputs * scale, t.kernel, t.negative_inputs) for t in terms]
    outputs = [linear + parts.bias(t.bias) for linear, t in zip(linears, terms)]
    denominators = [stabilize(d, rule.stabilizer) for d in rule.denominators(outputs)]
    z_stop = jax.lax.stop_gradient(z)
    out = z_stop
    for term, linear in zip(terms, linears):
        weight = z_stop / denominators[term.denominator]
        if term.mask is not None:
            weight = jnp.where(term.mask(z_stop), weight, 0)
        out = out + carrying(jnp.zeros_like(z_stop), linear, term.sign * weight)
    return out


def carrying(value: jax.Array, carrier: jax.Array, weight: jax.Array | float = 1.0) -> jax.Array:
    """`value` in the forward pass; in the backward pass, the gradient of `carrier` times `weight`
    (`weight` a constant): stop_gradient(value) + (carrier - stop_gradient(carrier)) * stop_gradient(weight),
    the one device every rule here is built on."""
    return jax.lax.stop_gradient(value) + (carrier - jax.lax.stop_gradient(carrier)) * jax.lax.stop_gradient(weight)


def _skipping_negative_inputs(linear: Callable[[jax.Array, str], jax.Array], x: jax.Array, skip: bool):
    """`linear(u, how, negative_inputs)`: the layer on u, or zeros without running it where u = x- and
    x has no negative entry. Above the first layer a layer's input is nearly always a ReLU's output
    (or pooled from one): the x- terms of z+, alpha-beta and gamma are then convolutions of zeros,
    as costly as the rest of the rule. The test is on the values (`lax.cond`), so a negative input
    still gets its terms; under a `vmap` of the images the cond runs both branches, as before."""
    nonnegative = jnp.all(x >= 0) if skip else None

    def linear_of(u: jax.Array, how: str, negative_inputs: bool) -> jax.Array:
        if not (skip and negative_inputs):
            return linear(u, how)
        shape = jax.eval_shape(lambda u: linear(u, how), u)
        return jax.lax.cond(nonnegative, lambda u: jnp.zeros(shape.shape, shape.dtype), lambda u: linear(u, how), u)

    return linear_of


def epsilon_output(z: jax.Array, epsilon: float) -> jax.Array:
    """The epsilon rule needs no parameters: `z` whose cotangent is scaled by z / stab(z) before
    the layer's own backward pass (any linear layer: Dense, Conv, DenseGeneral, Einsum)."""
    return carrying(z, z, z / stabilize(z, epsilon))


def passed(x: jax.Array, y: jax.Array) -> jax.Array:
    """`y = f(x)` of an elementwise layer with the `Pass` rule: the cotangent g_x = y / x * g_y
    (0 where x is 0), so that relevance y * g_y reaches x unchanged."""
    return carrying(y, x, jnp.where(x == 0, 0, y / jnp.where(x == 0, 1, x)))


@dataclasses.dataclass(frozen=True)
class DetachedStd(Rule):
    """AttnLRP's and CP-LRP's rule for LayerNorm and RMSNorm (Ali et al. 2022; lxt 2.1's
    `layer_norm_forward` / `rms_norm_forward`): the normalising standard deviation is a constant, so
    the layer is affine in x and relevance follows its gradient (`normalised`)."""

    name = "detached_std"


def normalised(x: jax.Array, y: jax.Array, norm) -> jax.Array:
    """`y`, a LayerNorm's or RMSNorm's output on `x` (`norm`: an `adapters.layers.Norm`), with the
    gradient of scale * (x - mean) / stop_gradient(std) + bias: lxt's identity rule for normalisations."""
    centred = x - x.mean(norm.axes, keepdims=True) if norm.centred else x
    std = jnp.sqrt((centred * centred).mean(norm.axes, keepdims=True) + norm.epsilon)
    z = centred / jax.lax.stop_gradient(std) * norm.scale
    return carrying(y, z.astype(y.dtype))


def scaled_gradient(x: jax.Array, factor: float) -> jax.Array:
    """`x` whose cotangent is multiplied by `factor` (lxt's `divide_gradient` by 1 / factor): the
    uniform rule of a bilinear product, each factor getting half of its relevance, in g = R / a terms."""
    return carrying(x, x, factor)


RULES: dict[str, type[Rule]] = {
    "epsilon": Epsilon,
    "gamma": Gamma,
    "alpha_beta": AlphaBeta,
    "zplus": ZPlus,
    "zbox": ZBox,
    "flat": Flat,
    "wsquare": WSquare,
    "pass": Pass,
    "gradient": Gradient,
    "detached_std": DetachedStd,
}

"""Composites: which LRP rule each layer gets, by zennit 0.5.1's names and definitions.

zennit's named composites map layer *types* to rules, and some give the first linear layer (the one
nearest the input) a rule of its own:

| composite                | first layer | other convolutions | dense layers |
|--------------------------|-------------|--------------------|--------------|
| `EpsilonPlus`            | z+          | z+                 | epsilon      |
| `EpsilonAlpha2Beta1`     | alpha2beta1 | alpha2beta1        | epsilon      |
| `EpsilonPlusFlat`        | flat        | z+                 | epsilon      |
| `EpsilonAlpha2Beta1Flat` | flat        | alpha2beta1        | epsilon      |
| `EpsilonGammaBox`        | z^B         | gamma              | epsilon      |

and all of them pass relevance through activations, batch norms that follow no linear layer, and
normalisations (`Pass`), split it proportionally at sums and average pools (`Norm`, which this
library's backward pass does by itself) and keep max pooling's gradient. A batch norm right after a
convolution or dense layer is folded into it first (zennit's `SequentialMergeBatchNorm` canonizer).
zennit's `EpsilonGammaBox` applies z^B to the first convolution only, `EpsilonPlusFlat` flat to the
first linear layer of either kind; here "first" is the first linear layer the model calls.

`Composite(first=..., conv=..., dense=..., layers=...)` is also how a user maps their own: `layers`
maps layer paths (as every method names layers: "features/conv3") or layer class names ("Conv",
"Dense", "BatchNorm") to rules, before the defaults.
"""

from __future__ import annotations

import dataclasses

from gradcam_jax._src.relevance import rules as R


@dataclasses.dataclass(frozen=True)
class Composite:
    """Rules by place: `first` for the first linear layer (None: as the others), `conv` for
    convolutions, `dense` for dense layers; `layers`: ((path or class name, rule), ...) that win over
    these (a tuple, so the composite stays hashable: a static option under `jit`); `norm` for
    LayerNorms and RMSNorms (None: an error, zennit has no rule for them; `attn_lrp` and `cp_lrp`
    give them `DetachedStd`); `other` for any other layer with parameters of its own (None: an
    error; `Gradient`: it keeps its backward pass, as lxt leaves the layers it does not patch:
    `attn_lrp` and `cp_lrp` give it to position embeddings, class tokens, MAP probes)."""

    conv: R.Rule = R.Epsilon()
    dense: R.Rule = R.Epsilon()
    first: R.Rule | None = None
    layers: tuple[tuple[str, R.Rule], ...] = ()
    name: str = "custom"
    norm: R.Rule | None = None
    other: R.Rule | None = None

    def named(self) -> dict[str, R.Rule]:
        return dict(self.layers)


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """zennit `EpsilonPlus`: z+ on convolutions, epsilon on dense layers."""
    return Composite(R.ZPlus(stabilizer), R.Epsilon(epsilon), name="EpsilonPlus")


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """zennit `EpsilonAlpha2Beta1`: alpha2-beta1 on convolutions, epsilon on dense layers."""
    return Composite(R.AlphaBeta(2.0, 1.0, stabilizer), R.Epsilon(epsilon), name="EpsilonAlpha2Beta1")


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """zennit `EpsilonPlusFlat`: flat on the first linear layer, then as `EpsilonPlus`."""
    return Composite(R.ZPlus(stabilizer), R.Epsilon(epsilon), R.Flat(stabilizer), name="EpsilonPlusFlat")


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """zennit `EpsilonAlpha2Beta1Flat`: flat on the first linear layer, then as `EpsilonAlpha2Beta1`."""
    return Composite(
        R.AlphaBeta(2.0, 1.0, stabilizer), R.Epsilon(epsilon), R.Flat(stabilizer), name="EpsilonAlpha2Beta1Flat"
    )


def epsilon_gamma_box(
    low: float | tuple = 0.0,
    high: float | tuple = 255.0,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
) -> Composite:
    """zennit `EpsilonGammaBox`: z^B on the first layer (inputs in [low, high], numbers or per-channel
    tuples of the first layer's input), gamma on convolutions, epsilon on dense layers."""
    return Composite(
        R.Gamma(gamma, stabilizer), R.Epsilon(epsilon), R.ZBox(low, high, stabilizer), name="EpsilonGammaBox"
    )


def epsilon(epsilon: float = 1e-6) -> Composite:
    """LRP-epsilon on every linear layer (captum's default `LRP` with `EpsilonRule`)."""
    return Composite(R.Epsilon(epsilon), R.Epsilon(epsilon), name="Epsilon")


COMPOSITES = {
    "EpsilonPlus": epsilon_plus,
    "EpsilonAlpha2Beta1": epsilon_alpha2_beta1,
    "EpsilonPlusFlat": epsilon_plus_flat,
    "EpsilonAlpha2Beta1Flat": epsilon_alpha2_beta1_flat,
    "EpsilonGammaBox": epsilon_gamma_box,
    "Epsilon": epsilon,
}


def resolve(composite: str | Composite) -> Composite:
    """A `Composite` from a name in `COMPOSITES` (its defaults) or a `Composite`; one-line ValueError else."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str) and composite in COMPOSITES:
        return COMPOSITES[composite]()
    raise ValueError(f"lrp: unknown composite {composite!r}; choose one of {sorted(COMPOSITES)} or pass a Composite")

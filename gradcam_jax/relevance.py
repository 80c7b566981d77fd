"""LRP's rules and composites, for `methods.lrp(..., composite=...)`: zennit's named composites
(`epsilon_plus()`, ... or their names "EpsilonPlus", ...) and `Composite` to map your own: layer
paths or class names to rules, e.g.

    Composite(conv=ZPlus(), dense=Epsilon(0.25), first=ZBox(0.0, 255.0), layers=(("loss3/classifier", Epsilon(0.0)),))
"""

from gradcam_jax._src.relevance.composites import (
    COMPOSITES,
    Composite,
    epsilon,
    epsilon_alpha2_beta1,
    epsilon_alpha2_beta1_flat,
    epsilon_gamma_box,
    epsilon_plus,
    epsilon_plus_flat,
)
from gradcam_jax._src.relevance.rules import (
    RULES,
    AlphaBeta,
    DetachedStd,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
)

__all__ = [
    "COMPOSITES",
    "RULES",
    "AlphaBeta",
    "Composite",
    "DetachedStd",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "epsilon",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon_gamma_box",
    "epsilon_plus",
    "epsilon_plus_flat",
]

"""What the command line and the explorer share: turning a user's choices into a method call and
its results into per-class arrays. Both front ends import this; neither imports the other's helpers
(the CLI only launches the app)."""

from __future__ import annotations

import numpy as np

from gradcam_jax._src import diagnostics
from gradcam_jax._src.pipeline import accepted_options, check_method_options

# The method options the front ends offer as controls of their own (`--layer`, `--score`, `--relu`).
CONTROLS = ("layer", "score", "relu")


def method_options(method, args, extra: dict | None = None, name: str | None = None) -> dict:
    """The options among `args.layer`, `args.score`, `args.relu` that were given and that `method`
    takes, then `extra` (`--option name=value`, the explorer's `method_options`) over them: every
    one of those must be the method's, else a one-line ValueError naming its options."""
    accepted = set(accepted_options(method))
    given = {k: getattr(args, k) for k in CONTROLS if getattr(args, k, None) is not None}
    options = {k: v for k, v in given.items() if k in accepted}
    label = name or str(getattr(method, "__name__", "the method"))
    return {**options, **check_method_options(label, method, extra)}


def per_class(result, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps (B, K, H, W), scores (B, K), classes (B, K)) on the host, with K = 1 for top-1 (targets None)."""
    maps, scores, chosen = (np.asarray(a) for a in (result.map, result.scores, result.targets))
    if targets is None:  # (B, H, W) -> (B, 1, H, W) so one loop serves both
        maps, scores, chosen = maps[:, None], scores[:, None], chosen[:, None]
    return maps, scores, chosen


def class_flags(result, targets) -> np.ndarray:
    """`result.flags` on the host as (B, K) int32, as `per_class` shapes scores (zeros where a result
    has none)."""
    flags = getattr(result, "flags", None)
    flags = np.zeros(np.shape(result.scores), np.int32) if flags is None else np.asarray(flags)
    return flags[:, None] if targets is None else flags


def flag_note(flags, cli: bool = False) -> str:
    """'' for an informative map; else one line naming why it is not and the fixes
    (`diagnostics.FLAGS`), in the CLI's words (`--score logit`, `--layer`) with `cli`."""
    bits = [bit for bit in diagnostics.FLAGS if int(flags) & bit]
    if not bits:
        return ""
    names = ", ".join(diagnostics.FLAGS[bit][0] for bit in bits)
    # a constant map's entry says what it is, not what to do: used only when it is the only cause
    fixes = [diagnostics.FLAGS[bit][1] for bit in bits if bit != diagnostics.CONSTANT_MAP or len(bits) == 1]
    text = "; ".join(dict.fromkeys(fixes))
    if cli:
        text = text.replace('score="logit"', "--score logit").replace("another layer", "another --layer")
    return f"map not informative: {names}; {text}"


def check_opacity(opacity: float, name: str = "--opacity") -> None:
    """ValueError unless the overlay opacity is in [0, 1]."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {opacity}")

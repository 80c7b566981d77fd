"""What the command line and the explorer share: turning a user's choices into a method call and
its results into per-class arrays. Both front ends import this; neither imports the other's helpers
(the CLI only launches the app)."""

from __future__ import annotations

import inspect

import numpy as np


def method_options(method, args) -> dict:
    """The options among `args.layer`, `args.score`, `args.relu` that were given and that `method` takes."""
    accepted = set(inspect.signature(method).parameters) | ({"score"} if method.default_score else set())
    given = {k: getattr(args, k) for k in ("layer", "score", "relu") if getattr(args, k) is not None}
    return {k: v for k, v in given.items() if k in accepted}


def per_class(result, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps (B, K, H, W), scores (B, K), classes (B, K)) on the host, with K = 1 for top-1 (targets None)."""
    maps, scores, chosen = (np.asarray(a) for a in (result.map, result.scores, result.targets))
    if targets is None:  # (B, H, W) -> (B, 1, H, W) so one loop serves both
        maps, scores, chosen = maps[:, None], scores[:, None], chosen[:, None]
    return maps, scores, chosen


def check_alpha(args) -> None:
    """ValueError unless the overlay opacity `args.alpha` is in [0, 1]."""
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1]; got {args.alpha}")

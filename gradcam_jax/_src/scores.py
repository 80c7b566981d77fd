"""Class scores from logits, written once: used by `targets.classes` and `classify`."""

from __future__ import annotations

import jax

from gradcam_jax._src import maps

SCORES = ("softmax", "logit")


def class_scores(logits: jax.Array, score: str) -> jax.Array:
    """(B, N) scores from (B, N) logits: softmax probabilities (MATLAB's `prob`) or the logits."""
    if score == "softmax":
        return jax.nn.softmax(maps.float32_or_wider(logits), axis=-1)
    if score == "logit":
        return maps.float32_or_wider(logits)
    raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")

"""The class score an explanation explains, and which classes: written once, used by every method."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax import maps

SCORES = ("softmax", "logit")


def class_scores(logits: jax.Array, score: str) -> jax.Array:
    """(B, N) scores from (B, N) logits: softmax probabilities (MATLAB's `prob`) or the logits."""
    if score == "softmax":
        return jax.nn.softmax(maps.float32_or_wider(logits), axis=-1)
    if score == "logit":
        return maps.float32_or_wider(logits)
    raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")


def resolve_targets(targets: jax.Array | None, scores: jax.Array) -> jax.Array:
    """(B, K) int32 class indices: `targets` as given, or each image's top-1 class if None."""
    if targets is None:
        return jnp.argmax(scores, axis=-1)[:, None].astype(jnp.int32)
    return targets


def pick(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """(B, K) scores of the (B, K) target classes."""
    return jnp.take_along_axis(scores, targets, axis=1)

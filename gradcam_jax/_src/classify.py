"""Classification: top-k classes with softmax scores, batched and jitted (MATLAB's `classify`)."""

from __future__ import annotations

import functools

import jax

from gradcam_jax._src import scores as scores_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.inputs import check_images


@functools.partial(jax.jit, static_argnames=("model", "k"))
def _top_k(model, variables, images, k):
    probs = scores_lib.class_scores(taps.apply_logits(model, variables, images), "softmax")
    return jax.lax.top_k(probs, k)


def top_k(model, variables, images, k: int = 5) -> tuple[jax.Array, jax.Array]:
    """(probabilities (B, k) float32, class indices (B, k) int32), best first, for float (B, H, W, C) images."""
    return _top_k(model, taps.prepare(model, variables), check_images(images), k)

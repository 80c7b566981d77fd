"""Explanation methods, one file each, all with `grad_cam`'s calling convention; `METHODS` by name."""

from gradcam_jax.methods.base import DEFAULT_LAYER, METHODS, Explanation, register
from gradcam_jax.methods.grad_cam import grad_cam

__all__ = ["DEFAULT_LAYER", "METHODS", "Explanation", "grad_cam", "register"]

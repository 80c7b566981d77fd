"""Explanation methods, one file each, all with `grad_cam`'s calling convention; `METHODS` by name."""

from gradcam_jax.methods.attention_rollout import attention_rollout
from gradcam_jax.methods.base import DEFAULT_LAYER, METHODS, Explanation, register
from gradcam_jax.methods.cam import cam
from gradcam_jax.methods.eigen_cam import eigen_cam
from gradcam_jax.methods.generic_attention import generic_attention
from gradcam_jax.methods.grad_cam import grad_cam
from gradcam_jax.methods.grad_cam_plus_plus import grad_cam_plus_plus
from gradcam_jax.methods.guided_backprop import guided_backprop
from gradcam_jax.methods.guided_grad_cam import guided_grad_cam
from gradcam_jax.methods.hires_cam import hires_cam
from gradcam_jax.methods.integrated_gradients import integrated_gradients
from gradcam_jax.methods.layer_cam import layer_cam
from gradcam_jax.methods.legrad import legrad
from gradcam_jax.methods.occlusion import occlusion
from gradcam_jax.methods.score_cam import score_cam
from gradcam_jax.methods.smoothgrad import smoothgrad
from gradcam_jax.methods.xgrad_cam import xgrad_cam

__all__ = [
    "DEFAULT_LAYER",
    "METHODS",
    "Explanation",
    "attention_rollout",
    "cam",
    "eigen_cam",
    "generic_attention",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "hires_cam",
    "integrated_gradients",
    "layer_cam",
    "legrad",
    "occlusion",
    "register",
    "score_cam",
    "smoothgrad",
    "xgrad_cam",
]

"""Explanation methods, one file each, all with `grad_cam`'s calling convention; `METHODS` by name."""

from gradcam_jax._src.methods.ablation_cam import ablation_cam
from gradcam_jax._src.methods.attention_rollout import attention_rollout
from gradcam_jax._src.methods.attn_lrp import attn_lrp
from gradcam_jax._src.methods.base import METHODS, Explanation, register
from gradcam_jax._src.methods.cam import cam
from gradcam_jax._src.methods.cp_lrp import cp_lrp
from gradcam_jax._src.methods.deeplift import deeplift
from gradcam_jax._src.methods.eigen_cam import eigen_cam
from gradcam_jax._src.methods.eigen_grad_cam import eigen_grad_cam
from gradcam_jax._src.methods.feature_ablation import feature_ablation
from gradcam_jax._src.methods.fem import fem
from gradcam_jax._src.methods.finer_cam import finer_cam
from gradcam_jax._src.methods.fullgrad import fullgrad
from gradcam_jax._src.methods.generic_attention import generic_attention
from gradcam_jax._src.methods.grad_cam import grad_cam
from gradcam_jax._src.methods.grad_cam_elementwise import grad_cam_elementwise
from gradcam_jax._src.methods.grad_cam_plus_plus import grad_cam_plus_plus
from gradcam_jax._src.methods.gradient_shap import gradient_shap
from gradcam_jax._src.methods.guided_backprop import guided_backprop
from gradcam_jax._src.methods.guided_grad_cam import guided_grad_cam
from gradcam_jax._src.methods.hires_cam import hires_cam
from gradcam_jax._src.methods.image_lime import image_lime
from gradcam_jax._src.methods.input_x_gradient import input_x_gradient
from gradcam_jax._src.methods.integrated_gradients import integrated_gradients
from gradcam_jax._src.methods.is_cam import is_cam
from gradcam_jax._src.methods.kernel_shap import kernel_shap
from gradcam_jax._src.methods.kpca_cam import kpca_cam
from gradcam_jax._src.methods.layer_cam import layer_cam
from gradcam_jax._src.methods.legrad import legrad
from gradcam_jax._src.methods.lime import lime
from gradcam_jax._src.methods.lrp import lrp
from gradcam_jax._src.methods.occlusion import occlusion
from gradcam_jax._src.methods.saliency import saliency
from gradcam_jax._src.methods.score_cam import score_cam
from gradcam_jax._src.methods.shapley_cam import shapley_cam
from gradcam_jax._src.methods.shapley_sampling import shapley_sampling
from gradcam_jax._src.methods.smooth_grad_cam_plus_plus import smooth_grad_cam_plus_plus
from gradcam_jax._src.methods.smoothgrad import smoothgrad
from gradcam_jax._src.methods.ss_cam import ss_cam
from gradcam_jax._src.methods.xgrad_cam import xgrad_cam

__all__ = [
    "METHODS",
    "Explanation",
    "ablation_cam",
    "attention_rollout",
    "attn_lrp",
    "cam",
    "cp_lrp",
    "deeplift",
    "eigen_cam",
    "eigen_grad_cam",
    "feature_ablation",
    "fem",
    "finer_cam",
    "fullgrad",
    "generic_attention",
    "grad_cam",
    "grad_cam_elementwise",
    "grad_cam_plus_plus",
    "gradient_shap",
    "guided_backprop",
    "guided_grad_cam",
    "hires_cam",
    "image_lime",
    "input_x_gradient",
    "integrated_gradients",
    "is_cam",
    "kernel_shap",
    "kpca_cam",
    "layer_cam",
    "legrad",
    "lime",
    "lrp",
    "occlusion",
    "register",
    "saliency",
    "score_cam",
    "shapley_cam",
    "shapley_sampling",
    "smooth_grad_cam_plus_plus",
    "smoothgrad",
    "ss_cam",
    "xgrad_cam",
]

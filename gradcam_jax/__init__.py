"""gradcam-jax: why did the network decide that? Grad-CAM and friends for JAX models (linen, NNX, Equinox, Keras 3 on JAX, any function).

from gradcam_jax import load_googlenet, grad_cam, load_image
model, variables = load_googlenet()
images = load_image("photo.jpg")[None].astype("float32")      # (1, 224, 224, 3), RGB 0..255
result = grad_cam(model, variables, images, targets=None)     # top-1 class
result.map                                                    # (1, 224, 224) float32 in [0, 1]
"""

from gradcam_jax import targets
from gradcam_jax.adapters.taps import UnknownLayerError, channels_first, channels_last, default_layer, layer_shapes
from gradcam_jax.adapters.tokens import tokens_to_grid
from gradcam_jax.classify import top_k
from gradcam_jax.dataset import explain_dataset
from gradcam_jax.googlenet import BVLCGoogLeNet, GoogLeNet, TorchvisionGoogLeNet
from gradcam_jax.images import ImageError, load_image
from gradcam_jax.labels import class_index, label
from gradcam_jax.methods import (
    METHODS,
    Explanation,
    ablation_cam,
    attention_rollout,
    cam,
    deeplift,
    eigen_cam,
    eigen_grad_cam,
    feature_ablation,
    fem,
    finer_cam,
    fullgrad,
    generic_attention,
    grad_cam,
    grad_cam_elementwise,
    grad_cam_plus_plus,
    gradient_shap,
    guided_backprop,
    guided_grad_cam,
    hires_cam,
    image_lime,
    input_x_gradient,
    integrated_gradients,
    is_cam,
    kernel_shap,
    kpca_cam,
    layer_cam,
    legrad,
    lime,
    occlusion,
    saliency,
    score_cam,
    shapley_cam,
    shapley_sampling,
    smooth_grad_cam_plus_plus,
    smoothgrad,
    ss_cam,
    xgrad_cam,
)
from gradcam_jax.overlay import overlay
from gradcam_jax.video import VideoError, explain_clips, explain_frames, explain_video
from gradcam_jax.weights import WeightsError, load_googlenet

__all__ = [
    "BVLCGoogLeNet",
    "Explanation",
    "GoogLeNet",
    "ImageError",
    "METHODS",
    "TorchvisionGoogLeNet",
    "UnknownLayerError",
    "WeightsError",
    "class_index",
    "grad_cam",
    "label",
    "layer_shapes",
    "load_googlenet",
    "load_image",
    "overlay",
    "top_k",
    "tokens_to_grid",
    "explain_dataset",
    "explain_clips",
    "explain_frames",
    "explain_video",
    "VideoError",
    "cam",
    "eigen_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "hires_cam",
    "integrated_gradients",
    "layer_cam",
    "occlusion",
    "score_cam",
    "smoothgrad",
    "xgrad_cam",
    "saliency",
    "input_x_gradient",
    "gradient_shap",
    "grad_cam_elementwise",
    "eigen_grad_cam",
    "fem",
    "kpca_cam",
    "ablation_cam",
    "finer_cam",
    "shapley_cam",
    "is_cam",
    "smooth_grad_cam_plus_plus",
    "feature_ablation",
    "shapley_sampling",
    "deeplift",
    "fullgrad",
    "ss_cam",
    "lime",
    "kernel_shap",
    "image_lime",
    "targets",
    "channels_first",
    "channels_last",
    "attention_rollout",
    "generic_attention",
    "legrad",
    "default_layer",
]

"""gradcam-jax: why did the network decide that? Grad-CAM and friends for JAX models (linen, NNX, Equinox, Keras 3 on JAX, any function).

from gradcam_jax import load_googlenet, grad_cam, load_image
model, variables = load_googlenet()
images = load_image("photo.jpg")[None].astype("float32")      # (1, 224, 224, 3), RGB 0..255
result = grad_cam(model, variables, images, targets=None)     # top-1 class
result.map                                                    # (1, 224, 224) float32 in [0, 1]
"""

# The public API: everything below, flat; the implementation lives in gradcam_jax/_src (private).
# Sub-namespaces: methods, targets, metrics, overlay, models (and gradcam_jax.toys, imported on its own).
from gradcam_jax import methods, metrics, models, overlay, targets
from gradcam_jax._src.adapters.taps import (
    FlatLayerError,
    UnknownLayerError,
    channels_first,
    channels_last,
    default_layer,
    layer_shapes,
)
from gradcam_jax._src.adapters.tokens import tokens_to_grid
from gradcam_jax._src.classify import top_k
from gradcam_jax._src.diagnostics import DegenerateMapWarning, flag_names
from gradcam_jax._src.images import ImageError, load_image
from gradcam_jax._src.methods import (
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
from gradcam_jax._src.methods.base import LayoutError
from gradcam_jax._src.overlay import blend
from gradcam_jax.dataset import explain_dataset
from gradcam_jax.models import (
    BVLCGoogLeNet,
    GoogLeNet,
    TorchvisionGoogLeNet,
    WeightsError,
    class_index,
    label,
    load_googlenet,
)
from gradcam_jax.video import VideoError, explain_clips, explain_frames, explain_video

__all__ = [
    "BVLCGoogLeNet",
    "DegenerateMapWarning",
    "Explanation",
    "FlatLayerError",
    "GoogLeNet",
    "ImageError",
    "LayoutError",
    "METHODS",
    "TorchvisionGoogLeNet",
    "UnknownLayerError",
    "VideoError",
    "WeightsError",
    "ablation_cam",
    "attention_rollout",
    "blend",
    "cam",
    "channels_first",
    "channels_last",
    "class_index",
    "deeplift",
    "default_layer",
    "eigen_cam",
    "eigen_grad_cam",
    "explain_clips",
    "explain_dataset",
    "explain_frames",
    "explain_video",
    "feature_ablation",
    "fem",
    "finer_cam",
    "flag_names",
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
    "label",
    "layer_cam",
    "layer_shapes",
    "legrad",
    "lime",
    "load_googlenet",
    "load_image",
    "methods",
    "metrics",
    "models",
    "occlusion",
    "overlay",
    "saliency",
    "score_cam",
    "shapley_cam",
    "shapley_sampling",
    "smooth_grad_cam_plus_plus",
    "smoothgrad",
    "ss_cam",
    "targets",
    "tokens_to_grid",
    "top_k",
    "xgrad_cam",
]

"""Models the library ships, each apart from its loader (big_vision's split): `googlenet` defines the
network, `weights` turns the bundled BVLC checkpoint into its variables, `imagenet` names its classes.
The generic core (`gradcam_jax.methods`, `.targets`, `.metrics`) knows none of them."""

from gradcam_jax.models.googlenet import (
    CAFFE_BGR_MEAN,
    INPUT_SIZE,
    BVLCGoogLeNet,
    GoogLeNet,
    TorchvisionGoogLeNet,
)
from gradcam_jax.models.imagenet import class_index, label
from gradcam_jax.models.weights import WeightsError, load_googlenet

__all__ = [
    "CAFFE_BGR_MEAN",
    "INPUT_SIZE",
    "BVLCGoogLeNet",
    "GoogLeNet",
    "TorchvisionGoogLeNet",
    "WeightsError",
    "class_index",
    "label",
    "load_googlenet",
]

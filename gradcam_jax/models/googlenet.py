"""GoogLeNet (Inception v1) in Flax, laid out so that every Flax path is a Caffe layer name.

Caffe names its layers `<stage>/<layer>` (`conv2/3x3_reduce`, `inception_5b/output`); MATLAB's
`googlenet` uses the same names with `-` for `/` (`inception_5b-output`). Here each stage is a
module and each layer a named submodule, so the Flax path of a layer *is* its Caffe name and the
generic taps in `gradcam_jax._src.adapters.taps` reach every one of them — ReLUs, pools and LRNs included —
without the model knowing anything about Grad-CAM.

Two variants share the code (built with `functools.partial`, as in flax/examples/imagenet):
`BVLCGoogLeNet`, the Caffe/MATLAB network, and `TorchvisionGoogLeNet`, torchvision's re-make
(conv + BatchNorm, no LRN, 3x3 where the paper's branch has 5x5, a 2x2 pool4).
Both take float32 NHWC **RGB images in 0..255** and normalise inside the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradcam_jax._src.adapters import taps

INPUT_SIZE = (224, 224)

# Mean of the Caffe ILSVRC-2012 mean image, per channel, in BGR order (precise values: the
# rounded 104/117/123 drift intermediate activations by ~5e-4 relative).
CAFFE_BGR_MEAN = (104.0069, 116.6687, 122.6789)

# Inception module widths (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), from deploy.prototxt.
INCEPTION_WIDTHS = {
    "inception_3a": (64, 96, 128, 16, 32, 32),
    "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64),
    "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64),
    "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128),
    "inception_5b": (384, 192, 384, 48, 128, 128),
}


def caffe_input(images: jax.Array) -> jax.Array:
    """RGB 0..255 -> Caffe's BGR minus the ILSVRC-2012 mean (what MATLAB's input layer does)."""
    return images[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, images.dtype)


def torchvision_input(images: jax.Array) -> jax.Array:
    """RGB 0..255 -> what torchvision's GoogLeNet sees after `transform_input`: (x/255 - 0.5) / 0.5.

    ImageNet normalisation followed by torchvision's `transform_input` reduces exactly to this.
    """
    return images / 127.5 - 1.0


def conv(features: int, kernel: int, stride: int = 1, pad: int = 0, *, name: str) -> nn.Module:
    """A Caffe convolution: cross-correlation with bias; its ReLU is a layer of its own."""
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=[(pad, pad)] * 2, name=name)


class ConvBN(nn.Module):
    """torchvision's BasicConv2d without its ReLU: conv (no bias) + BatchNorm (eps 1e-3), inference."""

    features: int
    kernel: int
    stride: int = 1
    pad: int = 0

    @nn.compact
    def __call__(self, x):
        k, s, p = self.kernel, self.stride, self.pad
        x = nn.Conv(self.features, (k, k), (s, s), padding=[(p, p)] * 2, use_bias=False, name="conv")(x)
        return nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)


class ReLU(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class MaxPool(nn.Module):
    """Max pooling that rounds the output size up, as Caffe (and torchvision's ceil_mode) do."""

    window: int
    stride: int
    pad: int = 0

    @nn.compact
    def __call__(self, x):
        padding = [ceil_mode_padding(n, self.window, self.stride, self.pad) for n in x.shape[1:3]]
        window = (1, self.window, self.window, 1)
        strides = (1, self.stride, self.stride, 1)
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, [(0, 0), *padding, (0, 0)])


def ceil_mode_padding(size: int, window: int, stride: int, pad: int) -> tuple[int, int]:
    """(low, high) padding giving Caffe's output size ceil((size + 2 pad - window) / stride) + 1.

    As in Caffe, the last window must start inside the image or its left padding.
    """
    out = -(-(size + 2 * pad - window) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return pad, (out - 1) * stride + window - size - pad


class LRN(nn.Module):
    """Caffe's cross-channel local response normalisation: x / (k + alpha/n * sum_n x^2) ** beta."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    @nn.compact
    def __call__(self, x):
        half = self.size // 2
        squares = jnp.pad(jnp.square(x), [(0, 0)] * 3 + [(half, half)])
        window_sum = jax.lax.reduce_window(squares, 0.0, jax.lax.add, (1, 1, 1, self.size), (1,) * 4, "VALID")
        return x / (self.k + self.alpha / self.size * window_sum) ** self.beta


class GlobalAvgPool(nn.Module):
    """Caffe's 7x7/1 average pool on the 7x7 map (torchvision's adaptive pool): (B, 1, 1, C)."""

    @nn.compact
    def __call__(self, x):
        return x.mean(axis=(1, 2), keepdims=True)


class Identity(nn.Module):
    """Dropout at inference: kept as a named layer so MATLAB's `pool5-drop_7x7_s1` exists."""

    @nn.compact
    def __call__(self, x):
        return x


class Softmax(nn.Module):
    @nn.compact
    def __call__(self, x):
        return jax.nn.softmax(x, axis=-1)


class Concat(nn.Module):
    @nn.compact
    def __call__(self, branches):
        return jnp.concatenate(branches, axis=-1)


LayerDef = tuple[str, Callable[..., nn.Module]]


class Stage(nn.Module):
    """Named layers applied in order; a stage `conv2` with layer `3x3` has the Flax path `conv2/3x3`."""

    layers: Sequence[LayerDef]

    @nn.compact
    def __call__(self, x):
        for name, make in self.layers:
            x = make(name=name)(x)
        return x


class Inception(nn.Module):
    """Channel concat of [1x1], [3x3 reduce -> 3x3], [5x5 reduce -> 5x5], [3x3/1 max pool -> 1x1]."""

    widths: tuple[int, int, int, int, int, int]
    conv: Callable[..., nn.Module]
    kernel_5x5: int = 5  # torchvision builds this branch with 3x3 (a known deviation it keeps)

    @nn.compact
    def __call__(self, x):
        c1, c3r, c3, c5r, c5, cp = self.widths

        def conv_relu(y, features, kernel, name, relu_name):
            return ReLU(name=relu_name)(self.conv(features, kernel, pad=kernel // 2, name=name)(y))

        b1 = conv_relu(x, c1, 1, "1x1", "relu_1x1")
        b3 = conv_relu(conv_relu(x, c3r, 1, "3x3_reduce", "relu_3x3_reduce"), c3, 3, "3x3", "relu_3x3")
        b5 = conv_relu(x, c5r, 1, "5x5_reduce", "relu_5x5_reduce")
        b5 = conv_relu(b5, c5, self.kernel_5x5, "5x5", "relu_5x5")
        bp = conv_relu(MaxPool(3, 1, 1, name="pool")(x), cp, 1, "pool_proj", "relu_pool_proj")
        return Concat(name="output")([b1, b3, b5, bp])


class GoogLeNet(nn.Module):
    """Inception v1. `__call__(images, layers=())` -> `(logits, acts)`.

    images: float (B, 224, 224, 3), RGB in 0..255. logits: (B, num_classes) float32.
    acts: `{name: activation}` for each requested layer, by MATLAB name (`inception_5b-output`) or
    Flax path (`inception_5b/output`), keyed as requested.
    """

    # the layer methods explain by default (`layer=None`): MATLAB's example's `inception_5b-output`
    default_layer: ClassVar[str] = "inception_5b-output"
    # the pixel it sees as zero, RGB 0..255 (what `baseline="mean"` replaces pixels with)
    mean_pixel: ClassVar[tuple[float, ...]] = CAFFE_BGR_MEAN[::-1]

    num_classes: int = 1000
    conv: Callable[..., nn.Module] = conv
    preprocess: Callable[[jax.Array], jax.Array] = caffe_input
    lrn: bool = True
    kernel_5x5: int = 5
    pool4_window: int = 3

    @nn.compact
    def __call__(self, images, layers: Sequence[str] = ()):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"GoogLeNet takes RGB images (B, H, W, 3) in 0..255; got shape {tuple(images.shape)}")
        with taps.tap(layers) as acts:
            logits = self._logits(images)
        return logits, acts.by_name(layers)

    def _logits(self, images):
        c = self.conv
        x = self.preprocess(images)
        x = Stage([("7x7_s2", functools.partial(c, 64, 7, 2, 3)), ("relu_7x7", ReLU)], name="conv1")(x)
        x = Stage([("3x3_s2", functools.partial(MaxPool, 3, 2))] + [("norm1", LRN)] * self.lrn, name="pool1")(x)
        x = Stage(
            [
                ("3x3_reduce", functools.partial(c, 64, 1)),
                ("relu_3x3_reduce", ReLU),
                ("3x3", functools.partial(c, 192, 3, 1, 1)),
                ("relu_3x3", ReLU),
            ]
            + [("norm2", LRN)] * self.lrn,
            name="conv2",
        )(x)
        pool = functools.partial(MaxPool, 3, 2)
        x = Stage([("3x3_s2", pool)], name="pool2")(x)
        for stage in INCEPTION_WIDTHS:
            x = Inception(INCEPTION_WIDTHS[stage], c, self.kernel_5x5, name=stage)(x)
            if stage == "inception_3b":
                x = Stage([("3x3_s2", pool)], name="pool3")(x)
            elif stage == "inception_4e":
                pool4 = functools.partial(MaxPool, self.pool4_window, 2)
                x = Stage([(f"{self.pool4_window}x{self.pool4_window}_s2", pool4)], name="pool4")(x)
        x = Stage([("7x7_s1", GlobalAvgPool), ("drop_7x7_s1", Identity)], name="pool5")(x)
        x = x.reshape(x.shape[0], -1)
        logits = Stage([("classifier", functools.partial(nn.Dense, self.num_classes))], name="loss3")(x)
        Softmax(name="prob")(logits)  # unused unless tapped: XLA drops it otherwise
        return logits


BVLCGoogLeNet = GoogLeNet
TorchvisionGoogLeNet = functools.partial(
    GoogLeNet, conv=ConvBN, preprocess=torchvision_input, lrn=False, kernel_5x5=3, pool4_window=2
)

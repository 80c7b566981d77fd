"""The BVLC GoogLeNet in PyTorch, reading gradcam_jax's converted weights: a reference, not a runtime.

Written from Caffe's deploy.prototxt, independently of the Flax model, so that parity tests
(`tests/test_torch_parity.py`) and the benchmark (`scripts/benchmark.py`) compare two
implementations of one network holding the same numbers. Each Caffe layer `<stage>/<layer>` is the
module `<stage>.<layer>`, so the state_dict key of a Flax leaf is its path with '.' for '/'.

Takes float32 NCHW **RGB in 0..255** (as the Flax model takes NHWC) and does Caffe's
preprocessing inside: RGB -> BGR, minus the ILSVRC-2012 mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradcam_jax.models.weights import bundled_path, read_variables

# Per-channel mean of Caffe's ILSVRC-2012 mean image, BGR (restated here on purpose: a reference
# that imported it from the code under test could not catch a wrong value there).
BGR_MEAN = (104.0069, 116.6687, 122.6789)

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per inception module, from deploy.prototxt.
INCEPTIONS = {
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


def lrn(x: torch.Tensor) -> torch.Tensor:
    """Caffe's LRN (local_size 5, alpha 1e-4, beta 0.75): torch averages the squares, i.e. alpha/n * sum."""
    return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)


def max_pool(x: torch.Tensor, window: int, stride: int, pad: int = 0) -> torch.Tensor:
    """Caffe pooling rounds the output size up; torch's ceil_mode has the same last-window rule."""
    return F.max_pool2d(x, window, stride, pad, ceil_mode=True)


class Inception(nn.ModuleDict):
    """Concat of relu(1x1), relu(3x3(relu(3x3_reduce))), relu(5x5(relu(5x5_reduce))), relu(pool_proj(pool))."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        c1, c3r, c3, c5r, c5, cp = widths
        super().__init__(
            {
                "1x1": nn.Conv2d(cin, c1, 1),
                "3x3_reduce": nn.Conv2d(cin, c3r, 1),
                "3x3": nn.Conv2d(c3r, c3, 3, padding=1),
                "5x5_reduce": nn.Conv2d(cin, c5r, 1),
                "5x5": nn.Conv2d(c5r, c5, 5, padding=2),
                "pool_proj": nn.Conv2d(cin, cp, 1),
            }
        )
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x):
        branch3 = F.relu(self["3x3"](F.relu(self["3x3_reduce"](x))))
        branch5 = F.relu(self["5x5"](F.relu(self["5x5_reduce"](x))))
        branch_pool = F.relu(self["pool_proj"](max_pool(x, 3, 1, 1)))
        return torch.cat([F.relu(self["1x1"](x)), branch3, branch5, branch_pool], dim=1)


class TorchGoogLeNet(nn.Module):
    """`forward(images)` -> logits (B, 1000); `features(images)` -> inception_5b output (B, 1024, 7, 7);
    `head(features)` -> logits. images: float32 (B, 3, 224, 224), RGB 0..255."""

    bgr_mean: torch.Tensor  # a buffer

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.ModuleDict({"7x7_s2": nn.Conv2d(3, 64, 7, 2, 3)})
        self.conv2 = nn.ModuleDict({"3x3_reduce": nn.Conv2d(64, 64, 1), "3x3": nn.Conv2d(64, 192, 3, 1, 1)})
        cin = 192
        for stage, widths in INCEPTIONS.items():
            inception = Inception(cin, widths)
            self.add_module(stage, inception)
            cin = inception.out_channels
        self.loss3 = nn.ModuleDict({"classifier": nn.Linear(cin, num_classes)})
        self.register_buffer("bgr_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flip(1) - self.bgr_mean
        x = lrn(max_pool(F.relu(self.conv1["7x7_s2"](x)), 3, 2))
        x = F.relu(self.conv2["3x3"](F.relu(self.conv2["3x3_reduce"](x))))
        x = max_pool(lrn(x), 3, 2)
        for stage in INCEPTIONS:
            x = self.get_submodule(stage)(x)
            if stage in ("inception_3b", "inception_4e"):
                x = max_pool(x, 3, 2)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        # pool5/7x7_s1 averages the whole 7x7 map; dropout is the identity at inference
        return self.loss3["classifier"](features.mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class LRN(nn.Module):
    """Caffe's LRN as a module (`lrn`), so that LRP composites can map it (zennit: to `Pass`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lrn(x)


class HookableGoogLeNet(TorchGoogLeNet):
    """The same network with its two LRNs and pool5 as modules (`LRN`, `AdaptiveAvgPool2d`) rather than
    functions: LRP libraries (zennit) give modules their rules and pass functions by their gradients,
    while gradcam_jax's LRP passes relevance through an LRN (`Pass`) and splits it at the pool (`Norm`).
    Same parameters, same state_dict keys, same outputs."""

    def __init__(self, num_classes: int = 1000):
        super().__init__(num_classes)
        self.norm1, self.norm2, self.pool5 = LRN(), LRN(), nn.AdaptiveAvgPool2d(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flip(1) - self.bgr_mean
        x = self.norm1(max_pool(F.relu(self.conv1["7x7_s2"](x)), 3, 2))
        x = F.relu(self.conv2["3x3"](F.relu(self.conv2["3x3_reduce"](x))))
        x = max_pool(self.norm2(x), 3, 2)
        for stage in INCEPTIONS:
            x = self.get_submodule(stage)(x)
            if stage in ("inception_3b", "inception_4e"):
                x = max_pool(x, 3, 2)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.loss3["classifier"](self.pool5(features).flatten(1))


def state_dict_from_flax(params: dict) -> dict[str, torch.Tensor]:
    """torch state_dict from Flax params {stage: {layer: {kernel, bias}}}: conv HWIO -> OIHW,
    Dense (in, out) -> (out, in)."""
    state = {}
    for stage, layers in params.items():
        for layer, leaves in layers.items():
            kernel = np.asarray(leaves["kernel"])
            kernel = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
            state[f"{stage}.{layer}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
            state[f"{stage}.{layer}.bias"] = torch.from_numpy(np.asarray(leaves["bias"]).copy())
    return state


def load_bvlc(path: str | Path | None = None, *, hookable: bool = False) -> TorchGoogLeNet:
    """The BVLC GoogLeNet with the weights in `path` (default: the file shipped with gradcam_jax), in
    eval mode; `hookable`: the `HookableGoogLeNet` variant (LRNs and pool5 as modules, for LRP)."""
    variables = read_variables(Path(path) if path is not None else bundled_path())
    model = HookableGoogLeNet() if hookable else TorchGoogLeNet()
    model.load_state_dict(state_dict_from_flax(variables["params"]), strict=True)
    return model.eval()


def rescale(maps: torch.Tensor) -> torch.Tensor:
    """Each (B, h, w) map to [0, 1] by its own min and max (MATLAB's `rescale`); constant -> 0."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)


def grad_cam(
    model: TorchGoogLeNet,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    score: str = "softmax",
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-written Grad-CAM at inception_5b-output with `torch.autograd.grad`, MATLAB's defaults.

    Softmax (or logit) score, channel weights = spatial sum of the gradients, no ReLU, min-max
    rescale. Returns (maps (B, 7, 7) float32 in [0, 1], or (B, *size) after bicubic upsampling and
    clipping; targets (B,) int64, top-1 where `targets` is None). The features are computed without
    autograd, so the backward pass stops at the layer.
    """
    with torch.no_grad():
        activations = model.features(images)
    activations.requires_grad_(True)
    logits = model.head(activations)
    scores = logits.softmax(dim=-1) if score == "softmax" else logits
    if targets is None:
        targets = scores.argmax(dim=-1)
    picked = scores.gather(1, targets[:, None]).sum()  # images do not interact: one backward for all
    (gradients,) = torch.autograd.grad(picked, activations)
    with torch.no_grad():
        raw = torch.einsum("bchw,bc->bhw", activations, gradients.sum(dim=(2, 3)))
        maps = rescale(raw.float())
        if size is not None:
            maps = F.interpolate(maps[:, None], size=size, mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)
    return maps, targets

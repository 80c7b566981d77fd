"""Grad-CAM of a 3-D CNN against MONAI's `GradCAM` and pytorch-grad-cam's 3-D `GradCAM`, on a
PyTorch twin holding the same weights (score "logit", ReLU: what both compute).

How the originals finish their maps, read from their sources:
- MONAI 1.6 (`monai/visualize/class_activation_maps.py`): ReLU of sum_c mean(grad_c) A_c at the
  layer, then `default_upsampler` (trilinear, align_corners=False) and `default_normalizer`, which
  scales each map's (min, max) to (1, 0): it *flips* the map, so hot is 0. Compared as 1 - MONAI.
- pytorch-grad-cam 1.5.7 (`base_cam.py`, `utils/image.py`): ReLU, min-max (with 1e-7 added to the
  max), then `scipy.ndimage.zoom` (a cubic B-spline) to the input size, min-max again.
Neither upsamples as we do (cubic convolution, Keys a = -0.5, along each axis), so the maps are
compared where no upsampling happens (a layer at the input's resolution) exactly, and at a
strided layer through MONAI's own layer-resolution map (`compute_map`) upsampled by Pillow's
Keys cubic, one axis at a time.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
monai_cam = pytest.importorskip("monai.visualize.class_activation_maps")
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")

import gradcam_jax as gj  # noqa: E402
from tests.test_dimensions import pillow_upsample  # noqa: E402


class Relu(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class Volume(nn.Module):
    """conv1 (3^3, 4) -> relu1 -> conv2 (3^3, 6, `stride`) -> relu2 -> mean -> fc (3), padding 1."""

    stride: int

    @nn.compact
    def __call__(self, x):
        pad = [(1, 1)] * 3
        x = Relu(name="relu1")(nn.Conv(4, (3, 3, 3), padding=pad, name="conv1")(x))
        x = Relu(name="relu2")(nn.Conv(6, (3, 3, 3), (self.stride,) * 3, padding=pad, name="conv2")(x))
        return nn.Dense(3, name="fc")(x.mean(axis=(1, 2, 3)))


class TorchVolume(torch.nn.Module):
    """The same network in PyTorch (NCDHW)."""

    def __init__(self, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv3d(4, 6, 3, stride=stride, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3, 4)))


def twins(stride: int, seed: int = 0):
    """(flax model, variables, torch model, volumes (2, 8, 10, 6, 1)) with the same weights."""
    model = Volume(stride)
    x = np.asarray(jax.random.normal(jax.random.key(seed), (2, 8, 10, 6, 1)))
    variables = model.init(jax.random.key(seed + 1), x)
    p = jax.tree.map(np.asarray, variables["params"])
    twin = TorchVolume(stride).eval()
    with torch.no_grad():
        for name in ("conv1", "conv2"):  # flax (kd, kh, kw, in, out) -> torch (out, in, kd, kh, kw)
            getattr(twin, name).weight.copy_(torch.from_numpy(p[name]["kernel"].transpose(4, 3, 0, 1, 2).copy()))
            getattr(twin, name).bias.copy_(torch.from_numpy(p[name]["bias"].copy()))
        twin.fc.weight.copy_(torch.from_numpy(p["fc"]["kernel"].T.copy()))
        twin.fc.bias.copy_(torch.from_numpy(p["fc"]["bias"].copy()))
    return model, variables, twin, x


def ncdhw(x: np.ndarray):
    return torch.from_numpy(np.array(x.transpose(0, 4, 1, 2, 3)))  # a writable copy


CLASSES = np.array([2, 0], np.int32)  # per image; MONAI takes one class index for the whole batch


def ours(model, variables, x, classes=CLASSES) -> np.ndarray:
    classes = np.asarray(classes, np.int32)
    return np.asarray(gj.grad_cam(model, variables, x, classes, layer="relu2", score="logit", relu=True).map)


def test_the_twins_agree():
    model, variables, twin, x = twins(stride=2)
    with torch.no_grad():
        theirs = twin(ncdhw(x)).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(variables, x)), theirs, rtol=1e-5, atol=1e-5)


def test_monai_grad_cam_at_the_input_resolution():
    model, variables, twin, x = twins(stride=1)
    cam = monai_cam.GradCAM(nn_module=twin, target_layers="relu2")  # default upsampler and normaliser
    theirs = cam(ncdhw(x), class_idx=2).detach().numpy()[:, 0]  # one class for the whole batch
    assert theirs.shape == x.shape[:-1]
    np.testing.assert_allclose(ours(model, variables, x, [2, 2]), 1.0 - theirs, atol=2e-5)  # MONAI maps max -> 0


def test_monai_grad_cam_at_a_strided_layer():
    model, variables, twin, x = twins(stride=2)
    cam = monai_cam.GradCAM(nn_module=twin, target_layers="relu2")
    raw = cam.compute_map(ncdhw(x), class_idx=2).detach().numpy()[:, 0]
    assert raw.shape == (2, 4, 5, 3)  # the layer's resolution
    assert (raw.max(axis=(1, 2, 3)) > raw.min(axis=(1, 2, 3))).all()  # maps to compare, not zeros
    low = raw.min(axis=(1, 2, 3), keepdims=True)
    expected = pillow_upsample((raw - low) / (raw.max(axis=(1, 2, 3), keepdims=True) - low), x.shape[1:-1])
    np.testing.assert_allclose(ours(model, variables, x, [2, 2]), expected, atol=2e-5)


def test_pytorch_grad_cam_3d():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, variables, twin, x = twins(stride=1)
    with GradCAM(model=twin, target_layers=[twin.relu2]) as cam:
        theirs = cam(ncdhw(x), targets=[ClassifierOutputTarget(int(c)) for c in CLASSES])
    assert theirs.shape == x.shape[:-1]
    np.testing.assert_allclose(ours(model, variables, x), theirs, atol=1e-5)  # their 1e-7 in the min-max
    # at a strided layer they upsample with scipy's zoom: a cubic B-spline whose grid puts the
    # layer's corner cells on the input's corner voxels (align-corners), where we interpolate
    # between cell centres with Keys' cubic. The same layer map, placed and smoothed differently.
    model, variables, twin, x = twins(stride=2)
    with GradCAM(model=twin, target_layers=[twin.relu2]) as cam:
        theirs = cam(ncdhw(x), targets=[ClassifierOutputTarget(int(c)) for c in CLASSES])
    mine = ours(model, variables, x)
    for a, b in zip(mine, theirs):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9

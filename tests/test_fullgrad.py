"""FullGrad on a network with batch norms, against pytorch-grad-cam 1.5.7's `FullGrad` on a PyTorch
twin with the same weights (GoogLeNet, in test_originals, has no batch norm). pytorch-grad-cam reads
every `Conv2d` and `BatchNorm2d` that has a bias, a batch norm's folded with its running statistics;
the twin's first convolution has none, so only the batch norms stand for that block."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src.adapters import taps

torch = pytest.importorskip("torch")
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")


class BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), padding=1, use_bias=False, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(x))
        x = nn.Conv(6, (3, 3), strides=2, padding=1, name="conv2")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn2")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


def torch_twin(variables):
    """The same network in PyTorch (NCHW), in eval mode, with `variables` copied in."""
    p, stats = variables["params"], variables["batch_stats"]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 3),
    ).eval()

    def tensor(a, *axes):
        return torch.from_numpy(np.array(np.transpose(np.asarray(a), axes) if axes else a, np.float32))

    with torch.no_grad():
        net[0].weight.copy_(tensor(p["conv1"]["kernel"], 3, 2, 0, 1))
        net[3].weight.copy_(tensor(p["conv2"]["kernel"], 3, 2, 0, 1))
        net[3].bias.copy_(tensor(p["conv2"]["bias"]))
        for i, name in ((1, "bn1"), (4, "bn2")):
            net[i].weight.copy_(tensor(p[name]["scale"]))
            net[i].bias.copy_(tensor(p[name]["bias"]))
            net[i].running_mean.copy_(tensor(stats[name]["mean"]))
            net[i].running_var.copy_(tensor(stats[name]["var"]))
        net[8].weight.copy_(tensor(p["head"]["kernel"], 1, 0))
        net[8].bias.copy_(tensor(p["head"]["bias"]))
    return net


def test_fullgrad_reads_batch_norms_as_pytorch_grad_cam_does():
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1))
    model = BatchNormNet()
    variables = model.init(jax.random.key(1), x)
    keys = jax.random.split(jax.random.key(2), 4)
    # statistics and affine parameters away from their initial 0 / 1, so every fold term counts
    stats = {
        name: {"mean": jax.random.normal(k1, (c,)), "var": jax.random.uniform(k2, (c,), minval=0.5, maxval=2.0)}
        for name, c, (k1, k2) in (("bn1", 4, keys[:2]), ("bn2", 6, keys[2:]))
    }
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(3), a.shape), variables["params"])
    variables = {"params": params, "batch_stats": stats}
    net = torch_twin(variables)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(net(images).detach().numpy(), np.asarray(model.apply(variables, x)), atol=1e-5)

    assert list(taps.bias_layers(model, variables, x)) == ["bn1", "conv2", "bn2"]
    targets = np.array([[0, 2], [1, 0]], np.int32)
    ours = np.asarray(gj.fullgrad(model, variables, x, targets).map)
    cam = pytorch_grad_cam.FullGrad(model=net, target_layers=[])
    for k in range(2):
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in targets[:, k]])
        for b in range(2):
            assert np.corrcoef(ours[b, k].ravel(), theirs[b].ravel())[0, 1] >= 0.9999, (b, k)
            np.testing.assert_allclose(ours[b, k], theirs[b], atol=2e-3, err_msg=f"image {b}, column {k}")

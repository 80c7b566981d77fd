"""LeGrad against torchcam 0.5's `LeGrad` on a torchvision `VisionTransformer` holding the same weights
as the linen `toy_vit.ToyViT` (image 32, patch 8, 2 blocks, width 32, 2 heads)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchcam_methods = pytest.importorskip("torchcam.methods")
vision_transformer = pytest.importorskip("torchvision.models.vision_transformer")

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src import maps  # noqa: E402
from gradcam_jax.toys import vit as toy_vit  # noqa: E402

DIM, HEADS, CLASSES = 32, 2, 5


def linen_params(net, heads: int = HEADS) -> dict:
    """A torchvision `VisionTransformer`'s weights in `ToyViT`'s layout (any width, depth; `heads` heads)."""
    w = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    dim = w["class_token"].shape[-1]
    head_dim = dim // heads

    def dense(prefix):
        return {"kernel": w[f"{prefix}.weight"].T, "bias": w[f"{prefix}.bias"]}

    def norm(prefix):
        return {"scale": w[f"{prefix}.weight"], "bias": w[f"{prefix}.bias"]}

    params = {
        "embed": {"kernel": w["conv_proj.weight"].transpose(2, 3, 1, 0), "bias": w["conv_proj.bias"]},
        "cls": w["class_token"],
        "pos": w["encoder.pos_embedding"],
        "norm": norm("encoder.ln"),
        "head": dense("heads.head"),
    }
    for i in range(len(net.encoder.layers)):
        layer = f"encoder.layers.encoder_layer_{i}"
        qkv_w = np.split(w[f"{layer}.self_attention.in_proj_weight"], 3)
        qkv_b = np.split(w[f"{layer}.self_attention.in_proj_bias"], 3)
        attn = {
            name: {"kernel": kw.T.reshape(dim, heads, head_dim), "bias": kb.reshape(heads, head_dim)}
            for name, kw, kb in zip(("query", "key", "value"), qkv_w, qkv_b)
        }
        attn["out"] = {
            "kernel": w[f"{layer}.self_attention.out_proj.weight"].T.reshape(heads, head_dim, dim),
            "bias": w[f"{layer}.self_attention.out_proj.bias"],
        }
        params[f"blocks_{i}"] = {
            "ln1": norm(f"{layer}.ln_1"),
            "ln2": norm(f"{layer}.ln_2"),
            "attn": attn,
            "mlp1": dense(f"{layer}.mlp.0"),
            "mlp2": dense(f"{layer}.mlp.3"),
        }
    return params


def twins():
    """(torchvision ViT, linen `ToyViT`, its variables) with the same seeded weights: image 32, patch 8,
    2 blocks, width `DIM`, `HEADS` heads, `CLASSES` classes."""
    torch.manual_seed(0)
    net = vision_transformer.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=HEADS, hidden_dim=DIM, mlp_dim=2 * DIM, num_classes=CLASSES
    ).eval()
    with torch.no_grad():  # torchvision starts the class token and the head at zero: give them values
        net.class_token.normal_(0, 0.5)
        net.heads.head.weight.normal_(0, 0.5)
    model = toy_vit.ToyViT(image_size=(32, 32), patch=8, dim=DIM, depth=2, heads=HEADS, num_classes=CLASSES)
    return net, model, {"params": linen_params(net)}


def test_legrad_matches_torchcam_on_the_same_weights():
    net, model, variables = twins()
    images = np.asarray(jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), np.float32)
    classes = [1, 3]

    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torchcam_methods.LeGrad(net, list(net.encoder.layers)) as extractor:
        logits = net(x)
        expected = extractor(class_idx=classes, scores=logits)[0].detach().numpy()  # (2, 4, 4)
    np.testing.assert_allclose(model.apply(variables, images), logits.detach().numpy(), atol=1e-4)

    result = gj.legrad(model, variables, images, np.array(classes), head=toy_vit.legrad_head)
    reference = np.asarray(maps.finish(expected, (32, 32)))  # torchcam's grid, upsampled as ours is
    for ours, theirs in zip(np.asarray(result.map), reference):
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99  # the bar
    np.testing.assert_allclose(result.map, reference, atol=1e-4)  # measured: 2.4e-7 apart, correlation 1.0

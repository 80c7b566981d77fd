"""AttnLRP and CP-LRP against lxt 2.1 on the same weights, and against the forward pass.

A torchvision `VisionTransformer` at ViT-S/16's shape (224x224, 16-px patches, width 384, 12 blocks,
6 heads, MLP 4x, 1000 classes; random weights, the class token and head given values), and the linen
`toy_vit.ToyViT` holding the same weights. One batch, top-1 class. Rows, each compiled/warmed once,
then all timed round-robin (median of `--repeats`), so the machine's load hits them alike:

  forward (jax)        the linen model under jit (the yardstick for ours)
  attn_lrp, cp_lrp     `gj.attn_lrp` / `gj.cp_lrp` (one forward pass, one backward pass)
  input_x_gradient     `gj.input_x_gradient`: a plain gradient's cost, the floor of any such method
  forward (torch)      the torchvision model, no gradient (the yardstick for lxt's)
  lxt AttnLRP, CP-LRP  lxt's efficient mode (as tests/test_attn_lrp.py patches it): forward with
                       gradient, one backward pass, input x gradient

It also prints how far apart ours and lxt's relevance are on this batch (correlation, max difference).

    python benchmarks/attn_lrp_cost.py [--batch 4] [--repeats 3] [--size 224]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.models import vision_transformer  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax.toys import vit as toy_vit  # noqa: E402
from tests.test_attn_lrp import lxt_modules, lxt_patched  # noqa: E402
from tests.test_legrad_torchcam import linen_params  # noqa: E402  (torchvision ViT -> ToyViT weights)


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224, help="image side (ViT-S/16: 224)")
    args = parser.parse_args(argv)
    dim, depth, heads, patch, classes = 384, 12, 6, 16, 1000
    torch.manual_seed(0)
    net = vision_transformer.VisionTransformer(
        image_size=args.size, patch_size=patch, num_layers=depth, num_heads=heads, hidden_dim=dim,
        mlp_dim=4 * dim, num_classes=classes,
    ).eval()  # fmt: skip
    with torch.no_grad():  # torchvision starts the class token and the head at zero: give them values
        net.class_token.normal_(0, 0.5)
        net.heads.head.weight.normal_(0, 0.05)  # pyright: ignore[reportCallIssue, reportAttributeAccessIssue]
    model = toy_vit.ToyViT((args.size, args.size), patch, dim, depth, heads, classes, mlp_ratio=4)
    variables = {"params": jax.tree.map(np.asarray, linen_params(net, heads))}
    images = np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    top = np.asarray(jax.jit(model.apply)(variables, images)).argmax(-1)
    monkey_patch, patches, rules, vit_torch = lxt_modules()

    def attention_forward(self, query, key, value, *a, **kw):
        q, k, v = rules.divide_gradient(query, 4), rules.divide_gradient(key, 4), rules.divide_gradient(value, 2)
        return self.original_forward(q, k, v, *a, **kw)

    maps_of = {
        "lxt AttnLRP": {
            **vit_torch.cp_LRP,
            vision_transformer.nn.MultiheadAttention: functools.partial(
                patches.patch_method, attention_forward, keep_original=True
            ),
        },
        "lxt CP-LRP": vit_torch.cp_LRP,
    }

    def lxt(patch_map):
        with lxt_patched(monkey_patch, vision_transformer, patch_map):
            xg = x.clone().requires_grad_(True)
            scores = net(xg)[torch.arange(args.batch), torch.from_numpy(np.array(top))]
            scores.backward(torch.ones_like(scores))
            assert xg.grad is not None
            return (xg * xg.grad).detach().numpy().transpose(0, 2, 3, 1)

    def torch_forward():
        with torch.no_grad():
            return net(x).numpy()

    forward = jax.jit(model.apply)
    rows = {
        "forward (jax)": lambda: jax.block_until_ready(forward(variables, images)),
        "attn_lrp": lambda: jax.block_until_ready(gj.attn_lrp(model, variables, images, top).gradients),
        "cp_lrp": lambda: jax.block_until_ready(gj.cp_lrp(model, variables, images, top).gradients),
        "input_x_gradient": lambda: jax.block_until_ready(gj.input_x_gradient(model, variables, images, top).map),
        "forward (torch)": torch_forward,
        "lxt AttnLRP": lambda: lxt(maps_of["lxt AttnLRP"]),
        "lxt CP-LRP": lambda: lxt(maps_of["lxt CP-LRP"]),
    }
    results = {name: fn() for name, fn in rows.items()}  # compile / warm up, and the relevance to compare
    for ours, theirs in (("attn_lrp", "lxt AttnLRP"), ("cp_lrp", "lxt CP-LRP")):
        a, b = np.asarray(results[ours]), results[theirs]
        r = min(np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(args.batch))
        print(f"{ours} vs {theirs}: lowest correlation {r:.7f}, max |difference| {np.abs(a - b).max():.2e} "
              f"(relevance up to {np.abs(b).max():.2e})")  # fmt: skip
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"ViT-S/16 shape at {args.size} px, batch {args.batch}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}, "
        f"median of {args.repeats}"
    )
    print(f"{'':<18}{'ms':>10}{'x its forward':>15}")
    for name, t in medians.items():
        yardstick = medians["forward (torch)" if "torch" in name or "lxt" in name else "forward (jax)"]
        print(f"{name:<18}{1000 * t:>10.1f}{t / yardstick:>15.2f}")
    print(f"attn_lrp / lxt AttnLRP: {medians['attn_lrp'] / medians['lxt AttnLRP']:.2f}; "
          f"cp_lrp / lxt CP-LRP: {medians['cp_lrp'] / medians['lxt CP-LRP']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

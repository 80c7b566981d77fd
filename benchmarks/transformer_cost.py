"""What each transformer method costs, as a multiple of the forward pass, on a ViT-S/16-shaped model.

`toy_vit.ToyViT` at ViT-S/16's shape (224x224, 16-px patches, width 384, 12 blocks, 6 heads, MLP 4x,
1000 classes), random weights, one batch, top-1 class. Each row is jitted once, then all rows are
timed round-robin (median of `--repeats`), so a change in the machine's load hits them alike:

  forward              the model under jit (the yardstick)
  attention_rollout    forward with the attention taps, rollout over 12 blocks
  generic_attention    forward + one backward pass to every block's attention, the relevancy rule
  legrad               forward + one backward pass of the 12 block scores (each block's own), the maps
  grad_cam             Grad-CAM on the last block's tokens (laid out by themselves), logit score

    python benchmarks/transformer_cost.py [--device cpu] [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax.toys import vit as toy_vit

VIT_S16 = toy_vit.ToyViT(image_size=(224, 224), patch=16, dim=384, depth=12, heads=6, mlp_ratio=4, num_classes=1000)


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    device = jax.devices(args.device)[0]
    images = jax.device_put(np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype(np.float32), device)
    variables = jax.device_put(jax.jit(VIT_S16.init)(jax.random.key(0), images[:1]), device)
    model = VIT_S16
    rows = {
        "forward": jax.jit(model.apply),
        "attention_rollout": lambda v, x: gj.attention_rollout(model, v, x).map,
        "generic_attention": lambda v, x: gj.generic_attention(model, v, x).map,
        "legrad": lambda v, x: gj.legrad(model, v, x, head=toy_vit.legrad_head).map,
        "grad_cam": lambda v, x: gj.grad_cam(model, v, x, layer="blocks_11", score="logit").map,
    }
    for fn in rows.values():  # compile
        jax.block_until_ready(fn(variables, images))
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(variables, images))
            times[name].append(time.perf_counter() - start)
    forward = statistics.median(times["forward"])
    print(f"ViT-S/16 shape, batch {args.batch}, {device.device_kind}, median of {args.repeats}")
    print(f"{'':<20}{'ms':>10}{'x forward':>11}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<20}{1000 * t:>10.1f}{t / forward:>11.2f}")


if __name__ == "__main__":
    main()

"""What Grad-CAM and the transformer methods cost on big_vision's own ViT, as a multiple of its forward pass.

big_vision's `vit.py` (vendored unchanged in tests/vendor/big_vision), pool type `tok`, width 192, 6
blocks, 3 heads, 8-px patches on 64x64 images (8x8 patches + the class token), 10 classes, random
weights, batch 16, top-1 class. Each row is jitted once, then all rows are timed round-robin (median
of `--repeats`), so a change in the machine's load hits them alike. Targets: Grad-CAM within ~1.3x a
forward pass, the attention methods within 2.5x.

    python benchmarks/vit_cost.py [--device cpu] [--batch 16] [--repeats 5] [--scan]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "vendor" / "big_vision"))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from big_vision.models import vit  # noqa: E402  # pyright: ignore[reportMissingImports]

import gradcam_jax as gj  # noqa: E402

DEPTH = 6


def head(variables, tokens):
    """LeGrad's head: big_vision's final norm, the class token, the classifier."""
    p = variables["params"]
    x = jnp.asarray(nn.LayerNorm(epsilon=1e-6).apply({"params": p["Transformer"]["encoder_norm"]}, tokens))[:, 0]
    return x @ p["head"]["kernel"] + p["head"]["bias"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scan", action="store_true", help="blocks under nn.scan + nn.remat, as big_vision trains")
    args = parser.parse_args(argv)
    device = jax.devices(args.device)[0]
    model = vit.Model(
        10, width=192, depth=DEPTH, num_heads=3, patch_size=(8, 8), pool_type="tok", scan=args.scan, head_zeroinit=False
    )
    images = jax.device_put(np.random.default_rng(0).normal(size=(args.batch, 64, 64, 3)).astype(np.float32), device)
    variables = jax.device_put(jax.jit(model.init)(jax.random.key(0), images[:1]), device)
    last = f"Transformer/encoderblock[{DEPTH - 1}]" if args.scan else f"Transformer/encoderblock_{DEPTH - 1}"
    layer = last + "/LayerNorm_0"  # the last block's input to its attention (a class-token ViT's usual layer)
    forward = jax.jit(lambda v, x: model.apply(v, x)[0])
    rows = {
        "forward": forward,
        "grad_cam": lambda v, x: gj.grad_cam(model, v, x, layer=layer, score="logit").map,
        "attention_rollout": lambda v, x: gj.attention_rollout(model, v, x).map,
        "generic_attention": lambda v, x: gj.generic_attention(model, v, x).map,
        "legrad": lambda v, x: gj.legrad(model, v, x, head=head).map,
    }
    for fn in rows.values():  # compile
        jax.block_until_ready(fn(variables, images))
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(variables, images))
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["forward"])
    print(
        f"big_vision ViT tok, width 192, depth {DEPTH}, 64 px, batch {args.batch}, scan={args.scan}, "
        f"{device.device_kind}, median of {args.repeats}; load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':<20}{'ms':>10}{'x forward':>11}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<20}{1000 * t:>10.1f}{t / base:>11.2f}")


if __name__ == "__main__":
    main()

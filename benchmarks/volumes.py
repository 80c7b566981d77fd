"""What explaining a volume costs: Grad-CAM on the toy 3-D CNN (`toy_nd.volume_cnn`) as a multiple of
its forward pass, and occlusion's cost in forward passes, on one device.

Rows, each jitted once and timed round-robin (median of `--repeats`), random weights (the cost does
not depend on them):
  forward            the model under jit (the yardstick)
  grad_cam           the public function, logit score, block3: tap, backward pass to the layer,
                     weights, rescale, cubic upsampling along three axes
  occlusion          windows of `--window` voxels per axis at stride `--window` (window^-3 of the
                     volume each), zero-filled, `batch_size` 16: one forward pass per position

    python benchmarks/volumes.py --size 64 --batch 4
"""

from __future__ import annotations

import argparse
import math
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
from gradcam_jax.toys import nd as toy_nd


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--window", type=int, default=16, help="occlusion window and stride, voxels per axis")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    device = jax.devices(args.device)[0]
    model = toy_nd.volume_cnn()
    shape = (args.batch, args.size, args.size, args.size, 1)
    volumes = jax.device_put(np.random.default_rng(0).normal(size=shape).astype(np.float32), device)
    variables = jax.device_put(model.init(jax.random.key(0), volumes[:1]), device)
    classes = np.zeros(args.batch, np.int32)
    forward = jax.jit(model.apply)
    window = {"patch": args.window, "stride": args.window, "baseline": 0.0, "score": "logit"}
    positions = math.ceil(args.size / args.window) ** 3
    rows = {
        "forward": lambda: forward(variables, volumes),
        "grad_cam": lambda: gj.grad_cam(model, variables, volumes, classes, layer="block3", score="logit").map,
        f"occlusion ({positions} windows)": lambda: gj.occlusion(model, variables, volumes, classes, **window).map,
    }
    for run in rows.values():
        jax.block_until_ready(run())
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["forward"])
    print(f"{args.batch} volumes of {args.size}^3 on {device.device_kind}, median of {args.repeats}:")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"  {name:28} {1e3 * median:9.1f} ms  {base and median / base:7.2f}x forward")


if __name__ == "__main__":
    main()

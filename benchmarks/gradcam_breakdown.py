"""Where Grad-CAM's time goes beyond the forward pass, on GoogLeNet: one process, one device, one batch.

Rows, each jitted once and timed round-robin (median of `--repeats`):
  forward                 model.apply under jit (the yardstick)
  forward + layer         the forward pass with the inception_5b-output tap (forward_with_layer)
  layer gradients         + the vjp of the softmax score w.r.t. the layer (no map)
  grad_cam core           + weights, rescale and bicubic upsampling to 224 (grad_cam.jitted: no input checks)
  grad_cam                the public function (input checks, target resolution, NaN check in the program)

    python benchmarks/gradcam_breakdown.py --device gpu --batch 256
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
from gradcam_jax import targets
from gradcam_jax._src import gradients
from gradcam_jax._src.adapters import taps  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    device = jax.devices(args.device)[0]
    model, variables = gj.load_googlenet()
    variables = jax.device_put(variables, device)
    images = jax.device_put(
        np.random.default_rng(0).uniform(0, 255, (args.batch, 224, 224, 3)).astype(np.float32), device
    )
    top1 = np.asarray(gj.top_k(model, variables, images, k=1)[1])[:, 0]
    target = targets.classes(jax.device_put(top1, device), "softmax")
    layer = "inception_5b/output"

    forward = jax.jit(lambda v, x: model.apply(v, x)[0])
    tapped = jax.jit(lambda v, x: taps.forward_with_layer(model, v, x, layer)[1])
    grads = jax.jit(lambda v, x, t: gradients.layer_gradients(model, v, x, t, layer=layer).gradients)
    rows = {
        "forward": lambda: forward(variables, images),
        "forward + layer": lambda: tapped(variables, images),
        "layer gradients": lambda: grads(variables, images, target),
        "grad_cam core": lambda: gj.grad_cam.jitted(model, variables, images, target),
        "grad_cam": lambda: gj.grad_cam(model, variables, images, top1),
    }
    for run in rows.values():
        jax.block_until_ready(run())
        jax.block_until_ready(run())
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, run in rows.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["forward"])
    print(f"batch {args.batch} on {device.device_kind}, median of {args.repeats}:")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(
            f"  {name:18} {1e3 * median:8.2f} ms  {args.batch / median:10.1f} images/s  {base / median:5.2f}x forward"
        )


if __name__ == "__main__":
    main()

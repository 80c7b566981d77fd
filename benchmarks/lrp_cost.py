"""What one LRP map costs on GoogLeNet, against Grad-CAM, the input gradient and zennit, in one run.

    python benchmarks/lrp_cost.py [--batch 4] [--repeats 5] [--threads 2]

BVLC GoogLeNet (`gradcam_jax.load_googlenet`) and its PyTorch port with the same weights
(`benchmarks/torch_googlenet.py`, the `HookableGoogLeNet` variant whose LRNs zennit can map),
cat_dog.jpg repeated `--batch` times, each image's top class. Rows: our Grad-CAM, the input
gradient (`saliency`: "Grad-CAM at the input", one forward and one backward pass to the pixels),
`lrp` with EpsilonPlus and EpsilonGammaBox, and zennit 0.5.1's `Gradient` attributor with the same
composites, plus torch's own input gradient. Each row: one warm-up (compiling) call, then the median
of `--repeats` calls, in ms per image. The issue's target: one LRP map within 1.5x the input gradient.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from zennit import composites as zc  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.rules import Pass  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from benchmarks import torch_googlenet as tg  # noqa: E402
from gradcam_jax._src.relevance import composites as C  # noqa: E402
from gradcam_jax.methods import METHODS  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: compiling (jax), first-call allocations (torch)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="images per call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch's CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, variables = gj.load_googlenet()
    image = gj.load_image(ROOT / "docs" / "images" / "cat_dog.jpg")[None].astype(np.float32)
    images = np.repeat(image, args.batch, axis=0)
    targets = np.asarray(gj.top_k(model, variables, images, 1)[1])[:, 0]
    mean = np.asarray(tg.BGR_MEAN, np.float32)
    box = C.epsilon_gamma_box(tuple(-mean), tuple(255.0 - mean))

    port = tg.load_bvlc(hookable=True)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    one_hot = torch.eye(1000)[torch.from_numpy(targets)]
    low = torch.from_numpy(-mean).view(1, 3, 1, 1).expand(1, 3, *x.shape[2:])
    high = torch.from_numpy(255.0 - mean).view(1, 3, 1, 1).expand(1, 3, *x.shape[2:])
    zennit = {
        "EpsilonPlus": zc.EpsilonPlus(layer_map=[(tg.LRN, Pass())]),
        "EpsilonGammaBox": zc.EpsilonGammaBox(low=low, high=high, layer_map=[(tg.LRN, Pass())]),
    }

    def ours(name, **options):
        return lambda: jax.block_until_ready(METHODS[name](model, variables, images, targets, **options).map)

    def with_zennit(composite):
        def run():
            with Gradient(port, composite) as attributor:
                attributor(x, one_hot)

        return run

    def torch_input_gradient():
        inputs = x.clone().requires_grad_(True)
        (port(inputs) * one_hot).sum().backward()

    rows = [
        ("ours `grad_cam` (inception_5b-output)", ours("grad_cam")),
        ("ours `saliency` (the input gradient)", ours("saliency")),
        ("ours `lrp`, EpsilonPlus", ours("lrp", composite="EpsilonPlus")),
        ("ours `lrp`, EpsilonGammaBox", ours("lrp", composite=box)),
        ("torch input gradient (the port)", torch_input_gradient),
        ("zennit EpsilonPlus", with_zennit(zennit["EpsilonPlus"])),
        ("zennit EpsilonGammaBox", with_zennit(zennit["EpsilonGammaBox"])),
    ]
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.processor() or 'unknown'})"
    if jax.default_backend() != "cpu":
        machine = jax.devices()[0].device_kind
    print(f"{machine}, jax {jax.__version__}, torch {torch.__version__} ({args.threads} threads), batch {args.batch}")
    print(f"load {os.getloadavg()[0]:.1f} at the start")
    print("| row | ms per image | × our input gradient |\n|---|---:|---:|")
    times = {}
    for label, fn in rows:
        times[label] = median_seconds(fn, args.repeats) / args.batch
        base = times.get("ours `saliency` (the input gradient)")
        ratio = f"{times[label] / base:.2f}" if base else ""
        print(f"| {label} | {1000 * times[label]:.1f} | {ratio} |", flush=True)
    for name in ("EpsilonPlus", "EpsilonGammaBox"):
        ours_s = times["ours `lrp`, " + name]
        print(f"{name}: ours {times['zennit ' + name] / ours_s:.1f}x faster than zennit")
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

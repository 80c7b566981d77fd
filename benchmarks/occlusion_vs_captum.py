"""Occlusion sensitivity, gradcam_jax against captum's `Occlusion`: same photo, same network
weights, same window, stride and fill value, the same number of occluded forward passes.

Rows (each explains the top-1 class of cat_dog.jpg; window 45 x 45, stride 23 — MATLAB's "auto"
sizes for 224 x 224 — and the ImageNet mean pixel as the fill):
  captum Occlusion (default)  `perturbations_per_eval=1`, the default: one forward pass per window
  captum Occlusion (batched)  `perturbations_per_eval=--captum-batch` windows per forward pass
  ours, clipping off          `occlusion(clipping=False)`: whole windows only, as captum (8 x 8 = 64)
  ours, MATLAB default        `occlusion()` with MaskClipping "on": windows centred from the corner,
                              clipped at the edges (10 x 10 = 100), i.e. more work than captum

captum runs on the PyTorch port of the BVLC GoogLeNet (benchmarks/torch_googlenet.py) under
`torch.inference_mode`, falling back to torchvision's googlenet(weights=None) (comparable compute)
if the port cannot load; the output says which. Each row runs `--warmup` times (compilation,
caches), then all rows are timed round-robin `--repeats` rounds and the median is reported, so a
noisy neighbour slows them alike. The agreement line is the Spearman rank correlation between our
clipping-off map and captum's per-pixel attribution (captum averages the windows that cover a
pixel; our grid is upsampled bicubically, so the two agree in order, not in value).

    python benchmarks/occlusion_vs_captum.py [--repeats 3] [--batch-size 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import torch  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src.methods.common import MEAN_PIXEL  # noqa: E402
from gradcam_jax.metrics import spearman  # noqa: E402

WINDOW, STRIDE = 45, 23


def torch_model():
    """(the PyTorch GoogLeNet taking NCHW RGB 0..255, a description)."""
    try:
        from benchmarks.torch_googlenet import load_bvlc

        return load_bvlc().eval(), "PyTorch port of the BVLC GoogLeNet (benchmarks/torch_googlenet.py)"
    except Exception as err:  # the port is optional here: the compute is what is compared
        import torchvision

        net = torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False).eval()
        return (lambda x: net(x / 127.5 - 1.0)), f"torchvision googlenet(weights=None) (port unavailable: {err})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "images" / "cat_dog.jpg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="our masks per forward pass")
    parser.add_argument(
        "--captum-batch", type=int, default=16, help="captum's perturbations_per_eval in the batched row"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from captum.attr import Occlusion

    model, variables = gj.load_googlenet()
    image = gj.load_image(args.image)[None].astype(np.float32)  # (1, 224, 224, 3) RGB 0..255
    target = int(np.asarray(gj.top_k(model, variables, image, 1)[1])[0, 0])
    net, net_name = torch_model()
    x = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())
    baseline = torch.tensor(MEAN_PIXEL, dtype=torch.float32).reshape(1, 3, 1, 1)
    occlusion = Occlusion(lambda t: torch.softmax(net(t), dim=-1))
    ours = gj.METHODS["occlusion"]

    def captum_run(batch):
        with torch.inference_mode():
            return occlusion.attribute(
                x,
                target=target,
                sliding_window_shapes=(3, WINDOW, WINDOW),
                strides=(3, STRIDE, STRIDE),
                baselines=baseline,
                perturbations_per_eval=batch,
            )

    def ours_run(clipping):
        options = dict(patch=WINDOW, stride=STRIDE, clipping=clipping, batch_size=args.batch_size)
        result = ours(model, variables, image, np.array([target]), **options)
        return jax.block_until_ready(result.map)

    rows = {
        "captum Occlusion (default, 1 window per pass)": (lambda: captum_run(1), 64),
        f"captum Occlusion (batched, {args.captum_batch} per pass)": (lambda: captum_run(args.captum_batch), 64),
        "ours, clipping off (captum's windows)": (lambda: ours_run(False), 64),
        "ours, MATLAB default (clipping on)": (lambda: ours_run(True), 100),
    }
    for fn, _ in rows.values():
        for _ in range(args.warmup):
            fn()
    times = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, (fn, _) in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}

    theirs = captum_run(args.captum_batch)[0].sum(0).numpy()  # (224, 224), channels share a window
    mine = np.asarray(ours_run(False))[0]
    rho = float(spearman(mine, theirs))

    base = median["captum Occlusion (default, 1 window per pass)"]
    batched = median[f"captum Occlusion (batched, {args.captum_batch} per pass)"]
    print(
        f"machine: {platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"jax {jax.__version__} on {jax.default_backend()}"
    )
    print(f"torch model: {net_name}")
    print(
        f"image {args.image.name}, class {target} ({gj.label(target)}), window {WINDOW}, stride {STRIDE}, "
        f"median of {args.repeats}"
    )
    header = ("row", "windows", "s/image", "ms/window", "vs captum default", "vs captum batched")
    print("{:48s} {:>7s} {:>8s} {:>9s} {:>17s} {:>17s}".format(*header))
    for name, (_, windows) in rows.items():
        t = median[name]
        print(f"{name:48s} {windows:7d} {t:8.3f} {1000 * t / windows:9.1f} {base / t:16.2f}x {batched / t:16.2f}x")
    print(f"agreement: Spearman(ours clipping off, captum) = {rho:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"torch_model": net_name, "seconds": median, "spearman": rho}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

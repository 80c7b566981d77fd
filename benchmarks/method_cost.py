"""How long each CNN method takes on this machine, as a multiple of Grad-CAM's time, in one run.

    python benchmarks/method_cost.py [--classes 1] [--repeats 3]

BVLC GoogLeNet, cat_dog.jpg, its top class (or the top `--classes` classes at once), each method
with its defaults except the costliest, which run with `scripts/evaluate.py`'s `LIGHT_OPTIONS` (as
in the evaluation table). Per method: one compiling call, then the median of `--repeats` warm calls.
All methods are timed in the same process, one after another, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from evaluate import LIGHT_OPTIONS, ORDER, timed  # noqa: E402  # pyright: ignore[reportMissingImports]  # scripts/evaluate.py

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS  # noqa: E402
from gradcam_jax.methods import METHODS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--classes", type=int, default=1, help="classes explained at once (K)")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls timed per method")
    args = parser.parse_args(argv)

    model, variables = gj.load_googlenet()
    images = gj.load_image(ROOT / "docs" / "images" / "cat_dog.jpg")[None].astype(np.float32)
    targets = np.asarray(gj.top_k(model, variables, images, args.classes)[1])
    cnn = [n for n in METHODS if n not in ATTENTION_METHODS]
    names = [n for n in ORDER if n in cnn] + sorted(set(cnn) - set(ORDER))
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU" if jax.default_backend() == "cpu" else ""
    print(f"{machine or jax.devices()[0].device_kind}, jax {jax.__version__}, load {os.getloadavg()[0]:.1f}")
    print("| method | options | ms | × Grad-CAM |\n|---|---|---:|---:|")
    base = None
    for name in names:
        options = LIGHT_OPTIONS.get(name, {})
        method = functools.partial(METHODS[name], model, variables, images, targets, **options)
        _, seconds = timed(method, args.repeats, budget=0)  # exactly `repeats` warm calls
        base = base or seconds  # grad_cam comes first
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        print(f"| `{name}` | {shown} | {1000 * seconds:.0f} | {seconds / base:.1f} |", flush=True)
    print(f"load {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of a batch-multiplying method against the batch size B: `batch_size` bounds it.

    python benchmarks/batch_memory.py                                   # IG, B = 1, 16, 64
    python benchmarks/batch_memory.py --method occlusion --sizes 1 16 --batch-size 16

Each B runs in a fresh subprocess (GoogLeNet, B copies of cat_dog.jpg, one call), and its own peak
resident memory (max RSS, from getrusage in that process) is printed with its wall time. With `batch_size`
counting whole images per forward pass, the peak should not grow with B beyond the inputs and
outputs themselves (B x 224 x 224 x 3 float32 = 0.6 MB per image).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, resource, sys, time
import numpy as np
import gradcam_jax as gj
method, size, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
model, variables = gj.load_googlenet()
images = np.repeat(gj.load_image("docs/images/cat_dog.jpg")[None].astype(np.float32), size, axis=0)
start = time.perf_counter()
np.asarray(gj.METHODS[method](model, variables, images, **options).map)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
DEFAULTS = {
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 8},
    "occlusion": {"stride": 56},
    "score_cam": {"layer": "inception_5b-relu_pool_proj"},
}


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--method", default="integrated_gradients")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64], help="batch sizes B to run")
    p.add_argument("--batch-size", type=int, default=8, help="the method's batch_size: images per forward pass")
    args = p.parse_args()
    options = {**DEFAULTS.get(args.method, {}), "batch_size": args.batch_size}
    with open("/proc/loadavg") as f:
        print(f"{args.method} {options}; load {f.read().split()[0]}")
    for size in args.sizes:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, args.method, str(size), json.dumps(options)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
            return 1
        result = json.loads(run.stdout.splitlines()[-1])
        peak, seconds = result["peak_kib"] / 1024, result["seconds"]
        print(f"B = {size:3d}: peak RSS {peak:7.0f} MiB, {seconds:6.1f} s ({size / seconds:.2f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

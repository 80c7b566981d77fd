"""Train the toy ViT on pair scenes with optax, then score the transformer methods on held-out scenes.

    python scripts/toy_vit_proof.py [--steps 800] [--seed 0] [--n 128] [--save tests/data/toy_vit.msgpack]
    python scripts/toy_vit_proof.py --load tests/data/toy_vit.msgpack     # evaluate the saved weights
    python scripts/toy_vit_proof.py --load tests/data/toy_vit.msgpack     # evaluate the saved weights

Prints the accuracy, and per method (attention rollout, generic attention, LeGrad, Grad-CAM on the
last block's tokens, AttnLRP, CP-LRP, random maps) the pointing share and the deletion/insertion AUCs
(`gradcam_jax.toys.vit.evaluate`). `--save` writes the trained weights, which tests/test_toy_vit.py
reads (so the test does not train).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from flax import serialization

from gradcam_jax.toys import vit as toy_vit

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=128, help="held-out scenes")
    parser.add_argument("--save", type=Path, default=None, help="write the trained weights here (msgpack)")
    parser.add_argument("--load", type=Path, default=None, help="evaluate these weights instead of training")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.load:
        model, variables = toy_vit.TRAINED, toy_vit.load(args.load)
    else:
        model, variables, losses = toy_vit.train(seed=args.seed, steps=args.steps)
        seconds = time.perf_counter() - start
        print(f"trained {args.steps} steps in {seconds:.0f} s; last-50 loss {float(losses[-50:].mean()):.3f}")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_bytes(serialization.to_bytes(variables))
        print(f"saved {args.save}")
    start = time.perf_counter()
    report = toy_vit.evaluate(model, variables, n=args.n)
    print(f"evaluated in {time.perf_counter() - start:.0f} s on {platform.processor() or platform.machine()}")
    print(f"accuracy {report.accuracy:.3f}; a shape covers {report.area:.3f} of the image")
    print(f"{'method':<20}{'pointing':>10}{'deletion':>10}{'insertion':>11}")
    for name, scores in report.methods.items():
        print(f"{name:<20}{scores.pointing:>10.3f}{scores.deletion:>10.3f}{scores.insertion:>11.3f}")


if __name__ == "__main__":
    main()

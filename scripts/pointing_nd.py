"""The pointing game on toy volumes and toy signals (`gradcam_jax.toys.nd`), with CNNs trained here:
prints the share of held-out samples whose map peaks on the object, per method, against random
maps, and (with --pictures) draws the docs' pictures: the planes and a montage of a volume, a
signal figure.

    python scripts/pointing_nd.py                     # the table
    python scripts/pointing_nd.py --pictures docs/images
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from gradcam_jax.methods import grad_cam
from gradcam_jax.overlay import montage, planes, signal
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import nd as toy_nd

KINDS = {
    # kind: (model, data, training steps, batch, learning rate)
    "volumes": (toy_nd.volume_cnn, toy_nd.make_volumes, 60, 16, 3e-3),  # as tests/test_toy_dimensions.py
    "signals": (toy_nd.signal_cnn, toy_nd.make_signals, 80, 32, 1e-2),
}


def run(kind: str, held_out: int, seed: int):
    make_model, data, steps, batch, learning_rate = KINDS[kind]
    start = time.perf_counter()
    model, variables, losses = toy.train(seed=seed, steps=steps, batch=batch, model=make_model(), data=data,
                                         learning_rate=learning_rate)  # fmt: skip
    trained = time.perf_counter() - start
    report = toy_nd.pointing(model, variables, data(jax.random.key(1_000 + seed), held_out), toy_nd.POINTING_METHODS)
    print(f"\n{kind}: {steps} steps of {batch} in {trained:.0f} s, final loss {float(losses[-10:].mean()):.2f}, "
          f"held-out accuracy {report.accuracy:.2f}, object share {report.area:.3f}")  # fmt: skip
    print(f"  {'method':<22} pointing")
    for name, share in report.shares.items():
        print(f"  {name:<22} {share:.2f}")
    print(f"  {'random maps':<22} {report.random:.2f}")
    return model, variables, report


def pictures(folder: Path, volume_run, signal_run, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model, variables, _ = volume_run
    held = toy_nd.make_volumes(jax.random.key(2_000 + seed), 8)
    index = int(np.argmax(np.asarray(held.labels) == 1))  # a sphere
    result = grad_cam(model, variables, held.images[index : index + 1], held.labels[index : index + 1],
                                        **toy_nd.POINTING_METHODS["grad_cam"])  # fmt: skip
    volume, heatmap = np.asarray(held.images[index, ..., 0]), np.asarray(result.map[0])
    big = lambda a: Image.fromarray(a).resize((a.shape[1] * 6, a.shape[0] * 6), Image.Resampling.NEAREST)  # noqa: E731
    big(planes(volume, heatmap)).save(folder / "volume_planes.png")
    big(montage(volume, heatmap, axis=0, every=3, columns=4)).save(folder / "volume_montage.png")
    model, variables, _ = signal_run
    held = toy_nd.make_signals(jax.random.key(3_000 + seed), 8)
    index = int(np.argmax(np.asarray(held.labels) == 1))  # a pulse
    result = grad_cam(model, variables, held.images[index : index + 1], held.labels[index : index + 1],
                                        **toy_nd.POINTING_METHODS["grad_cam"])  # fmt: skip
    fig = signal(np.asarray(held.images[index]), np.asarray(result.map[0]), names=["trace"])
    fig.savefig(folder / "signal_map.png", dpi=80, bbox_inches="tight")
    print(f"\npictures in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=Path, help="folder for the docs' pictures")
    args = parser.parse_args()
    volume_run = run("volumes", args.held_out, args.seed)
    signal_run = run("signals", args.held_out, args.seed)
    if args.pictures:
        pictures(args.pictures, volume_run, signal_run, args.seed)


if __name__ == "__main__":
    main()

"""Train the toy shape classifier with optax, score Grad-CAM with the pointing game, save a figure.

    python scripts/train_toy.py [--steps 400] [--seed 0] [--figure docs/images/toy_pointing_game.png]

A thin CLI over `gradcam_jax.toys.classifier` (the model, the data made on the fly, the train loop, the score).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gradcam_jax.overlay import blend  # noqa: E402
from gradcam_jax.toys import classifier as toy

ROOT = Path(__file__).resolve().parent.parent


def figure(report: toy.Report, count: int = 8):
    """Held-out images with their Grad-CAM map (true class), the shape's outline and the map's peak."""
    batch = report.batch
    peaks = np.asarray(toy.peaks(report.maps))
    hits = np.asarray(report.hits)
    shown, misses = list(range(count)), np.flatnonzero(~hits)
    if hits[:count].all() and misses.size:  # show a miss too, if there is one
        shown[-1] = int(misses[0])
    fig, axes = plt.subplots(2, count // 2, figsize=(1.9 * count // 2, 4.5))
    for i, ax in zip(shown, axes.flat):
        image = np.asarray(batch.images[i, ..., 0])
        grey = np.clip((image - image.min()) / (image.max() - image.min()) * 255, 0, 255)
        ax.imshow(blend(np.repeat(grey[..., None], 3, -1), np.asarray(report.maps[i]), alpha=0.45))
        ax.contour(np.asarray(batch.masks[i]), levels=[0.5], colors="white", linewidths=1.0)
        ax.plot(peaks[i, 1], peaks[i, 0], marker="+", color="black", markersize=11, markeredgewidth=2.2)
        ax.plot(peaks[i, 1], peaks[i, 0], marker="+", color="white", markersize=9, markeredgewidth=1.0)
        hit = "hit" if hits[i] else "miss"
        ax.set_title(f"{toy.SHAPES[int(batch.labels[i])]}: {hit}", fontsize=10)
        ax.axis("off")
    fig.suptitle(
        f"Grad-CAM at {toy.LAYER} of a CNN trained here: the peak (+) is on the shape (outline)\n"
        f"for {report.pointing:.1%} of {len(hits)} held-out images; random maps: {report.random_pointing:.1%}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="optax Adam steps, 64 fresh images each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=256, help="held-out images for the pointing game")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "toy_pointing_game.png")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, variables, losses = toy.train(seed=args.seed, steps=args.steps)
    jax.block_until_ready(losses)
    seconds = time.perf_counter() - start
    loss_start, loss_end = float(losses[:10].mean()), float(losses[-50:].mean())
    print(f"trained {args.steps} steps in {seconds:.1f} s (compile included); loss {loss_start:.3f} -> {loss_end:.3f}")

    report = toy.evaluate(model, variables, n=args.held_out)
    print(f"held-out accuracy: {report.accuracy:.3f}")
    near = f"within {toy.TOLERANCE:g} px"
    print(f"pointing game, Grad-CAM peak on the shape: {report.pointing:.3f} ({near}: {report.pointing_near:.3f})")
    print(
        f"pointing game, random maps: {report.random_pointing:.3f} ({near}: {report.random_near:.3f}); "
        f"mean shape area {report.area:.3f}"
    )

    args.figure.parent.mkdir(parents=True, exist_ok=True)
    figure(report).savefig(args.figure, dpi=110)
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

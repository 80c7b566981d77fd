"""Right for the right reasons: a shortcut the plain model takes and the Grad-CAM-penalised one does not.

    python scripts/train_right_reasons.py [--seeds 0 1 2] [--steps 400] [--figure docs/images/right_reasons.png]

Training scenes (`gradcam_jax.toys.classifier.make_shortcut_batch`): a grey square, circle or cross on noise,
and a small corner patch whose colour gives the class away; test scenes: the patch colour is random.
Two toy CNNs per seed, trained alike (optax Adam, gradient norm clipped) on the same batches:

- plain: cross-entropy only;
- penalised: cross-entropy + WEIGHT x the share of the true class's Grad-CAM mass outside the shape
  (`gradcam_jax.training.outside_share`; only the training scenes' object masks are used).

On shortcut-free test scenes it reports accuracy and where the Grad-CAM of the predicted class
peaks: on the shape (or within 1 px of it) or on the patch. It writes a figure of a few test scenes, both models side by side.
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from pathlib import Path
from typing import NamedTuple

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gradcam_jax import grad_cam
from gradcam_jax._src.adapters import taps  # noqa: E402
from gradcam_jax.overlay import blend  # noqa: E402
from gradcam_jax.toys import classifier as toy
from gradcam_jax.training import outside_share  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEIGHT = 1.0  # of the explanation penalty against the cross-entropy
LEARNING_RATE = 3e-3
CLIP = 1.0  # global gradient norm; see the docstring of `optimizer`
CAM = dict(layer=toy.LAYER, score="logit", relu=False)  # logit Grad-CAM at the last conv block; see below


def penalised_loss(model, params, batch, weight: float = WEIGHT):
    """Cross-entropy + weight x mean share of the true class's Grad-CAM mass outside the object."""
    variables = {"params": params}
    cams = grad_cam(model, variables, batch.images, batch.labels, **CAM).map
    return toy.cross_entropy(model, params, batch) + weight * outside_share(cams, batch.masks).mean()


def optimizer():
    """Adam after clipping the gradient's global norm. Where a map is nearly flat, the min-max
    rescale divides by its small span and one step's gradient can be huge; Adam would carry it on
    for tens of steps (its first moment decays faster than its second), and without the clip the
    penalised model sometimes collapsed to a constant prediction (dead ReLUs, no gradient back)."""
    return optax.chain(optax.clip_by_global_norm(CLIP), optax.adam(LEARNING_RATE))


class Scores(NamedTuple):
    accuracy: float  # on shortcut-free test scenes
    on_shape: float  # share of Grad-CAM peaks (predicted class) on the shape
    near_shape: float  # ... on it or within toy.TOLERANCE (1 px, half a cell of the layer) of it
    on_patch: float  # ... on the patch
    maps: np.ndarray  # (n, S, S) the Grad-CAM maps
    predictions: np.ndarray  # (n,) int


def score(model, variables, test: toy.ShortcutBatch) -> Scores:
    """Accuracy and where Grad-CAM of the predicted class peaks, on `test`."""
    predictions = np.asarray(taps.apply_logits(model, variables, test.images).argmax(-1))
    cams = grad_cam(model, variables, test.images, predictions, **CAM).map
    on = lambda region, tolerance=0.0: float(toy.pointing_hits(cams, region, tolerance).mean())  # noqa: E731
    accuracy = float((predictions == np.asarray(test.labels)).mean())
    near = on(test.masks, toy.TOLERANCE)
    return Scores(accuracy, on(test.masks), near, on(test.patches), np.asarray(cams), predictions)


def figure(test: toy.ShortcutBatch, plain: Scores, penalised: Scores, table: str, count: int = 6):
    """Test scenes (top), Grad-CAM of the plain model's prediction (middle), of the penalised one's (bottom)."""
    fig, axes = plt.subplots(3, count, figsize=(1.75 * count, 6.6))
    for i in range(count):
        image = np.clip(np.asarray(test.images[i]), 0, 1) * 255
        axes[0, i].imshow(image.astype(np.uint8))
        axes[0, i].set_title(f"{toy.SHAPES[int(test.labels[i])]}", fontsize=9)
        for row, result in ((1, plain), (2, penalised)):
            axes[row, i].imshow(blend(image, result.maps[i], alpha=0.5))
            axes[row, i].contour(np.asarray(test.masks[i]), levels=[0.5], colors="white", linewidths=0.8)
            axes[row, i].set_title(f"says {toy.SHAPES[int(result.predictions[i])]}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("test scene", fontsize=9)
    axes[1, 0].set_ylabel("plain", fontsize=9)
    axes[2, 0].set_ylabel("+ Grad-CAM penalty", fontsize=9)
    fig.suptitle(table, fontsize=8, family="monospace")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400, help="optax Adam steps per model")
    parser.add_argument("--batch", type=int, default=32, help="fresh training scenes per step")
    parser.add_argument("--weight", type=float, default=WEIGHT, help="of the Grad-CAM penalty")
    parser.add_argument("--test", type=int, default=256, help="shortcut-free test scenes")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "right_reasons.png")
    args = parser.parse_args(argv)

    train_data = functools.partial(toy.make_shortcut_batch, informative=True)
    test = toy.make_shortcut_batch(jax.random.key(1_000_003), args.test, informative=False)
    losses = {"plain": toy.cross_entropy, "penalised": functools.partial(penalised_loss, weight=args.weight)}
    rows, first = [], {}
    for seed in args.seeds:
        for name, loss in losses.items():
            start = time.perf_counter()
            model, variables, losses_seen = toy.train(
                seed, args.steps, args.batch, data=train_data, loss=loss, optimizer=optimizer()
            )
            result = score(model, variables, test)
            seconds = time.perf_counter() - start
            rows.append((seed, name, result))
            first.setdefault(name, result)
            print(
                f"seed {seed} {name:9s}: test accuracy {result.accuracy:.3f}, Grad-CAM peak on the shape "
                f"{result.on_shape:.3f} (within 1 px {result.near_shape:.3f}), on the patch {result.on_patch:.3f}; final loss "
                f"{float(losses_seen[-20:].mean()):.3f} ({seconds:.0f} s)",
                flush=True,
            )
    heads = ("test accuracy", "peak on shape", "... within 1 px", "peak on patch")
    lines = [f"{'':10s}" + "".join(f"{h:>21s}" for h in heads) + f"   mean [min-max] over seeds {args.seeds}"]
    for name in losses:
        got = np.array([[r.accuracy, r.on_shape, r.near_shape, r.on_patch] for _, n, r in rows if n == name])
        mean, low, high = got.mean(0), got.min(0), got.max(0)
        cells = "".join(f"{m:>9.3f} [{lo:.2f}-{hi:.2f}]" for m, lo, hi in zip(mean, low, high))
        lines.append(f"{name:10s} {cells}")
    table = "\n".join(lines)
    print(table)
    print(f"machine: {platform.machine()} CPU, {platform.python_implementation()} {platform.python_version()}")

    args.figure.parent.mkdir(parents=True, exist_ok=True)
    caption = (
        f"Shortcut-free test scenes, seed {args.seeds[0]} shown; {args.steps} steps x {args.batch} scenes\n{table}"
    )
    figure(test, first["plain"], first["penalised"], caption).savefig(args.figure, dpi=100)
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ROAD against pytorch-grad-cam 1.5.7's own ROAD classes (`pytorch_grad_cam.metrics.road`) on the
same BVLC weights (the PyTorch port, `benchmarks/torch_googlenet.py`), the same photo and the same
Grad-CAM maps (ours, handed to both): the runner `theirs` for `tests/test_road.py` and, run as a
script, the figures of docs/methods.md (the largest difference of the scores, and the seconds each
side takes), or (`--write`) the reference the test compares with: pytorch-grad-cam's side is slow
(a sparse direct solve per image and percentile), so the test reads its scores from tests/data.

pytorch-grad-cam's classes hard-code their imputer's noise (std 0.01) and draw it with
`torch.randn_like`; `theirs` sets the std (`noise`) and hands the imputer the standard normal draws
our `metrics.road(key=...)` makes (`our_draws`), so the two sides compute the same thing, noise
included.

    python benchmarks/road_original.py [--percentiles 20 50 80] [--noise 0] [--score softmax]
    python benchmarks/road_original.py --write tests/data/road_pytorch_grad_cam.npz   # the test's reference
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import torch_googlenet as tg  # noqa: E402

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"
KINDS = ("most", "least", "combined")


def our_draws(key, percentiles: Sequence[int], images: np.ndarray, maps: np.ndarray) -> Iterator[torch.Tensor]:
    """The standard normal draws `metrics.road(key=key)` adds (times `noise`) to the imputed pixels, as
    (C, N) tensors in the order pytorch-grad-cam's imputer asks for them in `ROADCombined`: least
    relevant first at each percentile, then most relevant first; image after image. Removal i (0..P-1
    most, P..2P-1 least relevant first) draws `jax.random.normal(fold_in(key, i), images.shape)`
    (the rule in `metrics.road`'s doc), of which the imputer takes the removed pixels, row-major."""
    import jax

    from gradcam_jax import metrics
    from gradcam_jax._src.methods.common import random_key

    count = len(percentiles)
    for first, offset in ((False, count), (True, 0)):
        for j, p in enumerate(percentiles):
            draws = np.asarray(jax.random.normal(jax.random.fold_in(random_key(key), offset + j), images.shape))
            removed = np.asarray(metrics.road_removed(maps, p, first))
            for b in range(len(images)):
                yield torch.from_numpy(draws[b][removed[b]].T.copy())


@contextlib.contextmanager
def imputer_noise(noise: float, draws: Iterator[torch.Tensor] | None):
    """pytorch-grad-cam's `NoisyLinearImputer` with std `noise`, drawing from `draws` (None: zeros)."""
    from pytorch_grad_cam.metrics import road

    defaults, randn_like = road.NoisyLinearImputer.__init__.__defaults__ or (), road.torch.randn_like

    def handed(like):
        drawn = torch.zeros_like(like) if draws is None else next(draws)
        assert drawn.shape == like.shape, (drawn.shape, like.shape)
        return drawn

    road.NoisyLinearImputer.__init__.__defaults__ = (noise, *defaults[1:])
    road.torch.randn_like = handed
    try:
        yield
    finally:
        road.NoisyLinearImputer.__init__.__defaults__ = defaults
        road.torch.randn_like = randn_like


def theirs(
    net: torch.nn.Module,
    images: np.ndarray,
    maps: np.ndarray,
    classes: Sequence[int],
    percentiles: Sequence[int],
    *,
    score: str = "softmax",
    noise: float = 0.0,
    draws: Iterator[torch.Tensor] | None = None,
    kinds: Sequence[str] = KINDS,
) -> dict[str, np.ndarray]:
    """pytorch-grad-cam's ROAD on `images` (B, H, W, 3) RGB 0..255 (what the port takes, NCHW), the
    `maps` (B, H, W) and one class per image: {"most": (B, P) `ROADMostRelevantFirst(p)` per
    percentile, "least": (B, P) `ROADLeastRelevantFirst(p)`, "combined": (B,) `ROADCombined`}, those
    in `kinds`; the last computed by its own class (with `draws`: the ones `our_draws` makes, in its
    order), the first two with the same draws again, so all three agree with one call of ours."""
    from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    kind = ClassifierOutputSoftmaxTarget if score == "softmax" else ClassifierOutputTarget
    targets = [kind(int(c)) for c in classes]
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    drawn = None if draws is None else list(draws)
    count, batch = len(percentiles), len(images)

    def replay(kind_offset: int, j: int):  # the draws of one (order, percentile), for the single classes
        return None if drawn is None else iter(drawn[(kind_offset + j) * batch : (kind_offset + j + 1) * batch])

    out = {}
    for name, metric, offset in (("least", ROADLeastRelevantFirst, 0), ("most", ROADMostRelevantFirst, count)):
        if name not in kinds:
            continue
        rows = []
        for j, p in enumerate(percentiles):
            with imputer_noise(noise, replay(offset, j)):
                rows.append(metric(p)(x, maps, targets, net))
        out[name] = np.stack(rows, -1)
    if "combined" in kinds:
        with imputer_noise(noise, None if drawn is None else iter(drawn)):
            out["combined"] = ROADCombined(list(percentiles))(x, maps, targets, net)
    return out


def handed_maps(images: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """(B, H, W) uint8: our Grad-CAM maps of `classes`, in 1/255 steps (the maps both sides get, as
    map / 255 in float32: stored so, the test's reference does not hang on the last bit of a map)."""
    import gradcam_jax as gj

    model, variables = gj.load_googlenet()
    return np.round(255 * np.asarray(gj.grad_cam(model, variables, images, np.asarray(classes)).map)).astype(np.uint8)


def photo_pair() -> np.ndarray:
    """(2, 224, 224, 3) float32: cat_dog.jpg twice, one per class (DOG, CAT)."""
    import gradcam_jax as gj

    return np.repeat(gj.load_image(ROOT / "docs" / "images" / "cat_dog.jpg")[None].astype(np.float32), 2, axis=0)


# What tests/test_road.py compares (computed by `--write`): softmax scores, two percentiles, noise 0
# for the single classes, NOISE with our KEY's draws handed over for ROADCombined.
PERCENTILES, NOISE, KEY = (30, 80), 20.0, 3


def write_reference(path: Path) -> None:
    """tests/data's reference: the maps handed over, and pytorch-grad-cam's scores on them."""
    images, classes = photo_pair(), (DOG, CAT)
    stored = handed_maps(images, classes)
    maps = stored.astype(np.float32) / 255
    net = tg.load_bvlc()
    single = theirs(net, images, maps, classes, PERCENTILES, kinds=("most", "least"))
    draws = our_draws(KEY, PERCENTILES, images, maps)
    noisy = theirs(net, images, maps, classes, PERCENTILES, noise=NOISE, draws=draws, kinds=("combined",))
    np.savez_compressed(
        path,
        maps=stored,
        classes=np.asarray(classes, np.int32),
        percentiles=np.asarray(PERCENTILES, np.float32),
        noise=np.float32(NOISE),
        key=np.int32(KEY),
        most=single["most"],
        least=single["least"],
        combined_noisy=noisy["combined"],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--percentiles", nargs="+", type=int, default=[10, 20, 30, 40, 50, 60, 70, 80, 90])
    parser.add_argument("--noise", type=float, default=0.0, help="imputation noise std, 0..255 units (theirs: 0.01)")
    parser.add_argument("--score", choices=("softmax", "logit"), default="softmax")
    parser.add_argument(
        "--write", type=Path, help="write the test's reference here (tests/data/road_pytorch_grad_cam.npz)"
    )
    args = parser.parse_args(argv)
    if args.write:
        write_reference(args.write)
        print(f"-> {args.write}")
        return 0

    import jax

    import gradcam_jax as gj
    from gradcam_jax import metrics

    model, variables = gj.load_googlenet()
    images, classes = photo_pair(), [DOG, CAT]
    maps = handed_maps(images, classes).astype(np.float32) / 255
    options = {"percentiles": args.percentiles, "noise": args.noise, "key": 0, "score": args.score}

    def ours():
        return jax.block_until_ready(metrics.road(model, variables, images, maps, classes, **options))

    ours()  # compiles
    start = time.perf_counter()
    mine = ours()
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    draws = our_draws(0, args.percentiles, images, maps) if args.noise else None
    net = tg.load_bvlc()
    their = theirs(net, images, maps, classes, args.percentiles, score=args.score, noise=args.noise, draws=draws)
    theirs_s = time.perf_counter() - start  # each of their classes once plus ROADCombined: 4P imputations
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.default_backend()}")
    print(f"percentiles {args.percentiles}, noise {args.noise}, {args.score}; dog / cat")
    for name, got in (
        ("most", mine.most_relevant_first),
        ("least", mine.least_relevant_first),
        ("combined", mine.combined),
    ):
        got, want = np.asarray(got), their[name]
        worst = np.abs(got - want).max() / np.abs(want).max()
        print(f"{name}: ours {np.round(got, 5).tolist()}\n  theirs {np.round(want, 5).tolist()}")
        print(f"  largest difference / largest |score change|: {worst:.2e}")
    print(
        f"seconds: ours {ours_s:.2f} (2P imputations + passes), theirs {theirs_s:.2f} (4P: the classes + ROADCombined)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The evaluation metrics (`gradcam_jax.metrics`, issue 29) against Quantus 0.6.0 (and captum 0.9 for
`sampled_infidelity`) on the same small CNN, inputs, maps and settings, in one run: ms per image for
each, and the ratio.

The model is tests/test_deeplift.py's CNN: a PyTorch net for Quantus and its linen twin (the same
weights) for ours, on `--batch` random images of `--size` x `--size` x 3 (0..1, blocks of colour) with random maps (no
ties) and targets. Our metrics are jitted: each is run once to compile (not timed), then timed
`--repeats` times (the median); Quantus's run `--their-repeats` times (seconds each; nothing of
theirs compiles, so no run is dropped). Settings are each metric's below, the same for both (Quantus counts
channel values where we count pixels, so its `features_in_step` and `subset_size` are ours x 3; a
numeric baseline, as Quantus's "black" is the image's minimum and ours 0). Quantus's Infidelity
repeats one deterministic value `n_perturb_samples` times: it runs with 1 here, which is its least
work.

Adding a metric is one entry in `METRICS`: a name, and two functions of the `Setup` (ours, theirs),
each returning when its work is done. Each row gives the wall time and the CPU time (this process, all
threads): on a shared machine the wall time includes waiting for a core.

`--model googlenet` runs the BVLC GoogLeNet and its PyTorch port instead, on the two photos in
docs/images, for the metrics in `GOOGLENET_METRICS`; with `--check` it also prints how far two of
them are from Quantus's there (`googlenet_agreement`).

    python -m benchmarks.metrics_vs_quantus [--metrics PixelFlipping,IROF] [--batch 8] [--size 48]
        [--model googlenet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from gradcam_jax import metrics  # noqa: E402


@dataclass
class Setup:
    """What both sides get: `model`, `variables` (ours), `net` (theirs, torch), `x` (B, H, W, 3) and
    `x_q` (B, 3, H, W) the same images, `maps` (B, H, W) and `a_q` (B, 1, H, W) the same maps,
    `targets` (B,)."""

    model: object
    variables: dict
    net: Any
    x: np.ndarray
    x_q: np.ndarray
    maps: np.ndarray
    a_q: np.ndarray
    targets: np.ndarray

    def ours(self, name: str, **options):
        result = getattr(metrics, name)(self.model, self.variables, self.x, self.maps, self.targets, **options)
        return jax.block_until_ready(result)

    def quantus(self, metric, **call):
        return metric(model=self.net, x_batch=self.x_q, y_batch=self.targets, a_batch=self.a_q, device="cpu", **call)


def quantus_metric(name: str, **options):
    import quantus

    if not hasattr(np, "trapz"):  # Quantus's AUC calls np.trapz, gone in NumPy 2.4
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    return getattr(quantus, name)(disable_warnings=True, display_progressbar=False, **options)


def captum_infidelity(s: Setup, samples: int, noise: float):
    import torch
    from captum.metrics import infidelity

    def perturb(inputs):
        noise_draw = noise * torch.randn_like(inputs)
        return noise_draw, inputs - noise_draw

    attributions = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(s.a_q, s.x_q.shape)))
    return infidelity(s.net, perturb, torch.from_numpy(s.x_q), attributions, target=s.targets.tolist(),
                      n_perturb_samples=samples)  # fmt: skip


def irof_mask(arr, mask, **kwargs):
    """Quantus 0.6.0's IROF hands its perturbation a mask one channel deep; broadcast it (else it asserts)."""
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)


C = 3  # channels: Quantus's feature counts are ours x C
METRICS: dict[str, tuple[Callable[[Setup], object], Callable[[Setup], object]]] = {
    "FaithfulnessCorrelation": (
        lambda s: s.ours("faithfulness_correlation", nr_runs=100, subset_size=64, baseline=0.0),
        lambda s: s.quantus(quantus_metric("FaithfulnessCorrelation", nr_runs=100, subset_size=C * 64,
                                           perturb_baseline=0.0, return_aggregate=False)),
    ),
    "FaithfulnessEstimate": (
        lambda s: s.ours("faithfulness_estimate", features_in_step=16, baseline=0.0),
        lambda s: s.quantus(quantus_metric("FaithfulnessEstimate", features_in_step=C * 16, perturb_baseline=0.0)),
    ),
    "Infidelity": (
        lambda s: s.ours("infidelity", perturb_patch_sizes=(4,), baseline=0.0),
        lambda s: s.quantus(quantus_metric("Infidelity", perturb_patch_sizes=[4], n_perturb_samples=1,
                                           perturb_baseline=0.0)),
    ),
    "IROF": (
        lambda s: s.ours("irof", baseline=0.0),
        lambda s: s.quantus(quantus_metric("IROF", perturb_baseline=0.0, perturb_func=irof_mask,
                                           return_aggregate=False)),
    ),
    "Monotonicity": (
        lambda s: s.ours("monotonicity", features_in_step=16, baseline=0.0),
        lambda s: s.quantus(quantus_metric("Monotonicity", features_in_step=C * 16, perturb_baseline=0.0)),
    ),
    "MonotonicityCorrelation": (
        lambda s: s.ours("monotonicity_correlation", features_in_step=64, nr_samples=10),
        lambda s: s.quantus(quantus_metric("MonotonicityCorrelation", features_in_step=C * 64, nr_samples=10)),
    ),
    "PixelFlipping": (
        lambda s: s.ours("pixel_flipping", features_in_step=16, baseline=0.0),
        lambda s: s.quantus(quantus_metric("PixelFlipping", features_in_step=C * 16, perturb_baseline=0.0)),
    ),
    "RegionPerturbation": (
        lambda s: s.ours("region_perturbation", patch_size=4, regions_evaluation=64, baseline=0.0),
        lambda s: s.quantus(quantus_metric("RegionPerturbation", patch_size=4, regions_evaluation=64,
                                           perturb_baseline=0.0)),
    ),
    "Selectivity": (
        lambda s: s.ours("selectivity", patch_size=4, baseline=0.0),
        lambda s: s.quantus(quantus_metric("Selectivity", patch_size=4, perturb_baseline=0.0)),
    ),
    "SensitivityN": (
        lambda s: s.ours("sensitivity_n", features_in_step=16, baseline=0.0),
        lambda s: s.quantus(quantus_metric("SensitivityN", features_in_step=C * 16, n_max_percentage=C * 0.8,
                                           perturb_baseline=0.0)),
    ),
    "Sufficiency": (
        lambda s: s.ours("sufficiency"),
        lambda s: s.quantus(quantus_metric("Sufficiency")),
    ),
    "sampled_infidelity (captum)": (
        lambda s: s.ours("sampled_infidelity", n_perturb_samples=100, noise=0.1),
        lambda s: captum_infidelity(s, 100, 0.1),
    ),
}  # fmt: skip


# On GoogLeNet (224 x 224 RGB, 50176 pixels, no multiple of 3) Quantus's steps of channel values cannot
# cover whole pixels, so only the metrics on patches and random subsets run there.
GOOGLENET_METRICS: dict[str, tuple[Callable[[Setup], object], Callable[[Setup], object]]] = {
    "FaithfulnessCorrelation": (
        lambda s: s.ours("faithfulness_correlation", nr_runs=10, subset_size=224, baseline=0.0, batch_size=8),
        lambda s: s.quantus(quantus_metric("FaithfulnessCorrelation", nr_runs=10, subset_size=C * 224,
                                           perturb_baseline=0.0, return_aggregate=False)),
    ),
    "RegionPerturbation": (
        lambda s: s.ours("region_perturbation", patch_size=56, regions_evaluation=16, baseline=0.0, batch_size=8),
        lambda s: s.quantus(quantus_metric("RegionPerturbation", patch_size=56, regions_evaluation=16,
                                           perturb_baseline=0.0)),
    ),
    "Infidelity": (
        lambda s: s.ours("infidelity", perturb_patch_sizes=(56,), baseline=0.0, batch_size=8),
        lambda s: s.quantus(quantus_metric("Infidelity", perturb_patch_sizes=[56], n_perturb_samples=1,
                                           perturb_baseline=0.0)),
    ),
}  # fmt: skip


def googlenet_setup(batch: int, seed: int = 0) -> Setup:
    """The BVLC GoogLeNet (ours, Flax) and its PyTorch port (benchmarks/torch_googlenet.py) on the two
    photos in docs/images (0..255), repeated to `batch`, random maps and targets."""
    import captum.metrics  # noqa: F401  (imported before any timing)
    import quantus  # noqa: F401

    import gradcam_jax as gj
    from benchmarks import torch_googlenet

    model, variables = gj.load_googlenet()
    photos = [gj.load_image(ROOT / "docs" / "images" / name) for name in ("cat_dog.jpg", "cat.png")]
    x = np.stack([photos[i % 2] for i in range(batch)]).astype(np.float32)
    rng = np.random.default_rng(seed)
    maps = (rng.permutation(batch * 224 * 224).reshape(batch, 224, 224) / (batch * 224 * 224)).astype(np.float32)
    x_q = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    net = torch_googlenet.load_bvlc()
    return Setup(model, variables, net, x, x_q, maps, maps[:, None], rng.integers(0, 1000, batch))


def googlenet_agreement(s: Setup) -> None:
    """Print how far ours are from Quantus's on GoogLeNet: RegionPerturbation's curves (softmax drops)
    and Infidelity's scores, patches of 56 (the tests compare every metric on the small CNN)."""
    ours = s.ours("region_perturbation", patch_size=56, regions_evaluation=16, baseline=0.0, batch_size=8)
    metric = quantus_metric("RegionPerturbation", patch_size=56, regions_evaluation=16, perturb_baseline=0.0)
    theirs = np.asarray(s.quantus(metric, softmax=True))
    print(f"agreement: RegionPerturbation curves differ by at most {np.abs(np.asarray(ours.curve) - theirs).max():.1e}"
          f" (largest drop {np.abs(theirs).max():.1e})")  # fmt: skip
    ours = s.ours("infidelity", perturb_patch_sizes=(56,), baseline=0.0, batch_size=8)
    metric = quantus_metric("Infidelity", perturb_patch_sizes=[56], n_perturb_samples=1, perturb_baseline=0.0)
    theirs = np.asarray(s.quantus(metric))
    print(f"agreement: Infidelity within {np.abs(np.asarray(ours.per_image) / theirs - 1).max():.1e} relative")


def setup(batch: int, size: int, seed: int = 0) -> Setup:
    import captum.metrics  # noqa: F401  (imported before any timing)
    import quantus  # noqa: F401

    from tests.test_deeplift import Twin, torch_twin, twin_variables

    _, net = torch_twin()
    rng = np.random.default_rng(seed)
    # smooth images (6 x 6 blocks of colour, a little noise): SLIC finds segments in them (none in pure noise)
    blocks = rng.uniform(0, 1, (batch, 6, 6, 3))
    x = np.repeat(np.repeat(blocks, -(-size // 6), 1), -(-size // 6), 2)[:, :size, :size]
    x = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    maps = (rng.permutation(batch * size * size).reshape(batch, size, size) / (batch * size * size)).astype(np.float32)
    targets = rng.integers(0, 5, batch)
    x_q = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return Setup(Twin(), twin_variables(net), net, x, x_q, maps, maps[:, None], targets)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process, all its threads) of `repeats` calls.
    On a shared machine the wall time includes waiting for a core; the CPU time counts only work."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--metrics", default="", help="comma-separated names from: " + ", ".join(METRICS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--size", type=int, default=48, help="a multiple of 24 (Quantus asserts its steps divide the pixels)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (milliseconds each)")
    parser.add_argument("--their-repeats", type=int, default=1, help="timed runs of theirs (seconds each)")
    parser.add_argument("--model", choices=("cnn", "googlenet"), default="cnn", help="googlenet: GOOGLENET_METRICS")
    parser.add_argument("--check", action="store_true", help="googlenet: also print the agreement with Quantus")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    table = GOOGLENET_METRICS if args.model == "googlenet" else METRICS
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()] or list(table)
    unknown = [m for m in chosen if m not in table]
    if unknown:
        parser.error(f"unknown metric(s) {unknown}; choose from {list(table)}")
    s = googlenet_setup(args.batch) if args.model == "googlenet" else setup(args.batch, args.size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}; jax "
          f"{jax.__version__} ({jax.default_backend()}); {args.model}, {args.batch} images {s.x.shape[1]} x {s.x.shape[2]} x 3, "
          f"median of {args.repeats} (ours) and {args.their_repeats} (theirs) runs")  # fmt: skip
    print(
        f"{'metric':28s} {'ours ms/img':>11s} {'theirs ms/img':>13s} {'speed-up':>8s}   CPU ms/img: ours, theirs, ratio"
    )
    rows = []
    for name in chosen:
        mine, theirs = table[name]
        mine(s)  # compile
        ours_wall, ours_cpu = timed(lambda mine=mine: mine(s), args.repeats)
        theirs_wall, theirs_cpu = timed(lambda theirs=theirs: theirs(s), args.their_repeats)
        per = 1000 / args.batch
        row = {"metric": name, "ours_ms": ours_wall * per, "theirs_ms": theirs_wall * per,
               "ours_cpu_ms": ours_cpu * per, "theirs_cpu_ms": theirs_cpu * per}  # fmt: skip
        rows.append(row)
        print(f"{name:28s} {ours_wall * per:11.2f} {theirs_wall * per:13.2f} {theirs_wall / ours_wall:7.1f}x   "
              f"{ours_cpu * per:.2f}, {theirs_cpu * per:.2f}, {theirs_cpu / max(ours_cpu, 1e-9):.1f}x", flush=True)  # fmt: skip
    if args.model == "googlenet" and args.check:
        googlenet_agreement(s)
    if args.json:
        args.json.write_text(json.dumps({"load": load, "batch": args.batch, "size": args.size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

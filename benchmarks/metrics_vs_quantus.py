"""The evaluation metrics (`gradcam_jax.metrics`, issue 29) against Quantus 0.6.0 (and captum 0.9 for
`sampled_infidelity` and `sensitivity_max`), in one run: ms per image for each, and the ratio. One
entry per metric in `METRICS`: a name, and two functions of its family's setup (ours, theirs), each
returning when its work is done; `--metrics` picks entries by name, `--family` by family.

Faithfulness (`FAITHFULNESS`): tests/test_deeplift.py's CNN, a PyTorch net for Quantus and its linen
twin (the same weights) for ours, on `--batch` images of `--size` x `--size` x 3 (default 48; 0..1,
blocks of colour) with random maps (no ties) and targets. Settings are each metric's below, the same
for both (Quantus counts channel values where we count pixels, so its `features_in_step` and
`subset_size` are ours x 3; a numeric baseline, as Quantus's "black" is the image's minimum and ours
0). Quantus's Infidelity repeats one deterministic value `n_perturb_samples` times: it runs with 1
here, which is its least work.

Robustness and randomisation (`ROBUSTNESS`): a two-convolution CNN and its PyTorch twin (`models`),
`--batch` normal images of `--size` (default 32), the same saliency on both sides (`torch_saliency`:
the input gradient's max |.| over channels, min-max per image), `--samples` draws of the noise
metrics, Continuity 2 x size / 8 shifts, sMPRT `--samples` / 4 samples. Ours re-explains every
perturbed batch inside one jitted program (`--batch-size` images per pass); Quantus loops over draws
in Python with one torch explanation per draw.

Our metrics are jitted: each is run once to compile (not timed), then timed `--repeats` times (the
median); Quantus's run `--their-repeats` times (seconds each; nothing of theirs compiles, so no run
is dropped; torch's first call is made before any timing). Each row gives the wall time and the CPU
time (this process, all threads): on a shared machine the wall time includes waiting for a core.

`--model googlenet` runs the BVLC GoogLeNet and its PyTorch port instead, on the two photos in
docs/images, for the metrics in `GOOGLENET_METRICS`; with `--check` it also prints how far two of
them are from Quantus's there (`googlenet_agreement`).

    python -m benchmarks.metrics_vs_quantus [--metrics PixelFlipping,MPRT] [--family robustness]
        [--batch 8] [--size 48] [--samples 20] [--model googlenet]
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
FAITHFULNESS: dict[str, tuple[Callable[[Setup], object], Callable[[Setup], object]]] = {
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


# ---- robustness and randomisation ------------------------------------------------------------------------


def models(size: int, classes: int = 10):
    """(flax module, its variables, torch twin): conv 3->16 -> ReLU -> conv 16->32 stride 2 -> ReLU ->
    mean -> dense -> classes, seeded torch weights copied into the Flax twin."""
    import flax.linen as nn
    import jax.numpy as jnp
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.relu1 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU()
            self.conv2, self.relu2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU()
            self.head = torch.nn.Linear(32, classes)

        def forward(self, x):
            return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))

    class Twin(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(16, (3, 3), padding=1, name="conv1")(x))
            x = nn.relu(nn.Conv(32, (3, 3), strides=2, padding=1, name="conv2")(x))
            return nn.Dense(classes, name="head")(x.mean(axis=(1, 2)))

    torch.manual_seed(0)
    net = Net().eval()
    leaf = lambda t, *axes: jnp.asarray(t.detach().numpy().transpose(*axes))  # noqa: E731
    conv = lambda c: {"kernel": leaf(c.weight, 2, 3, 1, 0), "bias": leaf(c.bias)}  # noqa: E731
    head = {"kernel": leaf(net.head.weight, 1, 0), "bias": leaf(net.head.bias)}
    return Twin(), {"params": {"conv1": conv(net.conv1), "conv2": conv(net.conv2), "head": head}}, net


def torch_saliency(model, inputs, targets, **kwargs):
    """Quantus's `explain_func`: our `saliency` on the torch twin."""
    import torch

    x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
    with torch.enable_grad():
        logits = model(x)
        logits[torch.arange(x.shape[0]), torch.as_tensor(np.asarray(targets))].sum().backward()
    assert x.grad is not None
    g = x.grad.abs().amax(dim=1).numpy()
    low, high = g.min(axis=(1, 2), keepdims=True), g.max(axis=(1, 2), keepdims=True)
    return ((g - low) / np.where(high > low, high - low, 1.0)).astype(np.float32)


@dataclass
class Robust:
    """What both sides get for the robustness and randomisation metrics: `model`, `variables` (ours),
    `net` (theirs), `x` (B, H, W, 3) and `nchw` the same images, `maps` (B, H, W) our saliency,
    `targets` (B,) the top-1 classes, the draws and passes (`samples`, `batch_size`), Continuity's
    `steps` and sMPRT's `smooth` samples."""

    model: object
    variables: dict
    net: Any
    x: np.ndarray
    nchw: np.ndarray
    maps: np.ndarray
    targets: np.ndarray
    samples: int
    batch_size: int
    steps: int
    smooth: int

    def ours(self, name: str, maps: bool = True, **options):
        """Our metric `name` on the maps (or None: the method's) with saliency, `per_image` ready."""
        options = {"method": "saliency", **options}
        result = getattr(metrics, name)(
            self.model, self.variables, self.x, self.maps if maps else None, self.targets, **options
        )
        return jax.block_until_ready(result.per_image)

    def quantus(self, name: str, maps: bool = True, **options):
        """Quantus's metric `name` on a fresh copy of the maps (it normalises them in place) or none,
        explaining with `torch_saliency`."""
        import quantus

        metric = getattr(quantus, name)(disable_warnings=True, **options)
        return metric(model=self.net, x_batch=self.nchw, y_batch=self.targets, channel_first=True,
                      a_batch=self.maps.copy() if maps else None, explain_func=torch_saliency)  # fmt: skip


def robust_setup(batch: int, size: int, samples: int, batch_size: int) -> Robust:
    import captum.metrics  # noqa: F401  (imported before any timing)
    import quantus

    from gradcam_jax import saliency

    model, variables, net = models(size)
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    targets = np.asarray(jax.numpy.argmax(model.apply(variables, x), -1))  # type: ignore[attr-defined]
    maps = np.array(saliency(model, variables, x, targets).map)
    # sMPRT calls quantus.explain (captum's methods by name), not explain_func: route it to the same saliency
    setattr(quantus, "explain", lambda model, inputs, targets, **kw: torch_saliency(model, inputs, targets))  # noqa: B010
    torch_saliency(net, nchw[:1], targets[:1])  # torch's first call, before any timing
    return Robust(
        model, variables, net, x, nchw, maps, targets, samples, batch_size, 2 * size // 8, max(2, samples // 4)
    )


def captum_sensitivity_max(r: Robust):
    import torch
    from captum.metrics import sensitivity_max

    def explain(inputs, target=None):
        (inputs,) = inputs if isinstance(inputs, tuple) else (inputs,)
        return (torch.from_numpy(torch_saliency(r.net, inputs.detach().numpy(), np.asarray(target))),)

    inputs: Any = torch.from_numpy(r.nchw)
    return sensitivity_max(explain, inputs, n_perturb_samples=r.samples, target=torch.as_tensor(r.targets))


ROBUSTNESS: dict[str, tuple[Callable[[Robust], object], Callable[[Robust], object]]] = {
    "MaxSensitivity": (
        lambda r: r.ours("max_sensitivity", samples=r.samples, batch_size=r.batch_size),
        lambda r: r.quantus("MaxSensitivity", nr_samples=r.samples),
    ),
    "AvgSensitivity": (
        lambda r: r.ours("avg_sensitivity", samples=r.samples, batch_size=r.batch_size),
        lambda r: r.quantus("AvgSensitivity", nr_samples=r.samples),
    ),
    "LocalLipschitzEstimate": (
        lambda r: r.ours("local_lipschitz_estimate", samples=r.samples, batch_size=r.batch_size),
        lambda r: r.quantus("LocalLipschitzEstimate", nr_samples=r.samples),
    ),
    "RelativeInputStability": (
        lambda r: r.ours("relative_input_stability", samples=r.samples, batch_size=r.batch_size),
        lambda r: r.quantus("RelativeInputStability", nr_samples=r.samples),
    ),
    "RelativeOutputStability": (
        lambda r: r.ours("relative_output_stability", samples=r.samples, batch_size=r.batch_size),
        lambda r: r.quantus("RelativeOutputStability", nr_samples=r.samples),
    ),
    "RelativeRepresentationStability": (
        lambda r: r.ours("relative_representation_stability", layer="conv2", samples=r.samples,
                         batch_size=r.batch_size),
        lambda r: r.quantus("RelativeRepresentationStability", nr_samples=r.samples, layer_names=["conv2"]),
    ),
    "Continuity": (
        lambda r: r.ours("continuity", maps=False, steps=r.steps, batch_size=r.batch_size),
        lambda r: r.quantus("Continuity", maps=False, nr_steps=r.steps),
    ),
    "Consistency": (
        lambda r: r.ours("consistency", method=None),
        lambda r: r.quantus("Consistency"),
    ),
    "sensitivity_max (captum)": (
        lambda r: r.ours("sensitivity_max", samples=r.samples, batch_size=r.batch_size),
        captum_sensitivity_max,
    ),
    "MPRT": (lambda r: r.ours("mprt"), lambda r: r.quantus("MPRT")),
    "SmoothMPRT": (
        lambda r: r.ours("smooth_mprt", samples=r.smooth, batch_size=r.batch_size),
        lambda r: r.quantus("SmoothMPRT", nr_samples=r.smooth),
    ),
    "EfficientMPRT": (lambda r: r.ours("efficient_mprt"), lambda r: r.quantus("EfficientMPRT")),
    "RandomLogit": (lambda r: r.ours("random_logit"), lambda r: r.quantus("RandomLogit", num_classes=10)),
}  # fmt: skip

METRICS = {**FAITHFULNESS, **ROBUSTNESS}
FAMILIES = {"faithfulness": FAITHFULNESS, "robustness": ROBUSTNESS}


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
    "Selectivity": (
        lambda s: s.ours("selectivity", patch_size=56, baseline=0.0, batch_size=8),
        lambda s: s.quantus(quantus_metric("Selectivity", patch_size=56, perturb_baseline=0.0)),
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
    parser.add_argument("--family", choices=("all", *FAMILIES), default="all", help="the metrics of one family")
    parser.add_argument("--batch", type=int, default=8, help="images")
    parser.add_argument(
        "--size",
        type=int,
        help="faithfulness: a multiple of 24 (Quantus asserts its steps divide the pixels), "
        "default 48; robustness: default 32",
    )
    parser.add_argument("--samples", type=int, default=20, help="robustness: draws of the noise metrics, sMPRT's x 4")
    parser.add_argument("--batch-size", type=int, default=16, help="robustness: images per pass of ours")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (milliseconds each)")
    parser.add_argument("--their-repeats", type=int, default=1, help="timed runs of theirs (seconds each)")
    parser.add_argument("--model", choices=("cnn", "googlenet"), default="cnn", help="googlenet: GOOGLENET_METRICS")
    parser.add_argument("--check", action="store_true", help="googlenet: also print the agreement with Quantus")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    table = GOOGLENET_METRICS if args.model == "googlenet" else METRICS
    if args.family != "all" and args.model == "cnn":
        table = FAMILIES[args.family]
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()] or list(table)
    unknown = [m for m in chosen if m not in table]
    if unknown:
        parser.error(f"unknown metric(s) {unknown}; choose from {list(table)}")
    setups: dict[str, Any] = {}  # each family's setup, built when its first metric runs

    def setup_of(name: str):
        family = "robustness" if name in ROBUSTNESS and args.model == "cnn" else "faithfulness"
        if family not in setups:
            if args.model == "googlenet":
                setups[family] = googlenet_setup(args.batch)
            elif family == "robustness":
                setups[family] = robust_setup(args.batch, args.size or 32, args.samples, args.batch_size)
            else:
                setups[family] = setup(args.batch, args.size or 48)
            s = setups[family]
            print(f"{family}: {args.model}, {args.batch} images {s.x.shape[1]} x {s.x.shape[2]} x 3")
        return setups[family]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}; jax "
          f"{jax.__version__} ({jax.default_backend()}); median of {args.repeats} (ours) and {args.their_repeats} "
          f"(theirs) runs; robustness: {args.samples} draws, batch_size {args.batch_size}")  # fmt: skip
    print(
        f"{'metric':32s} {'ours ms/img':>11s} {'theirs ms/img':>13s} {'speed-up':>8s}   CPU ms/img: ours, theirs, ratio"
    )
    rows = []
    for name in chosen:
        mine, theirs = table[name]
        s = setup_of(name)
        mine(s)  # compile
        ours_wall, ours_cpu = timed(lambda mine=mine, s=s: mine(s), args.repeats)
        theirs_wall, theirs_cpu = timed(lambda theirs=theirs, s=s: theirs(s), args.their_repeats)
        per = 1000 / args.batch
        row = {"metric": name, "ours_ms": ours_wall * per, "theirs_ms": theirs_wall * per,
               "ours_cpu_ms": ours_cpu * per, "theirs_cpu_ms": theirs_cpu * per}  # fmt: skip
        rows.append(row)
        print(f"{name:32s} {ours_wall * per:11.2f} {theirs_wall * per:13.2f} {theirs_wall / ours_wall:7.1f}x   "
              f"{ours_cpu * per:.2f}, {theirs_cpu * per:.2f}, {theirs_cpu / max(ours_cpu, 1e-9):.1f}x", flush=True)  # fmt: skip
    if args.model == "googlenet" and args.check:
        googlenet_agreement(setup_of(chosen[0]))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load at the end {load_end:.1f}")
    if args.json:
        figures = {"load": load, "load_end": load_end, "batch": args.batch, "size": args.size, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

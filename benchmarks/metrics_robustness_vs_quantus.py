"""The robustness and randomisation metrics, gradcam_jax against Quantus 0.6.0 (and captum's
`sensitivity_max`): ms per image on the same small CNN (a Flax model and its PyTorch twin with the
same weights), the same saliency on both sides (the input gradient's max |.| over channels,
min-max per image), the same number of draws, steps and layers.

Ours runs warm (each metric's program compiled by a first call, then the median of `--repeats`
calls); Quantus runs once per metric after one warm-up metric (its loops have nothing to compile;
torch's first call is the warm-up's). Ours re-explains every perturbed batch inside one jitted
program (`lax.map` over draws, `--batch-size` images per pass); Quantus loops over draws in Python
with one torch explanation per draw.

    python -m benchmarks.metrics_robustness_vs_quantus [--images 8] [--size 32] [--samples 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import numpy as np


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=20, help="draws of the noise metrics, sMPRT's samples / 4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import jax
    import quantus
    import torch
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    from gradcam_jax import metrics, saliency

    model, variables, net = models(args.size)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.images, args.size, args.size, 3)).astype(np.float32)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    logits: Any = model.apply(variables, x)
    targets = np.asarray(jax.numpy.argmax(logits, -1))
    maps = np.array(saliency(model, variables, x, targets).map)
    s, b = args.samples, args.batch_size
    steps = 2 * args.size // 8  # Continuity's shifts (a width the steps do not divide into 2 W + 1 exactly)
    smooth = max(2, s // 4)
    common: dict[str, Any] = {"method": "saliency", "batch_size": b}

    class Fresh(dict):  # Quantus normalises a_batch in place: each call gets its own copy
        def keys(self):
            self["a_batch"] = None if self.get("a_batch") is None else maps.copy()
            return super().keys()

    quantus_args = Fresh(model=net, x_batch=nchw, y_batch=targets, a_batch=maps, channel_first=True,
                         explain_func=torch_saliency)  # fmt: skip
    no_maps = Fresh({**quantus_args, "a_batch": None})
    q: dict[str, Any] = {"disable_warnings": True}

    def captum_run():
        def explain(inputs, target=None):
            (inputs,) = inputs if isinstance(inputs, tuple) else (inputs,)
            return (torch.from_numpy(torch_saliency(net, inputs.detach().numpy(), np.asarray(target))),)

        inputs: Any = torch.from_numpy(nchw)
        return captum_sensitivity_max(explain, inputs, n_perturb_samples=s, target=torch.as_tensor(targets))

    rows = [
        ("MaxSensitivity", lambda: metrics.max_sensitivity(model, variables, x, maps, targets, samples=s, **common),
         lambda: quantus.MaxSensitivity(nr_samples=s, **q)(**quantus_args)),
        ("AvgSensitivity", lambda: metrics.avg_sensitivity(model, variables, x, maps, targets, samples=s, **common),
         lambda: quantus.AvgSensitivity(nr_samples=s, **q)(**quantus_args)),
        ("LocalLipschitzEstimate",
         lambda: metrics.local_lipschitz_estimate(model, variables, x, maps, targets, samples=s, **common),
         lambda: quantus.LocalLipschitzEstimate(nr_samples=s, **q)(**quantus_args)),
        ("RelativeInputStability",
         lambda: metrics.relative_input_stability(model, variables, x, maps, targets, samples=s, **common),
         lambda: quantus.RelativeInputStability(nr_samples=s, **q)(**quantus_args)),
        ("RelativeOutputStability",
         lambda: metrics.relative_output_stability(model, variables, x, maps, targets, samples=s, **common),
         lambda: quantus.RelativeOutputStability(nr_samples=s, **q)(**quantus_args)),
        ("RelativeRepresentationStability",
         lambda: metrics.relative_representation_stability(
             model, variables, x, maps, targets, layer="conv2", samples=s, **common),
         lambda: quantus.RelativeRepresentationStability(nr_samples=s, layer_names=["conv2"], **q)(**quantus_args)),
        ("Continuity", lambda: metrics.continuity(model, variables, x, None, targets, steps=steps, **common),
         lambda: quantus.Continuity(nr_steps=steps, **q)(**no_maps)),
        ("Consistency", lambda: metrics.consistency(model, variables, x, maps),
         lambda: quantus.Consistency(**q)(**quantus_args)),
        ("sensitivity_max (captum)",
         lambda: metrics.sensitivity_max(model, variables, x, maps, targets, samples=s, **common), captum_run),
        ("MPRT", lambda: metrics.mprt(model, variables, x, maps, targets, method="saliency"),
         lambda: quantus.MPRT(**q)(**quantus_args)),
        ("SmoothMPRT", lambda: metrics.smooth_mprt(model, variables, x, maps, targets, samples=smooth, **common),
         lambda: quantus.SmoothMPRT(nr_samples=smooth, **q)(**quantus_args)),
        ("EfficientMPRT", lambda: metrics.efficient_mprt(model, variables, x, maps, targets, method="saliency"),
         lambda: quantus.EfficientMPRT(**q)(**quantus_args)),
        ("RandomLogit", lambda: metrics.random_logit(model, variables, x, maps, targets, method="saliency"),
         lambda: quantus.RandomLogit(num_classes=10, **q)(**quantus_args)),
    ]  # fmt: skip
    # sMPRT calls quantus.explain (captum's methods by name), not explain_func: route it to the same saliency
    setattr(quantus, "explain", lambda model, inputs, targets, **kw: torch_saliency(model, inputs, targets))  # noqa: B010

    def ours_ms(fn) -> float:
        jax.block_until_ready(fn().per_image)  # compile
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn().per_image)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times) / args.images

    def theirs_ms(fn) -> float:
        start = time.perf_counter()
        fn()
        return 1000 * (time.perf_counter() - start) / args.images

    theirs_ms(rows[0][2])  # torch's first call
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}; "
          f"{args.images} images {args.size}x{args.size}x3, {s} draws, Continuity {steps} steps, sMPRT {smooth} "
          f"samples; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, "
          f"quantus {quantus.__version__}")  # fmt: skip
    print(f"{'metric':34s} {'ours ms/img':>12s} {'theirs ms/img':>14s} {'speed-up':>9s}")
    for name, ours, theirs in rows:
        a, t = ours_ms(ours), theirs_ms(theirs)
        print(f"{name:34s} {a:12.2f} {t:14.2f} {t / a:8.1f}x", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

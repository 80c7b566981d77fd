"""What an explanation penalty costs: one optax training step with it against a plain step.

    python benchmarks/training_step.py [--batch 32] [--classes 10] [--repeats 20]

The model is the toy CNN of scripts/train_right_reasons.py (`gradcam_jax.toys.classifier.ToyCNN`, 32x32 RGB
scenes) with a `--classes`-way head, so that K classes can be explained per image. Steps compared,
each jitted and timed after a warm-up call (median of `--repeats`):

- plain: cross-entropy;
- Grad-CAM penalty with K = 1, 2, 4, ... classes explained per image (`outside_share` of (B, K) maps);
- the input-gradient penalty of Ross et al. (`input_gradient_penalty`).

All steps run in one process, one after another, so their ratios share the machine's load.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradcam_jax import grad_cam
from gradcam_jax.toys import classifier as toy
from gradcam_jax.training import input_gradient_penalty, outside_share


def gradcam_penalty_loss(model, params, batch, classes: int):
    """Cross-entropy + mean outside share of the Grad-CAM maps of `classes` classes per image
    (the true class and the next ones, modulo the head's width)."""
    targets = (batch.labels[:, None] + jnp.arange(classes)) % model.num_classes  # (B, K)
    cams = grad_cam(model, {"params": params}, batch.images, targets, layer=toy.LAYER, score="logit").map
    return toy.cross_entropy(model, params, batch) + outside_share(cams, batch.masks).mean()


def ross_loss(model, params, batch):
    """Cross-entropy + Ross et al.'s input-gradient penalty off the object."""
    penalty = input_gradient_penalty(model, {"params": params}, batch.images, ~batch.masks)
    return toy.cross_entropy(model, params, batch) + penalty.mean()


def step_seconds(model, params, batch, loss, repeats: int) -> float:
    """Median wall time of one jitted Adam step minimising `loss(model, params, batch)`."""
    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(lambda p: loss(model, p, batch))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = (params, optimizer.init(params))
    jax.block_until_ready(step(*state))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*state))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10, help="width of the head")
    parser.add_argument("--explained", type=int, nargs="+", default=[1, 2, 4, 8], help="K values")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    model = toy.ToyCNN(num_classes=args.classes)
    batch = toy.make_shortcut_batch(jax.random.key(0), args.batch, informative=True)
    params = model.init(jax.random.key(1), batch.images)["params"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, load {load}; jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    print(f"ToyCNN, {args.classes} classes, batch {args.batch} of 32x32x3; median of {args.repeats} steps")

    plain = step_seconds(model, params, batch, toy.cross_entropy, args.repeats)
    print(f"{'plain step':34s} {plain * 1e3:8.1f} ms   1.00x")
    for k in args.explained:
        seconds = step_seconds(model, params, batch, functools.partial(gradcam_penalty_loss, classes=k), args.repeats)
        print(f"{f'Grad-CAM penalty, K = {k}':34s} {seconds * 1e3:8.1f} ms   {seconds / plain:.2f}x")
    seconds = step_seconds(model, params, batch, ross_loss, args.repeats)
    print(f"{'input-gradient penalty (Ross)':34s} {seconds * 1e3:8.1f} ms   {seconds / plain:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

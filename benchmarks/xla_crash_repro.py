"""Issue #30 in plain JAX (no Flax, no gradcam_jax): the XLA CPU program that killed Smooth Grad-CAM++
on a volume, reduced to one line, and the flat form the library now compiles instead. Each variant
runs in a subprocess of its own, so a crash of XLA's runtime is reported instead of killing this
script.

The crash: jaxlib 0.10's CPU backend compiles `(g**3).sum(0)` of a rank-7 float32 array, e.g. the
noisy gradients (samples, B, K, d, h, w, C) = (4, 2, 1, 6, 10, 10, 10) of a volume, into a YNNPACK
fusion (`__ynn_fusion`: reduce of multiply(multiply(g, g), g)) whose transpose faults: a general
protection fault at an aligned 16-byte load (`vmovdqa`) of a buffer's dimensions in
`slinky::fuse_contiguous_dims` (called from `ynn::make_transpose_impl`), SIGSEGV. On this 2-core
Xeon with AVX-512 it runs natively; under `valgrind --tool=none`, whose virtual CPU has no AVX-512,
it crashes every time, as does the library's Smooth Grad-CAM++ of the issue before the workaround
(the reporter's CPU presumably takes the same path natively). jaxlib 0.4.36 has no YNNPACK fusions
and runs every variant under valgrind. The same reduce of a flat (samples, N) array, of g^2, or of
a rank-6 array runs.

Variants:
  minimal        (g**3).sum(0), g = ones((4, 2, 1, 6, 10, 10, 10)): crashes under valgrind
  flat           the same g as (4, 12000): the library's workaround
  square         (g**2).sum(0) of the rank-7 g
  rank6          (g**3).sum(0), g = ones((4, 2, 6, 10, 10, 10))
  issue          Smooth Grad-CAM++ of the issue's model written out (3-D convs, gradients at the
                 strided conv's output for 4 noisy copies under `lax.map(batch_size=4)`, the means
                 of g, g^2, g^3 of the stacked (4, 2, 1, 6, 10, 10, 10) draws): crashes under valgrind
  issue_flat     the same with the draws flat while their powers are averaged (the library now)

    python benchmarks/xla_crash_repro.py              # every variant: "ok ..." or "CRASHED (SIGSEGV)"
    python benchmarks/xla_crash_repro.py --valgrind   # each under valgrind --tool=none (minutes each)
    python benchmarks/xla_crash_repro.py --variant minimal

Exit status 1 when a variant crashed or failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys

VARIANTS = ("minimal", "flat", "square", "rank6", "issue", "issue_flat")
RANK7 = (4, 2, 1, 6, 10, 10, 10)  # (samples, B, K, d, h, w, C): 4 draws of 2 volumes' gradients


def smooth_grad_cam_plus_plus(flat: bool):
    """Smooth Grad-CAM++ of the issue's model in plain JAX: conv 3x3x3 (6, padding 1) -> ReLU ->
    conv 3x3x3 (10, stride 2, padding 1) -> ReLU -> mean -> dense 3, random weights, on
    (2, 12, 20, 20, 1) volumes; as `gradcam_jax.smooth_grad_cam_plus_plus` compiled it, or with the
    draws flat (`flat`). Returns the (2, 1, 6, 10, 10) raw maps and whether the input was finite."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.rand(2, 12, 20, 20, 1), jnp.float32)
    w1, w2 = (jnp.asarray(rng.randn(3, 3, 3, i, o) * 0.3, jnp.float32) for i, o in ((1, 6), (6, 10)))
    head = jnp.asarray(rng.randn(10, 3), jnp.float32)
    classes = jnp.array([0, 2])

    def conv(h, w, stride):  # NDHWC volumes, DHWIO kernels, padding 1 on every side
        return jax.lax.conv_general_dilated(h, w, (stride,) * 3, [(1, 1)] * 3, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))  # fmt: skip

    def layer(images):  # (B, 6, 10, 10, 10): the strided conv's output
        return conv(jax.nn.relu(conv(images, w1, 1)), w2, 2)

    def gradient(images):  # (B, 1, 6, 10, 10, 10): d logit[b, class_b] / d layer[b], as gradients.layer_gradients
        def scores(delta):
            logits = jax.nn.relu(layer(images) + delta).mean(axis=(1, 2, 3)) @ head
            return logits[jnp.arange(len(images)), classes][:, None]

        s, vjp = jax.vjp(scores, jnp.zeros(layer(images).shape))
        (g,) = jax.vmap(vjp, out_axes=1)(jnp.broadcast_to(jnp.eye(1)[:, None], (1, *s.shape)))
        return g

    @jax.jit
    def explain(images, key):
        def noisy(i):
            return images + 0.3 * jax.random.normal(jax.random.fold_in(key, i), images.shape)

        if flat:
            drawn = jax.lax.map(lambda i: gradient(noisy(i)).reshape(-1), jnp.arange(4), batch_size=4)
            g, g2, g3 = (p.mean(axis=0).reshape(RANK7[1:]) for p in (drawn, drawn**2, drawn**3))
        else:

            def powers(i):
                g = gradient(noisy(i))
                return g, g**2, g**3

            g, g2, g3 = (p.mean(axis=0) for p in jax.lax.map(powers, jnp.arange(4), batch_size=4))
        a = layer(images)[:, None]
        axes = (2, 3, 4)
        alpha = g2 / (2 * g2 + (g3 * a).sum(axis=axes, keepdims=True) + 1e-8)
        weights = (alpha * jax.nn.relu(g)).sum(axis=axes)  # (B, 1, C)
        return jnp.einsum("bkdhwc,bkc->bkdhw", a, weights), jnp.isfinite(images).all()

    return explain(x, jax.random.key(0))


def program(variant: str) -> str:
    """Run `variant` in this process; a one-line summary of its result."""
    import jax
    import jax.numpy as jnp

    if variant.startswith("issue"):
        out, finite = smooth_grad_cam_plus_plus(flat=variant == "issue_flat")
        return f"finite input {bool(finite)}, map max {float(jnp.abs(out).max()):.6g}, jax {jax.__version__}"
    shape = {"flat": (4, 12000), "rank6": (4, 2, 6, 10, 10, 10)}.get(variant, RANK7)
    power = 2 if variant == "square" else 3
    out = jax.jit(lambda g: (g**power).sum(0))(jnp.ones(shape, jnp.float32)).block_until_ready()
    return f"sum {float(out.sum()):g} (expected {4 * out.size}), jax {jax.__version__}"


def run_all(variants, valgrind: bool) -> int:
    """Each variant in a subprocess (under valgrind --tool=none if asked); 1 if any crashed or failed."""
    prefix = []
    if valgrind:
        if shutil.which("valgrind") is None:
            sys.exit("valgrind is not installed")
        prefix = ["valgrind", "--tool=none", "--log-file=/dev/null"]
    failed = 0
    for variant in variants:
        command = [*prefix, sys.executable, "-X", "faulthandler", os.path.abspath(__file__), "--variant", variant]
        done = subprocess.run(command, capture_output=True, text=True, timeout=3000)
        if done.returncode == 0:
            print(f"{variant:11s} ok: {done.stdout.strip()}", flush=True)
            continue
        failed = 1
        code = done.returncode  # -N: killed by signal N (valgrind passes its guest's signal on)
        what = f"CRASHED ({signal.Signals(-code).name})" if code < 0 else f"FAILED (exit {code})"
        print(f"{variant:11s} {what}\n{done.stderr[-1500:]}", flush=True)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help="run this variant here (default: each in a subprocess)")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=VARIANTS, help="the variants to run")
    parser.add_argument("--valgrind", action="store_true", help="run each under valgrind --tool=none (no AVX-512)")
    args = parser.parse_args(argv)
    if args.variant:
        print(program(args.variant))
        return 0
    return run_all(args.only, args.valgrind)


if __name__ == "__main__":
    sys.exit(main())

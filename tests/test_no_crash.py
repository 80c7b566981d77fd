"""Every method runs to the end on signals, images and volumes of odd sizes (issue #30: Smooth
Grad-CAM++ on a 12 x 20 x 20 volume killed the Python process inside XLA's CPU runtime, a YNNPACK
fusion of the mean of g^3 over a rank-7 stack of draws; `benchmarks/xla_crash_repro.py`).

A crash takes the process with it, so each rank runs in a subprocess that loops over the methods,
prints a line per method and exits non-zero where a map is not finite or not in [0, 1]; the test
reads its exit status. The sizes are not multiples of the model's stride 2 (signal 27, image
13 x 17, the issue's 12 x 20 x 20 volume), the options those of `test_dimensions.method_options`
(few samples, small patches). The crash showed on CPUs without AVX-512 (and under valgrind), so on
this machine these tests may pass without the workaround: Smooth Grad-CAM++'s flat averaging is
checked against the formula as it was, draw by draw with `jax.grad`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src import maps
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from tests.conftest import ROOT, YNN_OFF
from tests.test_dimensions import LETTERS, TinyND, method_options

# the attention methods read a transformer's attention; image_lime takes RGB photos only
NAMES = sorted(set(gj.METHODS) - set(ATTENTION_METHODS) - {"image_lime"})
SHAPES = {"signal": (2, 27, 2), "image": (2, 13, 17, 2), "volume": (2, 12, 20, 20, 1)}
# a volume in patches of 2 voxels is 600 features: patches and occlusion windows of 5 voxels (the
# last ones cut short) keep it quick
VOLUME_WINDOWS = {"patch": 5, "stride": 5}


def options_for(rank: str) -> dict[str, dict]:
    """Each method's cheap options (`test_dimensions.method_options`), larger patches for volumes."""
    channels = SHAPES[rank][-1]
    options = {name: method_options(name, channels) for name in NAMES}
    if rank == "volume":
        for name, opts in options.items():
            keys = ("patch", "stride") if name == "occlusion" else ("patch",) if "patch" in opts else ()
            opts.update({k: VOLUME_WINDOWS[k] for k in keys})
    return options


EVERY_METHOD = """
import json, sys
import flax.linen as nn
import jax
import numpy as np
import gradcam_jax as gj


class Relu(nn.Module):  # a ReLU layer of its own, to tap after the activation
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class Net(nn.Module):  # the issue's model, any rank: conv 6, conv 10 stride 2, mean, dense 3
    spatial: int

    @nn.compact
    def __call__(self, x):
        kernel, pad = (3,) * self.spatial, [(1, 1)] * self.spatial
        x = nn.relu(nn.Conv(6, kernel, padding=pad, name="conv1")(x))
        x = Relu(name="relu2")(nn.Conv(10, kernel, (2,) * self.spatial, padding=pad, name="conv2")(x))
        return nn.Dense(3, name="head")(x.mean(axis=tuple(range(1, 1 + self.spatial))))


shape, options = json.loads(sys.argv[1]), json.loads(sys.argv[2])
x = np.random.RandomState(0).rand(*shape).astype(np.float32)
model = Net(len(shape) - 2)
variables = model.init(jax.random.PRNGKey(0), x)
bad = []
for name, opts in options.items():
    m = np.asarray(gj.METHODS[name](model, variables, x, np.array([0, 2]), **opts).map)
    ok = m.shape == x.shape[:-1] and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    print(name, m.shape, float(np.nanmin(m)), float(np.nanmax(m)), "ok" if ok else "BAD", flush=True)
    bad += [] if ok else [name]
sys.exit(f"not finite in [0, 1] of shape {shape[:-1]}: {bad}" if bad else 0)
"""

ISSUE = """
import numpy as np, jax, flax.linen as nn, gradcam_jax as gj
P3 = ((1, 1), (1, 1), (1, 1))
class Vol(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3, 3), padding=P3, name="c1")(x))
        x = nn.relu(nn.Conv(10, (3, 3, 3), strides=2, padding=P3, name="c2")(x))
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2, 3)))
x = np.random.RandomState(0).rand(2, 12, 20, 20, 1).astype(np.float32)
m = Vol(); v = m.init(jax.random.PRNGKey(0), x)
r = np.asarray(gj.smooth_grad_cam_plus_plus(m, v, x, np.array([0, 2]), layer="c2").map)
assert r.shape == (2, 12, 20, 20), r.shape
assert np.isfinite(r).all() and r.min() >= 0 and r.max() <= 1, (r.min(), r.max())
print("ok", r.shape, r.min(), r.max())
"""


def run(*args: str) -> subprocess.CompletedProcess:
    """`python -X faulthandler -c ...args` from the repository root, with this process's
    gradcam_jax and environment (its JAX_COMPILATION_CACHE_DIR included: the run's shared cache);
    a segfault shows as a negative returncode and faulthandler's trace on stderr."""
    package = str(Path(gj.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": path,
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "").replace(YNN_OFF, "").strip(),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("rank", list(SHAPES))
def test_every_method_runs_on_odd_sizes(rank):
    done = run(EVERY_METHOD, json.dumps(SHAPES[rank]), json.dumps(options_for(rank)))
    assert done.returncode == 0, f"{rank}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert [line.split()[0] for line in done.stdout.splitlines()] == NAMES, done.stdout


def test_the_issues_volume():
    done = run(ISSUE)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.startswith("ok (2, 12, 20, 20)"), done.stdout


def smooth_grad_cam_plus_plus_by_hand(variables, x, classes, samples: int, stdev: float, key) -> np.ndarray:
    """Smooth Grad-CAM++ at TinyND's relu2 as the method computed it before issue #30: the forward
    pass by lax convolutions, each noisy draw's gradient of the class logit by `jax.grad`, the means
    of g, g^2 and g^3 over the draws (summed draw by draw here: no stack of draws), torchcam's
    weights, the map finished by `maps.finish`. (B, *spatial)."""
    p = variables["params"]
    spatial = x.ndim - 2
    numbers = (f"N{LETTERS[spatial]}C", f"{LETTERS[spatial]}IO", f"N{LETTERS[spatial]}C")
    axes = tuple(range(1, 1 + spatial))

    def conv(h, layer, stride):
        out = jax.lax.conv_general_dilated(h, p[layer]["kernel"], (stride,) * spatial, [(1, 1)] * spatial,
                                           dimension_numbers=numbers)  # fmt: skip
        return out + p[layer]["bias"]

    def relu2(images):
        return jax.nn.relu(conv(jax.nn.relu(conv(images, "conv1", 1)), "conv2", 2))

    def logit_sum(a):  # images do not interact: one backward pass gives every image's gradient
        logits = a.mean(axis=axes) @ p["head"]["kernel"] + p["head"]["bias"]
        return logits[np.arange(len(classes)), classes].sum()

    sums = [0.0, 0.0, 0.0]
    for i in range(samples):
        noisy = x + stdev * jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        g = jax.grad(logit_sum)(relu2(noisy))
        sums = [s + g**n for s, n in zip(sums, (1, 2, 3))]
    g, g2, g3 = (s / samples for s in sums)
    a = relu2(x)
    alpha = g2 / (2 * g2 + (g3 * a).sum(axis=axes, keepdims=True) + 1e-8)
    weights = (alpha * jax.nn.relu(g)).sum(axis=axes)  # (B, C)
    raw = jnp.einsum("b...c,bc->b...", a, weights)
    return np.asarray(maps.finish(raw, x.shape[1:-1], relu=True))


@pytest.mark.parametrize("rank", ["image", "volume"])  # the stack of draws of rank 6 and 7
def test_smooth_grad_cam_plus_plus_equals_the_formula_draw_by_draw(rank):
    x = jax.random.uniform(jax.random.key(1), SHAPES[rank])
    model = TinyND(x.ndim - 2)
    variables = model.init(jax.random.key(2), x)
    classes = np.array([0, 2], np.int32)
    options = dict(layer="relu2", samples=5, noise=0.3, key=7, batch_size=4)  # 2 draws per pass: a remainder
    got = gj.smooth_grad_cam_plus_plus(model, variables, x, classes, **options)
    expected = smooth_grad_cam_plus_plus_by_hand(variables, x, classes, 5, 0.3, jax.random.key(7))
    assert np.ptp(expected) > 0.5  # a map, not a constant
    np.testing.assert_allclose(np.asarray(got.map), expected, atol=1e-5)

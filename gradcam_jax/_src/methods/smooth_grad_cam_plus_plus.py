"""Smooth Grad-CAM++ (Omeiza et al. 2019), as torchcam's `SmoothGradCAMpp`: Grad-CAM++ whose
second and third gradient powers are averaged over noisy copies of the image:

    D2 = 1/n sum_i g_i^2,  D3 = 1/n sum_i g_i^3,  a = D2 / (2 D2 + sum_ij (D3 A)_ij + 1e-8),
    w_c = sum_ij a_ijc relu(g_ijc),  map = normalise( relu( sum_c w_c A_c ) )

with g_i = dS/dA at the image plus noise e_i ~ N(0, noise^2), n = `samples` (torchcam's
`num_samples`, 4), `noise` the standard deviation, torchcam's `std` (0.3), in the units the model
takes (torchcam's models take normalised input; for GoogLeNet's 0..255 pixels a comparable noise
is about 17), A the image's activations, logit scores. torchcam's own formula, which sums D3 A over positions (the
paper's Grad-CAM++ multiplies by the sum of A). Where torchcam takes g and A of its last noisy draw
for the weights and the map, this uses the mean gradient and the image's activations (the paper's
choice; with torchcam's small default noise the two agree, see docs/methods.md). The draws come
from `key` (a `jax.random` key or an int seed); samples are vmapped so one forward/backward pass
holds at most `batch_size` whole images (the rule in `methods.common`).

Differentiable with respect to `variables` and `images`, under `jit`: the noise is fixed by `key`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.gradients import layer_gradients
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import layer_outputs, passes_per_step, random_key, weighted_sum

EPS = 1e-8  # torchcam's


@register("smooth_grad_cam_plus_plus", score="logit")
def smooth_grad_cam_plus_plus(
    model,
    variables,
    images,
    targets=None,
    *,
    layer: str | None = None,
    samples: int = 4,
    noise: float = 0.3,
    key=None,
    relu: bool = True,
    reshape: Callable | None = None,
    batch_size: int = 8,
) -> Explanation:
    """Smooth Grad-CAM++ maps of `targets` (B,) or (B, K) (None: top-1) at `layer`; see the module
    doc. images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32 in
    [0, 1], the image's activations ``(B, *s, C)`` and the mean gradient ``(B, [K,] *s, C)``."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    activations, explained, target, *_ = layer_outputs(model, variables, images, targets, layer, reshape)
    images = maps.float32_or_wider(images)
    key = random_key(key)

    def gradient_at(i):  # g at noisy draw i, (B, K, *s, C) flattened
        noisy = images + noise * jax.random.normal(jax.random.fold_in(key, i), images.shape, images.dtype)
        g = layer_gradients(model, variables, noisy, target, layer=layer, reshape=reshape).gradients
        return maps.float32_or_wider(g).reshape(-1)

    # The draws stay flat, (samples, B K prod(s) C), while their powers are averaged: jaxlib 0.10's CPU
    # backend compiles the mean of g^3 over the draws of a volume's (samples, B, K, d, h, w, C)
    # gradients into a YNNPACK fusion that kills the process (issue #30,
    # benchmarks/xla_crash_repro.py); the flat mean is the same numbers.
    drawn = jax.lax.map(gradient_at, jnp.arange(samples), batch_size=passes_per_step(batch_size, len(images)))
    shape = (len(images), explained.shape[1], *activations.shape[1:])  # (B, K, *s, C)
    g, g2, g3 = (p.mean(axis=0).reshape(shape) for p in (drawn, drawn**2, drawn**3))
    spatial = tuple(range(2, g.ndim - 1))
    a = maps.float32_or_wider(activations)[:, None]  # (B, 1, *s, C)
    alpha = g2 / (2 * g2 + (g3 * a).sum(axis=spatial, keepdims=True) + EPS)
    weights = (alpha * jax.nn.relu(g)).sum(axis=spatial)  # (B, K, C)
    raw = weighted_sum(activations, weights)
    return Explanation(maps.finish(raw, images.shape[1:-1], relu), explained, target, activations, g)

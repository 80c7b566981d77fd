"""What several explanation methods (and `gradcam_jax._src.metrics`) share, written once: baseline pixels,
gradients at the input, channel reductions, class-weighted sums of activations, and scores of many
perturbed copies of a batch, computed in memory-sized chunks.

The memory rule, for every method (and metric) that multiplies the batch: `batch_size` counts the
whole images in one forward pass. A batch of B images runs `passes_per_step(batch_size, B)`
perturbations (mask positions, channels, path points, noise samples, steps) per pass, i.e.
B x chunk <= batch_size images; a batch larger than `batch_size` is walked in slices of
`batch_size` images (`in_slices`), one perturbation per pass. So peak memory follows
`batch_size`, not B: Integrated Gradients on 64 images needs no more than on 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps, tokens
from gradcam_jax._src.gradients import column_cotangents, resolved_scores

# The ILSVRC-2012 mean pixel in RGB order: the pixel the BVLC GoogLeNet sees as zero (MATLAB's
# `occlusionSensitivity` MaskValue "auto"; RISE's zero baseline; Score-CAM's zero input). GoogLeNet
# declares it as its `mean_pixel`, so `baseline="mean"` is this pixel for GoogLeNet.
MEAN_PIXEL = (122.6789, 116.6687, 104.0069)  # Caffe's ilsvrc_2012_mean, RGB 0..255
FILLS = ("mean", "black")  # the named baselines
REDUCTIONS = ("abs_max", "abs_sum", "sum")


def declared_mean(model, channels: int) -> tuple[float, ...] | None:
    """The model's own mean pixel (its `mean_pixel` attribute, in the units it takes: GoogLeNet's is
    MEAN_PIXEL), if it declares one with `channels` values; else None. The model may be wrapped
    (`taps.Layout`), a function or a graph definition: anything without the attribute declares none."""
    declared = getattr(taps.unwrap(model), "mean_pixel", None)
    if declared is None or np.size(declared) != channels:
        return None  # none declared, or for another channel count: the per-image mean instead
    return tuple(float(v) for v in np.ravel(declared))


def baseline_pixels(value, images: jax.Array, model=None) -> jax.Array:
    """What replaces pixels, from a `baseline` option `value`, as a `(B, 1, ..., 1, C)` float array
    (one pixel per image, broadcastable to `images` `(B, *spatial, C)`):

    - "mean": the model's declared mean pixel (`declared_mean`: GoogLeNet's Caffe RGB mean on 0..255),
      else each image's own per-channel mean, which fits any input scale and channel count;
    - "black": 0; a number, or a per-channel tuple, in the units the model takes.

    Every method and metric that replaces pixels takes its `baseline` this way. A per-image baseline
    belongs to its image, so a method walking the batch in slices gets the same pixels."""
    b, *grid, c = images.shape
    shape = (b, *(1,) * len(grid), c)
    if isinstance(value, str):
        if value == "mean":
            declared = declared_mean(model, c)
            if declared is None:
                axes = tuple(range(1, images.ndim - 1))
                return jnp.mean(maps.float32_or_wider(images), axis=axes, keepdims=True)
            value = declared
        elif value == "black":
            value = 0.0
        else:
            raise ValueError(f"unknown baseline {value!r}; choose from {', '.join(FILLS)}, a number or a tuple")
    pixel = jnp.asarray(value, jnp.float32)
    if pixel.ndim > 1 or pixel.size not in (1, c):
        raise ValueError(f"baseline must be a number or {c} per-channel values; got shape {tuple(pixel.shape)}")
    return jnp.broadcast_to(pixel.reshape(-1), shape)


def random_key(key) -> jax.Array:
    """A typed `jax.random` key from a sampled method's `key` option: None (seed 0), an int seed, a
    typed key (`jax.random.key`) or raw uint32 key data (`jax.random.PRNGKey`)."""
    if key is None:
        return jax.random.key(0)
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    if key.ndim != 0 or not jnp.issubdtype(key.dtype, jnp.integer):
        raise ValueError(f"key must be a jax.random key or an int seed; got {key.dtype} {tuple(key.shape)}")
    return jax.random.key(key)


def target_scores(model, variables, images, target) -> tuple[jax.Array, Callable]:
    """((B, K) float32 scores of `target` for `(B, *spatial, C)` `images`, the target with top-1
    classes resolved): one forward pass."""
    return resolved_scores(target, taps.call_model(model, variables, images), images.shape[0])


def passes_per_step(batch_size: int, images: int) -> int:
    """Perturbations of a batch of `images` that one forward pass of at most `batch_size` whole
    images holds (at least 1): the chunk `lax.map` vmaps (see the module doc)."""
    return max(1, batch_size // images)


def in_slices(fn: Callable, size: int, *batched):
    """`fn(*batched)` for arrays (or None) sharing a leading batch axis B, run on slices of at most
    `size` rows (`lax.map` over whole slices, one more call for the remainder) when B > size, and
    the outputs (a pytree with leading axis B) put back together. Rows never interact, so the
    result equals one call's; only the peak memory is that of `size` rows."""
    n = jax.tree.leaves(batched)[0].shape[0]
    if n <= size:
        return fn(*batched)
    whole = n // size * size
    slices = jax.tree.map(lambda a: a[:whole].reshape(n // size, size, *a.shape[1:]), batched)
    head = jax.tree.map(lambda a: a.reshape(whole, *a.shape[2:]), jax.lax.map(lambda xs: fn(*xs), slices))
    if whole == n:
        return head
    tail = fn(*jax.tree.map(lambda a: a[whole:], batched))
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), head, tail)


def perturbed_scores(model, variables, perturb: Callable, xs, target, batch_size: int) -> jax.Array:
    """(P, B, K) scores of `target` (resolved) for `perturb(x)` (a `(B, *spatial, C)` batch) for each of
    the P leading entries of `xs`. Perturbations are vmapped so one forward pass holds at most
    `batch_size` whole images (`passes_per_step`), and `lax.map` walks the chunks, so memory stays
    bounded whatever P is and no Python loop runs."""
    images = jax.eval_shape(perturb, xs[0]).shape[0]
    return jax.lax.map(
        lambda x: target_scores(model, variables, perturb(x), target)[0],
        xs,
        batch_size=passes_per_step(batch_size, images),
    )


class LayerOutputs(NamedTuple):
    activations: jax.Array  # (B, *s, C): the layer's output, laid out by `reshape` (ViT tokens: their grid)
    scores: jax.Array  # (B, K) float32: the target's scores of the images
    target: Callable  # the target, top-1 classes resolved
    path: str  # the layer's Flax path, for `taps.forward_with_layer`
    raw: jax.Array  # the layer's own output (before `reshape`), as `taps` feeds it back


def layer_outputs(model, variables, images, target, layer: str | None, reshape: Callable | None = None) -> LayerOutputs:
    """One forward pass: the activations at `layer` and the scores of `target`, for the methods that
    weigh activations without the layer's gradient (Eigen-CAM, Score-CAM and their kin). A token
    layer (B, N, C) of images is laid out on its patch grid unless `reshape` is given
    (`tokens.grid_hook`, the rule `gradients.layer_gradients` follows too)."""
    path, _ = taps.resolve_map_layer(model, variables, images, layer, reshape)
    outputs, raw = taps.forward_with_layer(model, variables, images, path)
    scores, resolved = resolved_scores(target, outputs, images.shape[0])
    reshape = tokens.grid_hook(reshape, raw.shape, images.shape)
    return LayerOutputs(reshape(raw) if reshape is not None else raw, scores, resolved, path, raw)


class InputGradients(NamedTuple):
    gradients: jax.Array  # (B, K, *spatial, C) float32: d score[b, k] / d images[b]
    scores: jax.Array  # (B, K) float32
    target: Callable  # the target, top-1 classes resolved


def input_gradients(model, variables, images, target) -> InputGradients:
    """Gradients of each of the K columns of `target` with respect to the input pixels: one forward
    pass and one vmapped backward pass per column, as `gradients.layer_gradients` does at a layer."""

    def every_score(x):
        return target_scores(model, variables, x, target)

    scores, vjp, resolved = jax.vjp(every_score, images, has_aux=True)
    (gradients,) = jax.vmap(vjp, out_axes=1)(column_cotangents(scores))
    return InputGradients(maps.float32_or_wider(gradients), scores, resolved)


def reduce_channels(pixels: jax.Array, how: str) -> jax.Array:
    """`(..., *spatial, C)` per-channel attributions -> `(..., *spatial)`: "abs_max" (max_c |x|, Simonyan et al.
    2014), "abs_sum" (sum_c |x|) or "sum" (sum_c x, signed)."""
    if how == "abs_max":
        return jnp.abs(pixels).max(axis=-1)
    if how == "abs_sum":
        return jnp.abs(pixels).sum(axis=-1)
    if how == "sum":
        return pixels.sum(axis=-1)
    raise ValueError(f"unknown reduce {how!r}; choose from {', '.join(REDUCTIONS)}")


def weighted_sum(activations: jax.Array, weights: jax.Array) -> jax.Array:
    """`(B, K, *s)` raw maps: sum_c weights * activations. activations `(B, *s, C)`, any number of
    spatial axes; weights (B, K, C) per channel (CAM, Grad-CAM++, XGrad-CAM) or `(B, K, *s, C)` per
    position (HiResCAM). One contraction over C either way (the same einsum as written out in 2-D)."""
    activations = maps.float32_or_wider(activations)
    weights = maps.float32_or_wider(weights)
    if weights.ndim == 3:
        return jnp.einsum("b...c,bkc->bk...", activations, weights)
    return jnp.einsum("b...c,bk...c->bk...", activations, weights)

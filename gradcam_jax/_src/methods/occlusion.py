"""Occlusion sensitivity (Zeiler & Fergus, ECCV 2014) with the semantics of MATLAB's
`occlusionSensitivity`: a mask slides over the image, and the map is the drop in the class score
when the mask hides each spot — score(image) - score(occluded image).

Options, MATLAB's (`MaskSize`, `Stride`, `MaskValue`, `MaskClipping`, `OutputUpsampling`) under the
names every method here shares (`patch` the size of a region, `baseline` what replaces pixels):
- `patch` (MaskSize) "auto" = 20% of the input size along each axis, rounded; an int (the same
  along every axis: a square, a cube for volumes, a span for signals), or one int per spatial axis
  ((height, width) for images; (depth, height, width) for volumes).
- `stride` "auto" = 10% of the input size along each axis, rounded up; an int, or one per axis.
- `baseline` (MaskValue) "mean" = the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean
  (MATLAB's "auto" for GoogLeNet), "black", a number or a per-channel tuple.
- `clipping` True (MaskClipping "on"): the first mask is centred on the top-left pixel and masks at
  the edges are clipped; False ("off"): its top-left corner is there and only whole masks are used.
- `upsampling` "bicubic" (default) or "nearest": how the grid of mask positions becomes a map at
  the input's size. Each value is placed at its mask's centre, so the map lines up with the
  image whatever the stride (a plain resize of the grid would stretch it over the whole image);
  the grid is rescaled to [0, 1] first, like every map here, and clipped after.
- `score` "softmax" (MATLAB scores the softmax layer), or "logit".

Every mask position is one forward pass of the batch; positions are vmapped so one pass holds at
most `batch_size` whole images (the rule in `methods.common`) and `lax.map` walks the chunks, so
memory stays bounded and there is no Python loop. The cost is the number of positions, which grows
as the product over the axes: with the "auto" sizes about 10 per axis, 100 forward passes for an
image, 1000 for a volume (a 64^3 volume: mask 13, stride 7, 10^3 positions) and 10 for a signal.
For volumes a larger stride (or a lower `batch_size` when memory is short: a 64^3 float32 volume is
1 MiB, its activations many times that) is the usual trade.

Differentiable with respect to `variables` and `images`, under `jit`: the masks are fixed and the
scores smooth in both (a kink where an occluded ReLU input crosses 0). The top-1 class
(`targets=None`) is picked by argmax, which has no gradient: the class is a constant of the loss.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, perturbed_scores, target_scores
from gradcam_jax._src.methods.regions import per_axis

UPSAMPLINGS = ("bicubic", "nearest")


def mask_starts(size: int, mask: int, stride: int, clipping: bool) -> np.ndarray:
    """First row (or column) covered by each mask along one axis; it may be negative when clipping."""
    if clipping:
        return np.arange(0, size, stride) - mask // 2  # centres at 0, stride, ... < size
    if mask > size:
        raise ValueError(f"mask of {mask} pixels does not fit in {size} with clipping off")
    return np.arange(0, size - mask + 1, stride)


class Grid(NamedTuple):
    starts: np.ndarray  # (P, n) int: first pixel of every mask along each of the n axes (row-major over the grid)
    mask: tuple[int, ...]  # mask size per axis: (height, width) for images
    step: tuple[int, ...]  # stride per axis: (dy, dx)
    shape: tuple[int, ...]  # grid (ny, nx)
    first: tuple[int, ...]  # first pixel of the first mask


def occlusion_grid(size: tuple[int, ...], patch, stride, clipping: bool) -> Grid:
    """Where the masks go on an input of spatial `size` ((H, W), (L,), (D, H, W)); see the module
    doc for the options."""
    mask = per_axis(patch, size, 0.2, round)
    step = per_axis(stride, size, 0.1, math.ceil)
    axes = [mask_starts(n, m, s, clipping) for n, m, s in zip(size, mask, step)]
    starts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(size))
    return Grid(starts, mask, step, tuple(len(a) for a in axes), tuple(int(a[0]) for a in axes))


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's and jax.image's "bicubic")."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def interpolation_matrix(size: int, n: int, first: int, mask: int, step: int, method: str) -> np.ndarray:
    """(size, n) float32: row p interpolates pixel p from the n mask positions along one axis.

    Each value sits at its mask's centre (first + mask / 2 + i step, in continuous coordinates
    where pixel p spans [p, p + 1)); "bicubic" interpolates between centres with Keys' kernel,
    "nearest" takes the nearest centre (ties to the earlier); beyond the outer centres the edge
    values extend. A static matrix: the upsampling is one small matmul per axis.
    """
    u = (np.arange(size) + 0.5 - first - mask / 2) / step  # position in grid units
    u = np.clip(u, 0, n - 1)
    if method == "nearest":
        return np.eye(n, dtype=np.float32)[np.ceil(u - 0.5).astype(int)]
    base = np.floor(u).astype(int)
    weights = np.zeros((size, n))
    for d in (-1, 0, 1, 2):
        index = base + d
        np.add.at(weights, (np.arange(size), np.clip(index, 0, n - 1)), cubic(u - index))
    return weights.astype(np.float32)


@register("occlusion", score="softmax")
def occlusion(
    model,
    variables,
    images,
    targets=None,
    *,
    patch="auto",
    stride="auto",
    baseline="mean",
    clipping: bool = True,
    upsampling: str = "bicubic",
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """Occlusion-sensitivity maps of `targets` (B,) or (B, K) (None: top-1); see the module doc.
    Returns an `Explanation` with map `(B, [K,] *spatial)` float32 in [0, 1] and the unoccluded scores."""
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"unknown upsampling {upsampling!r}; choose from {', '.join(UPSAMPLINGS)}")
    images = maps.float32_or_wider(images)
    size = images.shape[1:-1]
    grid = occlusion_grid(size, patch, stride, clipping)
    starts = jnp.asarray(grid.starts)
    value = baseline_pixels(baseline, images, model)
    # each axis's coordinates, shaped to broadcast against the others: (H, 1) and (1, W) for images
    coordinates = [jnp.arange(n)[tuple(slice(None) if a == i else None for a in range(len(size)))]
                   for i, n in enumerate(size)]  # fmt: skip

    def occluded(start):  # the batch with one mask applied: (B, *spatial, C)
        bounds = [bound for x, s, m in zip(coordinates, start, grid.mask) for bound in (x >= s, x < s + m)]
        inside = functools.reduce(operator.and_, bounds)
        return jnp.where(inside[None, ..., None], value, images)

    clean, target = target_scores(model, variables, images, targets)  # (B, K), top-1 resolved
    drops = clean - perturbed_scores(model, variables, occluded, starts, target, batch_size)  # (P, B, K)
    raw = jnp.moveaxis(drops, 0, -1).reshape(*clean.shape, *grid.shape)  # (B, K, *grid)
    matrices = [
        interpolation_matrix(n, g, f, m, s, upsampling)
        for n, g, f, m, s in zip(size, grid.shape, grid.first, grid.mask, grid.step)
    ]
    grid_map = maps.rescale(jax.nn.relu(raw) if relu else raw, len(size))
    upsampled = jnp.einsum(upsampling_subscripts(len(size)), matrices[0], grid_map, *matrices[1:])
    return Explanation(jnp.clip(upsampled, 0.0, 1.0), clean, target)  # clipped: cubic overshoots


def upsampling_subscripts(axes: int) -> str:
    """The einsum applying one (size, n) interpolation matrix per axis to a `(B, K, *grid)` map, the
    first axis's matrix first: "yi,bkij,xj->bkyx" for images, "yi,bki->bky" for signals."""
    grid, out = "ijl"[:axes], "yxz"[:axes]
    rest = "".join(f",{o}{g}" for o, g in zip(out[1:], grid[1:]))
    return f"{out[0]}{grid[0]},bk{grid}{rest}->bk{out}"

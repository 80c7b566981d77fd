"""Occlusion sensitivity (Zeiler & Fergus, ECCV 2014) with the semantics of MATLAB's
`occlusionSensitivity`: a mask slides over the image, and the map is the drop in the class score
when the mask hides each spot — score(image) - score(occluded image).

Options, as MATLAB names them (`MaskSize`, `Stride`, `MaskValue`, `MaskClipping`, `OutputUpsampling`):
- `mask_size` "auto" = 20% of the input size, rounded; an int, or (height, width).
- `stride` "auto" = 10% of the input size, rounded up; an int, or (dy, dx).
- `mask_value` "mean" = the mean pixel (MEAN_PIXEL, the ImageNet mean in RGB 0..255), "black",
  a number or an RGB tuple.
- `clipping` True (MaskClipping "on"): the first mask is centred on the top-left pixel and masks at
  the edges are clipped; False ("off"): its top-left corner is there and only whole masks are used.
- `upsampling` "bicubic" (default) or "nearest": how the grid of mask positions becomes a map at
  the input's size. Each value is placed at its mask's centre, so the map lines up with the
  image whatever the stride (a plain resize of the grid would stretch it over the whole image);
  the grid is rescaled to [0, 1] first, like every map here, and clipped after.
- `score` "softmax" (MATLAB scores the softmax layer), or "logit".

Every mask position is one forward pass of the batch; positions are vmapped so one pass holds at
most `batch_size` whole images (the rule in `methods.common`) and `lax.map` walks the chunks, so
memory stays bounded and there is no Python loop.

Differentiable with respect to `variables` and `images`, under `jit`: the masks are fixed and the
scores smooth in both (a kink where an occluded ReLU input crosses 0). The top-1 class
(`targets=None`) is picked by argmax, which has no gradient: the class is a constant of the loss.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax import maps
from gradcam_jax.methods.base import Explanation, register
from gradcam_jax.methods.common import fill_value, perturbed_scores, target_scores

UPSAMPLINGS = ("bicubic", "nearest")


def pair(value, size: tuple[int, int], auto_fraction: float, rounding) -> tuple[int, int]:
    """An (y, x) pair of positive ints from "auto" (a fraction of `size`), an int or a pair."""
    if value == "auto":
        return max(1, int(rounding(auto_fraction * size[0]))), max(1, int(rounding(auto_fraction * size[1])))
    value = (value, value) if isinstance(value, int) else tuple(value)
    if len(value) != 2 or any(not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"expected a positive int or a pair of them; got {value!r}")
    return value


def mask_starts(size: int, mask: int, stride: int, clipping: bool) -> np.ndarray:
    """First row (or column) covered by each mask along one axis; it may be negative when clipping."""
    if clipping:
        return np.arange(0, size, stride) - mask // 2  # centres at 0, stride, ... < size
    if mask > size:
        raise ValueError(f"mask of {mask} pixels does not fit in {size} with clipping off")
    return np.arange(0, size - mask + 1, stride)


class Grid(NamedTuple):
    starts: np.ndarray  # (P, 2) int: top-left pixel of every mask (row-major over the grid)
    mask: tuple[int, int]  # mask (height, width)
    step: tuple[int, int]  # stride (dy, dx)
    shape: tuple[int, int]  # grid (ny, nx)
    first: tuple[int, int]  # top-left pixel of the first mask


def occlusion_grid(size: tuple[int, int], mask_size, stride, clipping: bool) -> Grid:
    """Where the masks go on an image of `size` (H, W); see the module doc for the options."""
    mask = pair(mask_size, size, 0.2, round)
    step = pair(stride, size, 0.1, math.ceil)
    ys, xs = (mask_starts(n, m, s, clipping) for n, m, s in zip(size, mask, step))
    starts = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    return Grid(starts, mask, step, (len(ys), len(xs)), (int(ys[0]), int(xs[0])))


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
    mask_size="auto",
    stride="auto",
    mask_value="mean",
    clipping: bool = True,
    upsampling: str = "bicubic",
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """Occlusion-sensitivity maps of `targets` (B,) or (B, K) (None: top-1); see the module doc.
    Returns an `Explanation` with map (B, [K,] H, W) float32 in [0, 1] and the unoccluded scores."""
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"unknown upsampling {upsampling!r}; choose from {', '.join(UPSAMPLINGS)}")
    images = maps.float32_or_wider(images)
    size = (images.shape[1], images.shape[2])
    grid = occlusion_grid(size, mask_size, stride, clipping)
    (mh, mw), starts = grid.mask, jnp.asarray(grid.starts)
    value = fill_value(mask_value, images.shape[-1])
    rows, cols = jnp.arange(size[0])[:, None], jnp.arange(size[1])[None, :]

    def occluded(start):  # the batch with one mask applied: (B, H, W, C)
        inside = (rows >= start[0]) & (rows < start[0] + mh) & (cols >= start[1]) & (cols < start[1] + mw)
        return jnp.where(inside[None, :, :, None], value, images)

    clean, target = target_scores(model, variables, images, targets)  # (B, K), top-1 resolved
    drops = clean - perturbed_scores(model, variables, occluded, starts, target, batch_size)  # (P, B, K)
    raw = jnp.moveaxis(drops, 0, -1).reshape(*clean.shape, *grid.shape)  # (B, K, ny, nx)
    rows_of, cols_of = (
        interpolation_matrix(n, g, f, m, s, upsampling)
        for n, g, f, m, s in zip(size, grid.shape, grid.first, grid.mask, grid.step)
    )
    grid_map = maps.rescale(jax.nn.relu(raw) if relu else raw)
    result = jnp.clip(jnp.einsum("yi,bkij,xj->bkyx", rows_of, grid_map, cols_of), 0.0, 1.0)  # cubic overshoots
    return Explanation(result, clean, target)

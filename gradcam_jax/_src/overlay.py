"""Pictures of explanations: a map blended over its photo, and MATLAB's Grad-CAM figure; for
volumes the three planes through the map's peak (`planes`) and slices side by side (`montage`), for
signals each channel's trace over the map as a colour band (`signal`)."""

from __future__ import annotations

import math

import matplotlib
import numpy as np

from gradcam_jax._src import maps as maps_lib


def blend(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """uint8 RGB (H, W, 3): `image` (H, W, 3, uint8; other dtypes are rounded into 0..255) with
    `heatmap` (h, w, in [0, 1]) drawn over it in `cmap` at opacity `alpha` — MATLAB's
    `imshow(img); imagesc(map, 'AlphaData', alpha)`. A map of another size is resized bicubically
    to the image's (`maps.upsample_on_host`)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    heatmap = maps_lib.upsample_on_host(np.asarray(heatmap, np.float32), image.shape[:2])
    # matplotlib's own lookup (index = int(x * 256), 256 at the top end -> 255), then the blend
    # round((1 - alpha) * pixel + alpha * colour) of every (colour index, pixel value) pair as one
    # uint8 table per channel: three lookups per pixel instead of float arithmetic on the photo
    colours = matplotlib.colormaps[cmap].resampled(256)(np.arange(256))[:, :3] * 255.0  # (256, 3)
    pixels = np.float32(1.0 - alpha) * np.arange(256, dtype=np.float32)
    blends = np.clip(pixels[None, :, None] + alpha * colours[:, None, :], 0, 255).round().astype(np.uint8)
    rows = np.clip(heatmap * 256, 0, 255).astype(np.int32) * 256  # (H, W): colour index * 256
    out = np.empty(image.shape, np.uint8)
    for c in range(3):
        np.take(blends[..., c].reshape(-1), rows + image[..., c], out=out[..., c])
    return out


def draw(ax, image: np.ndarray, heatmap: np.ndarray, title: str = "", alpha: float = 0.5, cmap: str = "jet"):
    """MATLAB's figure on a matplotlib axis: the photo, the map in `cmap` at `alpha`, a title."""
    ax.imshow(blend(image, heatmap, alpha, cmap))
    ax.set_title(title)
    ax.axis("off")


def figure(image: np.ndarray, heatmaps, titles, alpha: float = 0.5, cmap: str = "jet"):
    """A matplotlib Figure with one panel per (heatmap, title), side by side, over the same photo."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(heatmaps), figsize=(4 * len(heatmaps), 4.3), squeeze=False)
    for ax, heatmap, title in zip(axes[0], heatmaps, titles):
        draw(ax, image, heatmap, title, alpha, cmap)
    fig.tight_layout()
    return fig


# -- volumes and signals -----------------------------------------------------------------------------


def window(volume: np.ndarray, levels: tuple[float, float] | None = None, percentiles=(1.0, 99.0)) -> np.ndarray:
    """uint8 grey levels of any intensity array (a CT volume in Hounsfield units, an MRI, a float
    signal): `levels` (low, high) maps low -> 0 and high -> 255 (a CT window, e.g. (-160, 240) for
    soft tissue); by default the whole array's `percentiles` (1st to 99th), so a few extreme voxels
    do not grey out the rest. Clipped outside; a constant array is all 0."""
    volume = np.asarray(volume, np.float32)
    low, high = levels if levels is not None else np.percentile(volume, percentiles)
    span = float(high) - float(low)
    scaled = (volume - low) / span if span > 0 else np.zeros_like(volume)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def grey_volume(volume: np.ndarray, heatmap: np.ndarray, levels) -> np.ndarray:
    """uint8 `(*spatial, 3)` RGB of a volume `(*spatial)` or `(*spatial, 1)` grey (windowed) or `(*spatial, 3)`
    colour, after checking that `heatmap` `(*spatial)` matches it."""
    volume = np.asarray(volume)
    heatmap = np.asarray(heatmap)
    spatial = volume.shape if volume.shape == heatmap.shape else volume.shape[:-1]
    if (
        spatial != heatmap.shape
        or volume.ndim - len(spatial) > 1
        or volume.shape[len(spatial) :] not in ((), (1,), (3,))
    ):
        raise ValueError(
            f"expected a volume (*spatial), (*spatial, 1) or (*spatial, 3) and a map (*spatial); "
            f"got {volume.shape} and {heatmap.shape}"
        )
    if volume.shape[len(spatial) :] == (3,):
        return window(volume, levels if levels is not None else (0.0, 255.0))
    return np.repeat(window(volume.reshape(spatial), levels)[..., None], 3, axis=-1)


def planes(
    volume: np.ndarray,
    heatmap: np.ndarray,
    point: tuple[int, int, int] | None = None,
    *,
    levels: tuple[float, float] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    gap: int = 2,
) -> np.ndarray:
    """uint8 RGB picture of the three orthogonal planes of `volume` (D, H, W), (D, H, W, 1) or
    (D, H, W, 3) through `point` (d, h, w) (default: the peak of `heatmap`, (D, H, W) in [0, 1]),
    each with the map drawn over it (`overlay`), side by side on black, `gap` pixels apart: the
    (H, W) plane at d, the (D, W) plane at h, the (D, H) plane at w. Grey volumes are windowed
    (`window`: `levels`, or the 1st to 99th percentile)."""
    rgb = grey_volume(volume, heatmap, levels)
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 3:
        raise ValueError(f"planes takes a volume (D, H, W); got a map of shape {heatmap.shape}")
    d, h, w = point if point is not None else np.unravel_index(np.argmax(heatmap), heatmap.shape)
    cuts = [(rgb[d], heatmap[d]), (rgb[:, h], heatmap[:, h]), (rgb[:, :, w], heatmap[:, :, w])]
    return side_by_side([blend(image, m, alpha, cmap) for image, m in cuts], gap)


def montage(
    volume: np.ndarray,
    heatmap: np.ndarray,
    axis: int = 0,
    every: int = 1,
    *,
    columns: int | None = None,
    levels: tuple[float, float] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    gap: int = 2,
) -> np.ndarray:
    """uint8 RGB grid of slices of `volume` (D, H, W) (or with a channel axis of 1 or 3) along
    `axis`, every `every`-th from the first, each with its slice of `heatmap` (D, H, W) drawn over
    it, row by row in `columns` (default: a near-square grid), `gap` pixels apart on black."""
    rgb = grey_volume(volume, heatmap, levels)
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 3 or not 0 <= axis < 3 or every < 1:
        raise ValueError(
            f"montage takes a volume (D, H, W), an axis 0..2 and every >= 1; got {heatmap.shape}, {axis}, {every}"
        )
    tiles = [
        blend(np.take(rgb, i, axis=axis), np.take(heatmap, i, axis=axis), alpha, cmap)
        for i in range(0, heatmap.shape[axis], every)
    ]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = [side_by_side(tiles[i : i + columns], gap) for i in range(0, len(tiles), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows)[: -gap or None]


def side_by_side(pictures: list[np.ndarray], gap: int) -> np.ndarray:
    """(H, W, 3) uint8 pictures left to right, top-aligned on black, `gap` pixels apart."""
    height = max(p.shape[0] for p in pictures)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0))) for p in pictures]
    return np.concatenate(padded, axis=1)[:, : -gap or None]


def signal(trace: np.ndarray, heatmap: np.ndarray, *, names=None, rate: float | None = None, cmap: str = "jet"):
    """A matplotlib Figure of a signal (L,) or (L, C): each channel's trace on its own row, with
    `heatmap` (L,) in [0, 1] as a colour band beneath it in `cmap` (jet: red is where the map is
    high). `names`: one per channel; `rate`: samples per second (the axis is in seconds then)."""
    import matplotlib.pyplot as plt

    trace = np.asarray(trace, np.float32)
    trace = trace[:, None] if trace.ndim == 1 else trace
    heatmap = np.asarray(heatmap, np.float32)
    if trace.ndim != 2 or heatmap.shape != trace.shape[:1]:
        raise ValueError(f"expected a signal (L,) or (L, C) and a map (L,); got {trace.shape} and {heatmap.shape}")
    channels = trace.shape[1]
    names = list(names) if names else [f"channel {c}" for c in range(channels)] if channels > 1 else [""]
    time = np.arange(len(trace)) / (rate or 1.0)
    extent = (float(time[0]), float(time[-1]), 0.0, 1.0)
    fig, axes = plt.subplots(
        2 * channels, 1, figsize=(8, 1.9 * channels), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [4, 1] * channels, "hspace": 0.08},
    )  # fmt: skip
    for c in range(channels):
        line, band = axes[2 * c, 0], axes[2 * c + 1, 0]
        line.plot(time, trace[:, c], color="black", linewidth=0.9)
        line.set_ylabel(names[c])
        band.imshow(heatmap[None], aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
        band.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)" if rate else "sample")
    return fig

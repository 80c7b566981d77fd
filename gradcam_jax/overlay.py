"""Pictures of explanations: a map blended over its photo, and MATLAB's Grad-CAM figure."""

from __future__ import annotations

import matplotlib
import numpy as np

from gradcam_jax import maps as maps_lib


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
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
    ax.imshow(overlay(image, heatmap, alpha, cmap))
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

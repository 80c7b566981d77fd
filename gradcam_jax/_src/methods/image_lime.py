"""LIME on superpixels with MATLAB's `imageLIME` defaults, for RGB photos (B, H, W, 3): cut each image
into about `segments` superpixels (MATLAB's NumFeatures, 49: a count of regions, where `patch` in
the patch methods is a region's size; `segmentation="superpixels"`, SLIC as MATLAB's `superpixels`,
`"grid"`, squares of a grid of about `segments` cells, or your own regions
as MATLAB's label-matrix Segmentation: an (H, W) array of non-negative integer labels, the same for
every image, concrete, as it is a static option), draw `samples`
on/off vectors (NumSamples, 2048; each superpixel on with probability 1/2), score the image with the
"off" superpixels replaced by the image's mean pixel, and fit a linear surrogate (MATLAB's
Model "linear"; weighted least squares with an intercept) of the scores on the on/off vectors, each
sample weighted by

    weight = exp(-d^2 / width^2),  d = 1 - cos(z, 1)

the cosine distance between its on/off vector z and the all-on vector of the image's superpixels,
`width` 0.25 (MATLAB's KernelWidth). A superpixel's importance is its coefficient. MATLAB explains
the softmax score of the class (the channel of the softmax layer), so the default score is
"softmax"; the map (each pixel its superpixel's coefficient, signed and rescaled; `relu=True` keeps
the positive part) is MATLAB's scoreMap with OutputUpsampling "nearest", rescaled.

The superpixels are computed on the host, inside the jitted call (`jax.pure_callback`), by
scikit-image's `slic` (`pip install gradcam-jax[lime]`; imported only there) on each image min-max
scaled to [0, 1], with MATLAB's compactness 10; SLIC may give more or fewer segments than asked, so
the fit has room for 2 x `segments` of them (any beyond are merged into the last) and ignores
the labels an image does not use. The on/off vectors come from `key` (a `jax.random` key or an int
seed): `jax.random.bernoulli(key, 0.5, (samples, P))`, one matrix for the whole batch.
`samples` forward passes of the batch, vmapped so one pass holds at most `batch_size` whole images.

Differentiable with respect to `variables` and `images` (the superpixels are held fixed), under `jit`.
"""

from __future__ import annotations

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import random_key
from gradcam_jax._src.methods.regions import patch_features, with_features
from gradcam_jax._src.methods.surrogate import check_samples, coin_flips, least_squares, surrogate_explanation

SEGMENTATIONS = ("superpixels", "grid")
COMPACTNESS = 10.0  # MATLAB `superpixels`' default Compactness for SLIC


def superpixels(images: np.ndarray, segments: int) -> np.ndarray:
    """(B, H, W) int32 SLIC labels 0..2 * segments - 1 of RGB `images` (B, H, W, 3), each min-max
    scaled to [0, 1] first: scikit-image's `slic(n_segments=segments, compactness=10)`, labels
    renumbered in order of appearance, any beyond 2 * segments - 1 merged into it. On the host."""
    from skimage.segmentation import slic  # the [lime] extra

    out = np.empty(images.shape[:-1], np.int32)
    for b, image in enumerate(np.asarray(images, np.float64)):
        low, high = image.min(), image.max()
        scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
        labels = slic(scaled, n_segments=segments, compactness=COMPACTNESS, start_label=0, channel_axis=-1)
        _, renumbered = np.unique(labels, return_inverse=True)
        out[b] = np.minimum(renumbered.reshape(labels.shape), 2 * segments - 1)
    return out


def segment(images: jax.Array, segments: int) -> jax.Array:
    """`superpixels` of the batch from inside a trace: a host callback on the (gradient-stopped) images."""
    shape = jax.ShapeDtypeStruct(images.shape[:-1], jnp.int32)
    return jax.pure_callback(
        lambda x: superpixels(x, segments), shape, jax.lax.stop_gradient(images), vmap_method="sequential"
    )


def given_labels(segmentation, shape: tuple[int, ...]) -> np.ndarray:
    """The user's (H, W) labels (as nested tuples: options are static), checked and broadcast to
    `shape` (B, H, W): int32 labels >= 0."""
    labels = np.asarray(segmentation)
    if labels.dtype.kind not in "iu" or labels.size == 0 or labels.min() < 0:
        raise ValueError(f"segmentation labels must be non-negative integers; got a {labels.dtype} array")
    if labels.shape != shape[1:]:
        raise ValueError(f"segmentation labels must be one (H, W) = {shape[1:]} array; got shape {labels.shape}")
    return np.broadcast_to(labels, shape).astype(np.int32)


@register("image_lime", score="softmax")
def image_lime(
    model,
    variables,
    images,
    targets=None,
    *,
    segments: int = 49,
    samples: int = 2048,
    segmentation: str | np.ndarray = "superpixels",
    width: float = 0.25,
    key=None,
    relu: bool = False,
    batch_size: int = 16,
) -> Explanation:
    """imageLIME maps of `targets` (B,) or (B, K) (None: top-1) over about `segments` superpixels;
    see the module doc. images: float ``(B, H, W, 3)`` RGB. Returns an `Explanation` with map
    ``(B, [K,] H, W)`` float32 in [0, 1] and the scores of the images."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"image_lime explains RGB images (B, H, W, 3); got shape {tuple(images.shape)}")
    named = segmentation if isinstance(segmentation, str) else None  # None: the user's label array
    if named is not None and named not in SEGMENTATIONS:
        raise ValueError(
            f"unknown segmentation {segmentation!r}; choose from {', '.join(SEGMENTATIONS)} or pass a label array"
        )
    if segments < 1 or width <= 0:
        raise ValueError(f"segments must be at least 1 and width positive; got {segments} and {width}")
    check_samples(samples)
    if named == "superpixels" and importlib.util.find_spec("skimage") is None:  # before the callback
        raise ImportError(
            'image_lime\'s superpixels need scikit-image: pip install "gradcam-jax[lime]" (or segmentation="grid")'
        )
    images = maps.float32_or_wider(images)
    if named is None:
        labels = given_labels(segmentation, images.shape[:-1])
        count = int(labels.max()) + 1
        labels = jnp.asarray(labels)
    elif named == "grid":  # squares of about H / sqrt(segments) pixels
        side = round(math.sqrt(segments))
        cells, grid = patch_features(images.shape[1:3], tuple(-(-n // side) for n in images.shape[1:3]))
        count = int(np.prod(grid))
        labels = jnp.broadcast_to(jnp.asarray(cells), images.shape[:-1])
    else:
        count = 2 * segments
        labels = segment(images, segments)  # (B, H, W)
    present = jax.vmap(lambda f: jnp.zeros(count, bool).at[f.reshape(-1)].set(True))(labels)  # (B, P)
    mean = images.mean(axis=(1, 2))  # (B, 3): MATLAB's fill for the features left out
    kept = coin_flips(random_key(key), samples, count)
    design = (kept[None] & present[:, None]).astype(images.dtype)  # (B, S, P): only the image's own
    cosines = jnp.sqrt(design.sum(-1) / present.sum(-1, keepdims=True))  # z.1 / (|z| |1|) = sqrt(k / M); all off: 0
    weights = jnp.exp(-((1 - cosines.T) ** 2) / width**2)  # (S, B)

    def partial_image(row):  # each image with only the row's superpixels, the rest at its mean
        return jax.vmap(lambda x, f, v: with_features(x[None], f, row, v)[0])(images, labels, mean)

    def fit(_, scores):
        return least_squares(design, scores, weights.astype(scores.dtype))

    return surrogate_explanation(model, variables, images, targets, kept, partial_image, fit, labels, relu, batch_size)

"""Models trained here for targets other than classes: a toy segmentation network and a toy embedding.

Scenes hold two shapes of `gradcam_jax.toys.classifier` at once, a square and a cross, apart, on noise, with
per-pixel labels (0 background, 1 square, 2 cross). `ToySegNet` is a few 3x3 convolutions giving
per-pixel logits (B, S, S, 3), trained with optax Adam on per-pixel cross-entropy. Seg-Grad-CAM
(`targets.segmentation`) of a class over a region should then point at the shape in that region;
`evaluate_segmentation` plays the pointing game on held-out scenes, against random maps.

`toy_embedding` turns the toy classifier into an embedding model (a plain function returning a
dict, as research code often does): its pooled last-block features are the embedding.

    model, variables, losses = train_segmentation(seed=0)
    report = evaluate_segmentation(model, variables)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gradcam_jax._src import maps as maps_lib
from gradcam_jax._src import targets
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.methods import grad_cam
from gradcam_jax.toys import classifier as toy

CLASSES = ("background", "square", "cross")
SEG_LAYER = "block4"


class Scenes(NamedTuple):
    images: jax.Array  # (B, S, S, 1) float32
    labels: jax.Array  # (B, S, S) int32: 0 background, 1 square, 2 cross
    square: jax.Array  # (B, S, S) bool: the square's pixels
    cross: jax.Array  # (B, S, S) bool: the cross's pixels


def make_scenes(key, batch: int, size: int = toy.IMAGE_SIZE, noise: float = 0.35) -> Scenes:
    """`batch` scenes with a square and a cross in opposite halves (left/right, at random), each of
    random size, brightness and position; a pure function of `key`."""
    k_side, k_radius, k_centre, k_bright, k_noise = jax.random.split(key, 5)
    radii = jax.random.uniform(k_radius, (batch, 2), minval=3.5, maxval=5.5)
    margin = radii + 1.0
    rows = jax.random.uniform(k_centre, (batch, 2), minval=margin, maxval=size - 1 - margin)
    half = size / 2
    cols = jax.random.uniform(jax.random.fold_in(k_centre, 1), (batch, 2), minval=margin, maxval=half - 1 - margin / 2)
    square_left = jax.random.bernoulli(k_side, 0.5, (batch,))
    cols = cols + jnp.where(square_left[:, None], jnp.array([0.0, half]), jnp.array([half, 0.0]))
    shape_of = jnp.array([toy.SHAPES.index("square"), toy.SHAPES.index("cross")])
    masks = [
        toy.shape_masks(jnp.full((batch,), shape_of[i]), jnp.stack([rows[:, i], cols[:, i]], -1), radii[:, i], size)
        for i in range(2)
    ]
    square, cross = masks[0], masks[1] & ~masks[0]
    brightness = jax.random.uniform(k_bright, (batch, 2, 1, 1), minval=0.6, maxval=1.0)
    images = brightness[:, 0] * square + brightness[:, 1] * cross + noise * jax.random.normal(k_noise, square.shape)
    labels = jnp.where(square, 1, jnp.where(cross, 2, 0)).astype(jnp.int32)
    return Scenes(images[..., None].astype(jnp.float32), labels, square, cross)


class ToySegNet(nn.Module):
    """block1..4 (3x3 conv + ReLU, dilations 1, 2, 4, 1: units of block4 see 17x17 pixels) -> a
    1x1 conv to per-pixel logits. images: (B, S, S, 1) float32 -> (B, S, S, len(CLASSES))."""

    widths: Sequence[int] = (16, 32, 32, 32)
    dilations: Sequence[int] = (1, 2, 4, 1)

    @nn.compact
    def __call__(self, images):
        x = images
        for i, (width, dilation) in enumerate(zip(self.widths, self.dilations)):
            x = nn.relu(nn.Conv(width, (3, 3), kernel_dilation=dilation, name=f"block{i + 1}")(x))
        return nn.Conv(len(CLASSES), (1, 1), name="head")(x)


def train_segmentation(seed: int = 0, steps: int = 150, batch: int = 16, learning_rate: float = 3e-3):
    """(model, variables, losses (steps,)): a `ToySegNet` trained with Adam on fresh scenes."""
    model = ToySegNet()
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, jnp.zeros((1, toy.IMAGE_SIZE, toy.IMAGE_SIZE, 1)))["params"]

    def loss_fn(params, key):
        scenes = make_scenes(key, batch)
        logits = taps.apply_logits(model, {"params": params}, scenes.images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, scenes.labels).mean()

    params, losses = toy.fit(loss_fn, params, data_key, steps, learning_rate)
    return model, {"params": params}, losses


def dilate(masks: jax.Array, pixels: int) -> jax.Array:
    """(B, S, S) bool masks grown by `pixels` (a square structuring element): "a region around" a shape."""
    grown = jax.lax.reduce_window(masks.astype(jnp.float32), 0.0, jax.lax.max, (1, 2 * pixels + 1, 2 * pixels + 1),
                                  (1, 1, 1), "SAME")  # fmt: skip
    return grown > 0


class SegReport(NamedTuple):
    pixel_accuracy: float  # held-out pixels labelled right
    square: float  # Seg-Grad-CAM("square", square mask): fraction of peaks on the square
    cross: float  # Seg-Grad-CAM("cross", region around the cross): fraction of peaks on the cross
    random_square: float  # the same for random maps at the layer's resolution
    random_cross: float
    square_maps: jax.Array  # (n, S, S)
    cross_maps: jax.Array  # (n, S, S)
    scenes: Scenes


def evaluate_segmentation(model, variables, *, seed: int = 1, n: int = 128, layer: str = SEG_LAYER) -> SegReport:
    """Pixel accuracy and the pointing game of Seg-Grad-CAM (logit score, ReLU) on `n` held-out scenes."""
    scenes = make_scenes(jax.random.key(2_000_003 + seed), n)
    logits = taps.apply_logits(model, variables, scenes.images)
    accuracy = float((jnp.argmax(logits, -1) == scenes.labels).mean())
    around_cross = dilate(scenes.cross, 2)
    square = grad_cam(model, variables, scenes.images, targets.segmentation(1, scenes.square), layer=layer, relu=True)
    cross = grad_cam(model, variables, scenes.images, targets.segmentation(2, around_cross), layer=layer, relu=True)
    layer_size = taps.layer_shapes(model, variables, scenes.images[:1])[layer].shape[1:3]
    raw = jax.random.uniform(jax.random.key(seed), (n, *layer_size))
    random_maps = maps_lib.finish(raw, (toy.IMAGE_SIZE, toy.IMAGE_SIZE))

    def hits(maps, masks):
        return float(toy.pointing_hits(maps, masks).mean())

    return SegReport(
        accuracy, hits(square.map, scenes.square), hits(cross.map, scenes.cross),
        hits(random_maps, scenes.square), hits(random_maps, scenes.cross), square.map, cross.map, scenes,
    )  # fmt: skip


def toy_embedding(variables, images) -> dict:
    """The toy classifier (`toy.ToyCNN`) as an embedding model: {"logits": (B, 3), "embedding":
    (B, 32) its pooled block5 features}. A plain function, as `model` for any method."""
    logits, state = toy.ToyCNN().apply(
        variables, images, capture_intermediates=lambda module, method: module.name == toy.LAYER
    )
    features = jnp.asarray(state["intermediates"][toy.LAYER]["__call__"][0])  # pyright: ignore[reportIndexIssue]
    return {"logits": logits, "embedding": features.mean(axis=(1, 2))}


def mean_embedding(variables, shape: str = "square", n: int = 256, seed: int = 3) -> jax.Array:
    """(D,) the mean embedding of `n` single-shape images of `shape` (`toy.make_batch`): a concept vector."""
    batch = toy.make_batch(jax.random.key(seed), n)
    embedding = toy_embedding(variables, batch.images)["embedding"]
    chosen = batch.labels == toy.SHAPES.index(shape)
    return (embedding * chosen[:, None]).sum(0) / chosen.sum()

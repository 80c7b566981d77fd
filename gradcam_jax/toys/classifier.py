"""A model trained here, to check that explanations point at the evidence: the pointing game.

The task is made on the fly: one shape (a square, a circle or a cross, filled) of random size,
brightness and position on Gaussian noise; the class is the shape. `ToyCNN` is an ordinary linen
CNN (no taps, no `sow`), trained with optax Adam. On held-out images, Grad-CAM "hits" when the
peak of its map for the true class lies on the shape (Zhang et al., "Top-down neural attention by
excitation backprop", ECCV 2016); a map that ignores the image hits at the rate of the shape's area.
Zhang et al. count a peak within 15 px of the object (at 224 px); `pointing_near` allows 1 px here,
since the class evidence is the shape's outline and the map, at a 16x16 layer, cannot place it
closer than half a cell: the strict score varies more from one training seed to another.

    model, variables, losses = train(seed=0, steps=400)
    report = evaluate(model, variables)    # accuracy, pointing game, random-map baseline

`make_shortcut_batch` adds a coloured corner patch that gives the class away (or not), for
training with explanation losses (`gradcam_jax.training`, scripts/train_right_reasons.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gradcam_jax._src import maps as maps_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.evaluation.localisation import pointing_game
from gradcam_jax._src.methods import grad_cam

SHAPES = ("square", "circle", "cross")
IMAGE_SIZE = 32
LAYER = "block5"  # the last convolution block: (B, 16, 16, 32) for 32x32 images
TOLERANCE = 1.0  # pixels: half a cell of the 16x16 layer, the precision a map at that layer has


class Batch(NamedTuple):
    images: jax.Array  # (B, S, S, 1) float32: shape brightness in [0.6, 1] plus noise
    labels: jax.Array  # (B,) int32: index into SHAPES
    masks: jax.Array  # (B, S, S) bool: the pixels of the shape


def shape_masks(labels, centres, radii, size: int) -> jax.Array:
    """(B, size, size) bool masks: labels (B,) int, centres (B, 2) (y, x) in pixels, radii (B,)."""
    yy, xx = jnp.mgrid[0:size, 0:size].astype(jnp.float32)
    dy = jnp.abs(yy - centres[:, 0, None, None])
    dx = jnp.abs(xx - centres[:, 1, None, None])
    r = radii[:, None, None]
    arm = r / 3  # half-width of the cross's bars
    square = jnp.maximum(dy, dx) <= 0.85 * r  # about a circle's area
    circle = dy**2 + dx**2 <= r**2
    cross = ((dy <= r) & (dx <= arm)) | ((dx <= r) & (dy <= arm))
    return jnp.stack([square, circle, cross], axis=1)[jnp.arange(labels.shape[0]), labels]


def make_batch(key, batch: int, size: int = IMAGE_SIZE, noise: float = 0.35) -> Batch:
    """`batch` random images of one shape each, wholly inside the image; a pure function of `key`."""
    k_label, k_radius, k_centre, k_bright, k_noise = jax.random.split(key, 5)
    labels = jax.random.randint(k_label, (batch,), 0, len(SHAPES), jnp.int32)
    radii = jax.random.uniform(k_radius, (batch,), minval=4.0, maxval=7.0)
    margin = radii[:, None] + 1.0
    centres = jax.random.uniform(k_centre, (batch, 2), minval=margin, maxval=size - 1 - margin)
    masks = shape_masks(labels, centres, radii, size)
    brightness = jax.random.uniform(k_bright, (batch, 1, 1), minval=0.6, maxval=1.0)
    images = brightness * masks + noise * jax.random.normal(k_noise, masks.shape)
    return Batch(images[..., None].astype(jnp.float32), labels, masks)


PATCH_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # RGB of SHAPES[0], [1], [2]
PATCH = 4  # pixels: the side of the shortcut patch


class ShortcutBatch(NamedTuple):
    images: jax.Array  # (B, S, S, 3) float32: the grey scene of `make_batch` with a coloured corner patch
    labels: jax.Array  # (B,) int32: index into SHAPES
    masks: jax.Array  # (B, S, S) bool: the pixels of the shape (none under the patch)
    patches: jax.Array  # (B, S, S) bool: the pixels of the patch


def make_shortcut_batch(key, batch: int, informative: bool, size: int = IMAGE_SIZE) -> ShortcutBatch:
    """Scenes with a shortcut: `make_batch`'s shape in grey plus a PATCH x PATCH patch in a random
    corner, coloured PATCH_COLOURS[label] when `informative` (a training set whose patch gives the
    class away) and in a random colour otherwise (a test set where it carries no information)."""
    k_scene, k_corner, k_colour = jax.random.split(key, 3)
    scene = make_batch(k_scene, batch, size)
    corner = jax.random.randint(k_corner, (batch, 2), 0, 2) * (size - PATCH)  # (y0, x0) of the patch
    yy, xx = jnp.mgrid[0:size, 0:size]
    patches = (
        (yy >= corner[:, :1, None])
        & (yy < corner[:, :1, None] + PATCH)
        & (xx >= corner[:, 1:, None])
        & (xx < corner[:, 1:, None] + PATCH)
    )
    random_colour = jax.random.randint(k_colour, (batch,), 0, len(SHAPES))
    colours = jnp.asarray(PATCH_COLOURS)[scene.labels if informative else random_colour]  # (B, 3)
    grey = jnp.repeat(scene.images, 3, axis=-1)
    images = jnp.where(patches[..., None], colours[:, None, None, :], grey)
    return ShortcutBatch(images.astype(jnp.float32), scene.labels, scene.masks & ~patches, patches)


def cross_entropy(model, params, batch) -> jax.Array:
    """The plain training loss: mean softmax cross-entropy of `model` on `batch` (images, labels)."""
    logits = taps.apply_logits(model, {"params": params}, batch.images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels).mean()


class ConvBlock(nn.Module):
    """3x3 convolution + ReLU, so that a block's output is the rectified feature map."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(self.features, (3, 3), (self.stride, self.stride))(x))


class ToyCNN(nn.Module):
    """block1..5 (3x3 conv + ReLU; block2 halves the resolution) -> global average pool -> head.

    block5's units see 17x17 pixels, more than the largest shape, so a unit can weigh a whole
    shape. images: (B, S, S, 1) float32. Returns logits (B, len(SHAPES))."""

    widths: Sequence[int] = (16, 32, 32, 32, 32)
    strides: Sequence[int] = (1, 2, 1, 1, 1)
    num_classes: int = len(SHAPES)

    @nn.compact
    def __call__(self, images):
        x = images
        for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
            x = ConvBlock(width, stride, name=f"block{i + 1}")(x)
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def fit(loss_fn, params, data_key, steps: int, learning_rate: float = 3e-3, optimizer=None):
    """(params, losses (steps,) float32): `optimizer` (default Adam at `learning_rate`) on
    `loss_fn(params, key)`, a fresh batch per step drawn from `fold_in(data_key, step)`. The one
    training loop of the toy models."""
    optimizer = optimizer or optax.adam(learning_rate)

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = optimizer.init(params), []
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(data_key, i))
        losses.append(loss)
    return params, jnp.stack(losses)


def train(
    seed: int = 0,
    steps: int = 400,
    batch: int = 64,
    learning_rate: float = 3e-3,
    model=None,
    data=make_batch,
    loss=cross_entropy,
    optimizer=None,
):
    """(model, variables, losses (steps,) float32): `model` (default ToyCNN()) trained with
    `optimizer` (default Adam at `learning_rate`) on fresh batches `data(key, batch)`, minimising
    `loss(model, params, batch)` (default `cross_entropy`)."""
    model = model or ToyCNN()
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, data(init_key, 1).images)["params"]  # only the shape matters
    params, losses = fit(lambda p, key: loss(model, p, data(key, batch)), params, data_key, steps, learning_rate,
                         optimizer)  # fmt: skip
    return model, {"params": params}, losses


def peaks(maps: jax.Array) -> jax.Array:
    """(B, n) int32 position of each `(B, *spatial)` map's maximum, n = len(spatial): (row, column)
    for images (the first one on ties)."""
    flat = jnp.argmax(maps.reshape(maps.shape[0], -1), axis=-1)
    return jnp.stack(jnp.unravel_index(flat, maps.shape[1:]), axis=-1).astype(jnp.int32)


def pointing_hits(maps: jax.Array, masks: jax.Array, tolerance: float = 0.0) -> jax.Array:
    """(B,) bool: whether the peak of each `(B, *spatial)` map (images, signals, volumes) lies within
    `tolerance` pixels (Euclidean) of its `(B, *spatial)` mask; 0 means on the mask itself. The
    library's `metrics.pointing_game` with `ties="first"`: of tied maxima only the first (row-major,
    `peaks`) counts. Quantus's rule, any tied maximum, would count the plateaus that upsampled maps
    clipped to [0, 1] have at their top whole: on `evaluate`'s 256 held-out images (seed 0) random maps
    (up to 20 tied pixels) would hit 23.4% instead of 3.9%, Grad-CAM within 1 px 100% instead of 99.6%."""
    return pointing_game(maps, masks, tolerance=tolerance, ties="first", normalise=False).per_image == 1


class Report(NamedTuple):
    accuracy: float  # top-1 accuracy on the held-out images
    pointing: float  # fraction of Grad-CAM peaks (true class) on the shape
    pointing_near: float  # ... on it or within TOLERANCE pixels of it
    random_pointing: float  # `pointing` for random maps at the layer's resolution, finished alike
    random_near: float  # `pointing_near` for the same random maps
    area: float  # mean fraction of the image the shape covers: a uniformly random peak's hit rate
    hits: jax.Array  # (n,) bool, per image, on the shape
    maps: jax.Array  # (n, S, S) float32 Grad-CAM maps of the true class
    batch: Batch  # the held-out images


def evaluate(model, variables, *, seed: int = 1, n: int = 256, layer: str = LAYER, **options) -> Report:
    """Accuracy and pointing game of Grad-CAM (`options` passed on, e.g. score="logit") on `n`
    held-out images drawn with `seed` (training draws from `train`'s own key)."""
    batch = make_batch(jax.random.key(1_000_003 + seed), n)
    result = grad_cam(model, variables, batch.images, batch.labels, layer=layer, **options)
    logits = taps.apply_logits(model, variables, batch.images)
    accuracy = float((jnp.argmax(logits, -1) == batch.labels).mean())
    # The baseline: maps that ignore the image, at the layer's resolution and upsampled alike.
    assert result.activations is not None  # Grad-CAM returns them
    raw = jax.random.uniform(jax.random.key(seed), (n, *result.activations.shape[1:3]))
    random_maps = maps_lib.finish(raw, (batch.images.shape[1], batch.images.shape[2]))
    hits = pointing_hits(result.map, batch.masks)

    def score(maps, tolerance=0.0):
        return float(pointing_hits(maps, batch.masks, tolerance).mean())

    return Report(
        accuracy,
        float(hits.mean()),
        score(result.map, TOLERANCE),
        score(random_maps),
        score(random_maps, TOLERANCE),
        float(batch.masks.mean()),
        hits,
        result.map,
        batch,
    )

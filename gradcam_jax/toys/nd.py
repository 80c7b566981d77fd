"""Models trained here on volumes and signals, to check that explanations point at the evidence in
any number of dimensions: the pointing game of `gradcam_jax.toys.classifier`, in 3-D and 1-D.

- Volumes: a small cube or sphere (of about the same volume) at a random place in a noisy 24^3
  volume, (B, 24, 24, 24, 1), or nothing but noise; the class is the shape ("none" for noise).
  `volume_cnn()` is a few 3x3x3 convolutions.
- Signals: a Gaussian bump or a square pulse at a random time in a noisy trace of 128 samples,
  (B, 128, 1), or noise alone; the class is the shape. `signal_cnn()` is a few 1-D convolutions.

Why a "none" class: with two shapes only, a network may learn one class as "no sign of the other"
(the trained 1-D model did: its "pulse" evidence was every sample *but* the pulse, and Grad-CAM of
"pulse" never peaked on it). Against noise alone, each shape needs evidence of its own.

Both are ordinary linen CNNs (conv + ReLU blocks, global average pool, dense head), trained with
`toy.train` (optax Adam, `toy.fit`). `pointing` plays the game for any registered method on
held-out samples: a method "hits" when its map's peak lies on the object, and random maps (at the
layer's resolution, finished alike) hit at about the object's share of the input.

    model, variables, _ = toy.train(model=volume_cnn(), data=make_volumes, steps=..., batch=...)
    report = pointing(model, variables, make_volumes(key, 64), {"grad_cam": {"layer": "block3"}})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import maps as maps_lib
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.methods import METHODS
from gradcam_jax.toys import classifier as toy

VOLUME_SHAPES = ("cube", "sphere", "none")
VOLUME_SIZE = 24
SIGNAL_SHAPES = ("bump", "pulse", "none")
SIGNAL_LENGTH = 128
LAYER = "block3"  # the last convolution block of both CNNs: half the input's resolution


def make_volumes(key, batch: int, size: int = VOLUME_SIZE, noise: float = 0.25) -> toy.Batch:
    """`batch` volumes (B, size, size, size, 1) float32 of Gaussian noise (sigma `noise`), each
    holding a cube or a sphere (label 0 or 1) of radius 3 to 5 voxels wholly inside, brightness 0.6
    to 1, or nothing (label 2); masks (B, size, size, size) bool are the object's voxels. A pure
    function of `key`. (At noise 0.35 the CNN stays at chance for 60 steps; at 0.25 it learns.)"""
    k_label, k_radius, k_centre, k_bright, k_noise = jax.random.split(key, 5)
    labels = jax.random.randint(k_label, (batch,), 0, len(VOLUME_SHAPES), jnp.int32)
    radii = jax.random.uniform(k_radius, (batch,), minval=3.0, maxval=5.0)
    margin = radii[:, None] + 1.0
    centres = jax.random.uniform(k_centre, (batch, 3), minval=margin, maxval=size - 1 - margin)
    offsets = jnp.indices((size,) * 3, dtype=jnp.float32)[None] - centres[:, :, None, None, None]  # (B, 3, ...)
    r = radii[:, None, None, None]
    cube = jnp.abs(offsets).max(axis=1) <= 0.8 * r  # side 1.6 r: about the sphere's volume
    sphere = (offsets**2).sum(axis=1) <= r**2
    masks = jnp.where(labels[:, None, None, None] == 0, cube, sphere) & (labels[:, None, None, None] < 2)
    brightness = jax.random.uniform(k_bright, (batch, 1, 1, 1), minval=0.6, maxval=1.0)
    volumes = brightness * masks + noise * jax.random.normal(k_noise, masks.shape)
    return toy.Batch(volumes[..., None].astype(jnp.float32), labels, masks)


def make_signals(key, batch: int, length: int = SIGNAL_LENGTH, noise: float = 0.25) -> toy.Batch:
    """`batch` noisy traces (B, length, 1) float32, each holding a Gaussian bump (label 0, sigma 3
    to 5 samples) or a square pulse (label 1, half-width 1.2 sigma: about the bump's area) at a
    random time, height 0.6 to 1, or nothing (label 2); masks (B, length) bool are the samples
    within 2 sigma of the bump's centre (where it is above 13% of its height) or under the pulse."""
    k_label, k_width, k_centre, k_height, k_noise = jax.random.split(key, 5)
    labels = jax.random.randint(k_label, (batch,), 0, len(SIGNAL_SHAPES), jnp.int32)
    sigma = jax.random.uniform(k_width, (batch, 1), minval=3.0, maxval=5.0)
    centres = jax.random.uniform(k_centre, (batch, 1), minval=2 * sigma + 1, maxval=length - 2 - 2 * sigma)
    offset = jnp.arange(length, dtype=jnp.float32)[None] - centres
    bump = jnp.exp(-(offset**2) / (2 * sigma**2))
    pulse = (jnp.abs(offset) <= 1.2 * sigma).astype(jnp.float32)
    is_bump, present = labels[:, None] == 0, labels[:, None] < 2
    shape = jnp.where(is_bump, bump, pulse) * present
    masks = jnp.where(is_bump, jnp.abs(offset) <= 2 * sigma, pulse > 0) & present
    height = jax.random.uniform(k_height, (batch, 1), minval=0.6, maxval=1.0)
    traces = height * shape + noise * jax.random.normal(k_noise, shape.shape)
    return toy.Batch(traces[..., None].astype(jnp.float32), labels, masks)


class BlockCNN(nn.Module):
    """block1..n (conv + ReLU, `strides` per block) -> global average pool -> dense head, over any
    number of spatial axes (`kernel` is the kernel size per axis). images `(B, *spatial, C)` float32
    -> logits (B, num_classes)."""

    kernel: Sequence[int]
    widths: Sequence[int]
    strides: Sequence[int]
    num_classes: int = 3

    @nn.compact
    def __call__(self, images):
        x = images
        for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
            x = nn.relu(nn.Conv(width, tuple(self.kernel), (stride,) * len(self.kernel), name=f"block{i + 1}")(x))
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=tuple(range(1, x.ndim - 1))))


def volume_cnn() -> BlockCNN:
    """The volume classifier: 3x3x3 convolutions, block1 halving the resolution (a full-resolution
    3-D convolution costs 20x more to train on the CPU), block3 at 12^3 for 24^3 volumes; its units
    see 11^3 voxels, a whole object."""
    return BlockCNN(kernel=(3, 3, 3), widths=(8, 8, 8), strides=(2, 1, 1))


def signal_cnn() -> BlockCNN:
    """The signal classifier: convolutions of 7 samples, block3 at 64 samples for 128-sample traces."""
    return BlockCNN(kernel=(7,), widths=(16, 32, 32), strides=(1, 2, 1))


# What the pointing game runs (test and script alike): the CAM family at block3 on logits with a
# ReLU (CAM needs no options: its head is GAP + linear), occlusion at a zero baseline with windows of 6
# along each axis (4^3 = 64 positions on a 24^3 volume: the auto stride would take 512), and
# integrated gradients from a zero baseline.
POINTING_METHODS = {
    **{name: {"layer": LAYER} for name in ("cam", "grad_cam_plus_plus", "layer_cam", "hires_cam", "xgrad_cam")},
    "grad_cam": {"layer": LAYER, "score": "logit", "relu": True},
    "occlusion": {"patch": 6, "stride": 6, "baseline": 0.0, "score": "logit"},
    "integrated_gradients": {"baseline": 0.0, "steps": 8},
}


class Pointing(NamedTuple):
    shares: dict[str, float]  # method -> fraction of held-out samples whose map peaks on the object
    random: float  # the same for random maps at the layer's resolution, finished as the CAM family
    area: float  # mean fraction of the input the object covers: a uniformly random peak's hit rate
    accuracy: float  # top-1 accuracy on the held-out samples
    maps: dict[str, jax.Array]  # method -> (n, *spatial) maps of the true class


def pointing(
    model, variables, batch: toy.Batch, methods: Mapping[str, Mapping], *, layer: str = LAYER, seed: int = 0
) -> Pointing:
    """The pointing game on the samples of `batch` that hold an object (held-out, with object
    masks) for each method in `methods` (a name in METHODS -> its options), explaining the true
    class. Accuracy is over the whole batch."""
    logits = taps.apply_logits(model, variables, batch.images)
    accuracy = float((jnp.argmax(logits, -1) == batch.labels).mean())
    with_object = np.asarray(batch.masks.reshape(len(batch.labels), -1).any(axis=1))
    batch = jax.tree.map(lambda a: a[with_object], batch)
    size = batch.images.shape[1:-1]
    found = {name: METHODS[name](model, variables, batch.images, batch.labels, **options).map
             for name, options in methods.items()}  # fmt: skip
    layer_size = taps.layer_shapes(model, variables, batch.images[:1])[layer].shape[1:-1]
    random_maps = maps_lib.finish(jax.random.uniform(jax.random.key(seed), (len(batch.labels), *layer_size)), size)

    def share(maps):
        return float(toy.pointing_hits(maps, batch.masks).mean())

    return Pointing(
        {name: share(m) for name, m in found.items()},
        share(random_maps),
        float(batch.masks.mean()),
        accuracy,
        found,
    )

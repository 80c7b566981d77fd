"""A toy vision transformer, trained here, to check that the transformer methods point at the evidence.

`ToyViT` is torchvision's `VisionTransformer` in linen, small: patch embedding by a strided
convolution, a class token (or none: mean pooling), learned position embeddings, pre-norm blocks of
`nn.MultiHeadDotProductAttention` and a GELU MLP, a final LayerNorm and a linear head (LayerNorm
epsilon 1e-6 and exact GELU, as torchvision has them, so its weights load into one). `legrad_head`
is its LeGrad head, torchcam's: the final norm and classifier applied to a block's mean token.

The task: scenes of two different shapes of `gradcam_jax.toys.classifier` (square, circle, cross), one in each
half, on noise; the labels say which two are present (multi-label, sigmoid cross-entropy). Asked
for one of the two, a map should peak on that shape and not the other (`evaluate`).

    model, variables, losses = train(seed=0)
    report = evaluate(model, variables)       # pointing shares and deletion/insertion AUCs per method
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import serialization

from gradcam_jax._src import maps as maps_lib
from gradcam_jax._src import methods as gj_methods
from gradcam_jax._src import metrics
from gradcam_jax._src.adapters import taps
from gradcam_jax.toys import classifier as toy


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)). tokens (B, N, C) -> (B, N, C)."""

    heads: int
    mlp_ratio: int = 2

    @nn.compact
    def __call__(self, x):
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attn")(nn.LayerNorm(1e-6, name="ln1")(x))
        h = nn.gelu(nn.Dense(self.mlp_ratio * x.shape[-1], name="mlp1")(nn.LayerNorm(1e-6, name="ln2")(x)), False)
        return x + nn.Dense(x.shape[-1], name="mlp2")(h)


class ToyViT(nn.Module):
    """images (B, H, W, C) -> logits (B, num_classes); blocks at paths `blocks_0`, `blocks_1`, ...

    image_size: (H, W), fixes the position embeddings; the grid is (H/patch, W/patch)."""

    image_size: tuple[int, int] = (toy.IMAGE_SIZE, toy.IMAGE_SIZE)
    patch: int = 4
    dim: int = 32
    depth: int = 2
    heads: int = 2
    num_classes: int = len(toy.SHAPES)
    class_token: bool = True
    mlp_ratio: int = 2
    stem: int = 0  # > 0: a 3x3 convolution + ReLU with this many features ahead of the patch embedding

    def setup(self):
        grid = (self.image_size[0] // self.patch, self.image_size[1] // self.patch)
        self.conv_stem = nn.Conv(self.stem, (3, 3)) if self.stem else None
        self.embed = nn.Conv(self.dim, (self.patch, self.patch), (self.patch, self.patch), padding="VALID")
        prefix = 1 if self.class_token else 0
        self.cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.dim)) if self.class_token else None
        self.pos = self.param("pos", nn.initializers.normal(0.02), (1, prefix + grid[0] * grid[1], self.dim))
        self.blocks = [Block(self.heads, self.mlp_ratio) for _ in range(self.depth)]
        self.norm = nn.LayerNorm(1e-6)
        self.head = nn.Dense(self.num_classes)

    def tokens(self, images):
        x = self.embed(nn.relu(self.conv_stem(images)) if self.conv_stem is not None else images)
        x = x.reshape(x.shape[0], -1, self.dim)  # row-major patches
        if self.cls is not None:
            x = jnp.concatenate([jnp.broadcast_to(self.cls, (x.shape[0], 1, self.dim)), x], axis=1)
        return x + self.pos

    def classify(self, tokens):
        pooled = tokens[:, 0] if self.class_token else tokens.mean(axis=1)
        return self.head(self.norm(pooled))

    def __call__(self, images):
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.classify(x)


def legrad_head(variables, tokens):
    """LeGrad's head for a `ToyViT` (torchcam's for torchvision ViTs): the final norm and the
    classifier on the mean of a block's tokens (B, N, C) -> logits (B, classes)."""
    params = variables["params"]
    pooled = nn.LayerNorm(1e-6).apply({"params": params["norm"]}, tokens.mean(axis=1))
    return pooled @ params["head"]["kernel"] + params["head"]["bias"]


class PairScenes(NamedTuple):
    images: jax.Array  # (B, S, S, 1) float32
    labels: jax.Array  # (B, len(SHAPES)) float32: 1 for the two shapes present
    shapes: jax.Array  # (B, 2) int32: the two shapes, left then right
    masks: jax.Array  # (B, 2, S, S) bool: their pixels, in the same order


def make_pair_scenes(key, batch: int, size: int = toy.IMAGE_SIZE, noise: float = 0.2) -> PairScenes:
    """`batch` scenes with two different shapes, one in each half, each of random size, brightness and
    position; a pure function of `key`. Less noise than `toy.make_batch`'s 0.35: a ViT without a
    convolutional backbone learns the harder task too slowly for a test's budget."""
    k_first, k_other, k_radius, k_centre, k_bright, k_noise = jax.random.split(key, 6)
    first = jax.random.randint(k_first, (batch,), 0, len(toy.SHAPES))
    second = (first + jax.random.randint(k_other, (batch,), 1, len(toy.SHAPES))) % len(toy.SHAPES)
    shapes = jnp.stack([first, second], axis=1).astype(jnp.int32)
    radii = jax.random.uniform(k_radius, (batch, 2), minval=3.5, maxval=5.5)
    margin = radii + 1.0
    rows = jax.random.uniform(k_centre, (batch, 2), minval=margin, maxval=size - 1 - margin)
    half = size / 2
    cols = jax.random.uniform(jax.random.fold_in(k_centre, 1), (batch, 2), minval=margin, maxval=half - 1 - margin / 2)
    cols = cols + jnp.array([0.0, half])
    masks = jnp.stack(
        [toy.shape_masks(shapes[:, i], jnp.stack([rows[:, i], cols[:, i]], -1), radii[:, i], size) for i in range(2)],
        axis=1,
    )
    brightness = jax.random.uniform(k_bright, (batch, 2, 1, 1), minval=0.6, maxval=1.0)
    images = (brightness * masks).sum(axis=1) + noise * jax.random.normal(k_noise, (batch, size, size))
    labels = jax.nn.one_hot(shapes, len(toy.SHAPES)).sum(axis=1)
    return PairScenes(images[..., None].astype(jnp.float32), labels, shapes, masks)


TRAINED = ToyViT(stem=16)  # the configuration scripts/toy_vit_proof.py trains


def train(seed: int = 0, steps: int = 800, batch: int = 64, learning_rate: float = 3e-3, model: ToyViT | None = None):
    """(model, variables, losses (steps,)): `model` (default `TRAINED`) trained with Adam
    (`toy.fit`) on fresh pair scenes, sigmoid cross-entropy on which shapes are present."""
    model = model or TRAINED
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, make_pair_scenes(init_key, 1).images)["params"]

    def loss_fn(params, key):
        scenes = make_pair_scenes(key, batch)
        logits = taps.apply_logits(model, {"params": params}, scenes.images)
        return optax.sigmoid_binary_cross_entropy(logits, scenes.labels).mean()

    params, losses = toy.fit(loss_fn, params, data_key, steps, learning_rate)
    return model, {"params": params}, losses


def load(path) -> dict:
    """The variables of `TRAINED` saved by scripts/toy_vit_proof.py --save (flax msgpack)."""
    template = jax.eval_shape(TRAINED.init, jax.random.key(0), make_pair_scenes(jax.random.key(0), 1).images)
    with open(path, "rb") as f:
        return serialization.from_bytes(template, f.read())


METHODS = ("attention_rollout", "generic_attention", "legrad", "grad_cam", "attn_lrp", "cp_lrp")


class MethodScores(NamedTuple):
    pointing: float  # share of maps whose peak lies on the asked-for shape (both shapes asked, each scene)
    deletion: float  # mean deletion AUC of the asked-for shape's logit, pixels set to 0 (lower is better)
    insertion: float  # mean insertion AUC, from a blurred scene (higher is better)


class Report(NamedTuple):
    accuracy: float  # share of the (scene, shape) labels right: logit > 0 exactly for the shapes present
    methods: dict[str, MethodScores]  # by method name, and "random": random maps at the patch grid
    area: float  # mean fraction of the image an asked-for shape covers: a random peak's expected hit rate


def explain(name: str, model: ToyViT, variables, images, targets) -> jax.Array:
    """(B, K, S, S) maps of `targets` (B, K) by method `name` (one of METHODS), class scores as logits."""
    if name == "legrad":
        return gj_methods.legrad(model, variables, images, targets, head=legrad_head).map
    if name == "grad_cam":  # on the tokens entering the last block (after it only the class token reaches the head)
        layer = f"blocks_{model.depth - 2}"
        return gj_methods.grad_cam(model, variables, images, targets, layer=layer, score="logit").map
    return gj_methods.METHODS[name](model, variables, images, targets).map


def evaluate(model: ToyViT, variables, *, seed: int = 1, n: int = 128, steps: int = 32, methods=METHODS) -> Report:
    """Pointing game and deletion/insertion AUCs (`gradcam_jax._src.metrics`, `steps` steps) of each of
    `methods` on `n` held-out pair scenes drawn with `seed`, against random maps."""
    scenes = make_pair_scenes(jax.random.key(1_000_003 + seed), n)
    logits = taps.apply_logits(model, variables, scenes.images)
    accuracy = float(((logits > 0) == (scenes.labels > 0)).mean())
    size = (scenes.images.shape[1], scenes.images.shape[2])
    grid = (size[0] // model.patch, size[1] // model.patch)
    random_maps = maps_lib.finish(jax.random.uniform(jax.random.key(seed), (n, 2, *grid)), size)
    results = {}
    for name in (*methods, "random"):
        found = random_maps if name == "random" else explain(name, model, variables, scenes.images, scenes.shapes)
        hits, deleted, inserted = [], [], []
        for k in range(2):
            asked = scenes.shapes[:, k]
            hits.append(toy.pointing_hits(found[:, k], scenes.masks[:, k]))
            args = (model, variables, scenes.images, found[:, k], asked)
            deleted.append(metrics.deletion(*args, steps=steps, baseline="black", score="logit").auc)
            inserted.append(metrics.insertion(*args, steps=steps, score="logit").auc)
        results[name] = MethodScores(
            float(jnp.stack(hits).mean()), float(jnp.stack(deleted).mean()), float(jnp.stack(inserted).mean())
        )
    return Report(accuracy, results, float(scenes.masks.mean()))

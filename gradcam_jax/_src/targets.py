"""What an explanation explains: a differentiable score of whatever the model returns.

A target is a function `target(outputs) -> (B,) or (B, K)` float scores, one column per map. Every
method takes one as `targets`: gradient methods differentiate each of the K columns (one forward
pass, K vmapped backward passes), perturbation methods evaluate it on the perturbed batches. Class
indices (`targets=[243, 282]`, or `None` for the top-1 class) are the special case `classes(...)`.

The targets here are pytrees (their arrays are traced under `jit`, so new indices, masks or
concepts do not recompile); any other callable (a `def`, a lambda, a `functools.partial`) works
too and is hashed as a static argument: define it once and reuse it.

    gj.grad_cam(model, variables, x, gj.targets.similarity(concept))          # (B,) -> one map each
    gj.grad_cam(model, variables, x, lambda out: out["scores"][:, 3, 17])     # a detector's box 3, class 17
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from gradcam_jax._src import scores as scores_lib
from gradcam_jax._src.inputs import is_concrete
from gradcam_jax._src.maps import float32_or_wider

__all__ = ["classes", "segmentation", "similarity", "output", "finer", "as_target", "logits_of", "entry"]


def entry(outputs, key: str):
    """`outputs[key]` of a dict, `outputs.key` of a dataclass / flax struct / named tuple."""
    if isinstance(outputs, Mapping):
        if key in outputs:
            return outputs[key]
    elif hasattr(outputs, key) and not isinstance(outputs, jax.Array):
        return getattr(outputs, key)
    raise TypeError(f"the model's output ({describe(outputs)}) has no {key!r} entry")


def logits_of(outputs) -> jax.Array:
    """A classifier's logits from what the model returned: an array, a tuple/list led by the logits,
    or a dict / dataclass / flax struct / named tuple with a `logits` entry."""
    if isinstance(outputs, Mapping) or (hasattr(outputs, "logits") and not isinstance(outputs, jax.Array)):
        try:
            return entry(outputs, "logits")
        except TypeError:
            pass
    elif isinstance(outputs, (tuple, list)) and outputs and hasattr(outputs[0], "shape"):
        return cast(jax.Array, outputs[0])
    elif hasattr(outputs, "shape") and hasattr(outputs, "dtype"):
        return cast(jax.Array, outputs)
    raise TypeError(
        f"class targets need logits, but the model returns {describe(outputs)} without a 'logits' entry; "
        "pass a target function instead, e.g. targets=lambda out: out['score'] (see gradcam_jax._src.targets)"
    )


def describe(outputs) -> str:
    """A short description of a model output, for error messages."""
    if hasattr(outputs, "shape") and hasattr(outputs, "dtype"):
        return f"an array {tuple(outputs.shape)}"
    if isinstance(outputs, Mapping):
        return f"a dict with keys {sorted(map(str, outputs))}"
    if dataclasses.is_dataclass(outputs):
        return f"a {type(outputs).__name__} with fields {[f.name for f in dataclasses.fields(outputs)]}"
    return f"a {type(outputs).__name__}"


def columns(scores, batch: int, source: str = "the target function") -> jax.Array:
    """Checked (B, K) float32 (float64 under x64) scores from a target's (B,) or (B, K) float output (at trace time)."""
    if not hasattr(scores, "shape") or not jnp.issubdtype(scores.dtype, jnp.floating):
        kind = getattr(scores, "dtype", type(scores).__name__)
        raise ValueError(f"{source} must return float scores (B,) or (B, K); got {kind}")
    if scores.ndim not in (1, 2) or scores.shape[0] != batch:
        raise ValueError(f"{source} must return scores of shape ({batch},) or ({batch}, K); got {tuple(scores.shape)}")
    return float32_or_wider(scores[:, None] if scores.ndim == 1 else scores)


@jax.tree_util.register_pytree_node_class
class Classes:
    """Class scores, today's targets as an object: `score` ("softmax" or "logit") of each class in
    `indices`, (B,) one per image or (B, K), int32; None for each image's top-1 class."""

    def __init__(self, indices, score: str = "softmax"):
        if score not in scores_lib.SCORES:
            raise ValueError(f"unknown score {score!r}; choose from {', '.join(scores_lib.SCORES)}")
        self.indices, self.score = indices, score

    def __call__(self, outputs) -> jax.Array:
        every = scores_lib.class_scores(logits_of(outputs), self.score)
        if self.indices is None:
            return every.max(axis=-1)
        picked = jnp.take_along_axis(every, jnp.reshape(self.indices, (every.shape[0], -1)), axis=1)
        return picked[:, 0] if jnp.ndim(self.indices) == 1 else picked

    def resolve(self, outputs) -> Classes:
        """The same target with top-1 (None) replaced by the classes `outputs` rank first (int32)."""
        if self.indices is not None:
            return self
        top = jnp.argmax(logits_of(outputs), axis=-1).astype(jnp.int32)
        return Classes(top, self.score)

    def tree_flatten(self):
        return (self.indices,), self.score

    @classmethod
    def tree_unflatten(cls, score, children):
        target = object.__new__(cls)
        target.indices, target.score = children[0], score
        return target


def classes(indices=None, score: str = "softmax") -> Classes:
    """Target: the `score` ("softmax" probability or "logit") of class `indices`: (B,) one class
    per image -> scores (B,); (B, K) K classes per image -> (B, K); None -> each image's top-1."""
    if indices is not None:
        # host indices stay numpy (jit moves them with the call: no eager device op per call)
        indices = indices if isinstance(indices, jax.Array) else np.asarray(indices)
        if not jnp.issubdtype(indices.dtype, jnp.integer):
            raise ValueError(f"targets must be integer class indices; got dtype {indices.dtype}")
        if indices.ndim not in (1, 2):
            raise ValueError(f"class targets must have shape (B,) or (B, K); got {tuple(indices.shape)}")
        indices = indices if indices.dtype == np.int32 else indices.astype(np.int32)
    return Classes(indices, score)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Segmentation:
    """Seg-Grad-CAM's score; see `segmentation`."""

    class_index: jax.Array  # () or (K,) int32
    mask: jax.Array | None  # (*spatial) or (B, *spatial) float32, or None (every position)
    score: str = "logit"
    key: str | None = None

    def __call__(self, outputs) -> jax.Array:
        per_pixel = float32_or_wider(entry(outputs, self.key) if self.key else logits_of(outputs))
        if not 3 <= per_pixel.ndim <= 5:
            raise ValueError(
                "segmentation targets need per-position scores (B, L, N), (B, H, W, N) or (B, D, H, W, N); "
                f"got {tuple(per_pixel.shape)}"
            )
        if self.score == "softmax":
            per_pixel = jax.nn.softmax(per_pixel, axis=-1)
        grid = per_pixel.shape[:-1]  # (B, *spatial)
        chosen = jnp.take(per_pixel, self.class_index, axis=-1)  # (B, *spatial) or (B, *spatial, K)
        if self.mask is None:
            mask = jnp.ones(grid)
        elif tuple(self.mask.shape) in (tuple(grid[1:]), tuple(grid)):
            mask = jnp.broadcast_to(self.mask, grid)
        else:
            raise ValueError(
                f"mask must be {tuple(grid[1:])} or {tuple(grid)} for per-position scores {tuple(per_pixel.shape)}; "
                f"got {tuple(self.mask.shape)}"
            )
        axes = "dhw"[-(len(grid) - 1) :]  # the spatial axes' letters: "hw" for images
        if chosen.ndim == len(grid) + 1:
            return jnp.einsum(f"b{axes}k,b{axes}->bk", chosen, mask)
        return jnp.einsum(f"b{axes},b{axes}->b", chosen, mask)

    def tree_flatten(self):
        return (self.class_index, self.mask), (self.score, self.key)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)


def segmentation(
    class_index: int | Sequence[int], mask=None, score: str = "logit", key: str | None = None
) -> Segmentation:
    """Target: Seg-Grad-CAM (Vinogradova et al., AAAI 2020), the sum of one class's per-position
    scores over a region:  S = sum_{p in mask} y[b, p, class].

    The model's output (its logits, or `outputs[key]`) is per-position scores: (B, H, W, N) per pixel,
    (B, L, N) per sample of a signal, (B, D, H, W, N) per voxel; `mask` has the same spatial axes,
    ``(*spatial)`` for every image or ``(B, *spatial)``, bool or float weights, None for the whole input;
    `score` is "logit" (the paper) or "softmax" (per position). An int `class_index` gives scores
    (B,), a sequence (B, K)."""
    if score not in scores_lib.SCORES:
        raise ValueError(f"unknown score {score!r}; choose from {', '.join(scores_lib.SCORES)}")
    index = jnp.asarray(class_index, jnp.int32)
    if index.ndim > 1:
        raise ValueError(f"class_index must be an int or a sequence of ints; got shape {tuple(index.shape)}")
    if mask is not None:
        mask = jnp.asarray(mask, jnp.float32)
        if not 1 <= mask.ndim <= 4:
            raise ValueError(
                f"mask must be (*spatial) or (B, *spatial) with 1 to 3 spatial axes; got shape {tuple(mask.shape)}"
            )
    return Segmentation(index, mask, score, key)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Similarity:
    """Cosine similarity to concept vectors; see `similarity`."""

    concept: jax.Array  # (D,), (B, D) per image, (K, D) shared or (B, K, D) per image
    per_image: bool = False
    key: str | None = "embedding"

    def __call__(self, outputs) -> jax.Array:
        embedding = outputs if (self.key is None or hasattr(outputs, "shape")) else entry(outputs, self.key)
        embedding = float32_or_wider(embedding)
        if embedding.ndim != 2:
            raise ValueError(f"similarity targets need embeddings (B, D); got {tuple(embedding.shape)}")
        unit = embedding / jnp.sqrt(jnp.sum(embedding**2, axis=-1, keepdims=True) + 1e-12)
        concept = self.concept / jnp.sqrt(jnp.sum(self.concept**2, axis=-1, keepdims=True) + 1e-12)
        if concept.ndim == 1:
            return unit @ concept
        if self.per_image and concept.ndim == 2:
            return jnp.einsum("bd,bd->b", unit, concept)
        if concept.ndim == 2:
            return unit @ concept.T
        return jnp.einsum("bd,bkd->bk", unit, concept)

    def tree_flatten(self):
        return (self.concept,), (self.per_image, self.key)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)


def similarity(concept, per_image: bool = False, key: str | None = "embedding") -> Similarity:
    """Target: cosine similarity between the model's embedding (B, D) and concept vectors, "why do
    these two images match":  S = cos(e, c) = e . c / (norm(e) norm(c)).

    concept: (D,) one vector -> scores (B,); (K, D) K vectors for every image -> (B, K);
    (B, D) with `per_image=True` one per image (say, the embedding of each image's match) -> (B,);
    (B, K, D) K per image -> (B, K). The embedding is the output itself when it is an array,
    else `outputs[key]` (default "embedding") of a dict or dataclass."""
    concept = jnp.asarray(concept, jnp.float32)
    if concept.ndim not in (1, 2, 3) or (per_image and concept.ndim != 2):
        raise ValueError(f"concept must be (D,), (K, D), (B, D) with per_image=True or (B, K, D); got {concept.shape}")
    return Similarity(concept, per_image, key)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Output:
    """A raw output unit; see `output`."""

    index: jax.Array | None
    key: str | None = None

    def __call__(self, outputs) -> jax.Array:
        values = float32_or_wider(entry(outputs, self.key) if self.key else logits_of(outputs))
        values = values.reshape(values.shape[0], -1)  # (B,) and (B, 1) regression heads alike
        if self.index is None:
            if values.shape[1] != 1:
                raise ValueError(f"output() without an index needs one output per image; got {values.shape[1]}")
            return values[:, 0]
        return jnp.take(values, self.index, axis=1)

    def tree_flatten(self):
        return (self.index,), self.key

    @classmethod
    def tree_unflatten(cls, key, children):
        return cls(children[0], key)


def output(index: int | Sequence[int] | None = None, key: str | None = None) -> Output:
    """Target: raw output units, e.g. a regression head:  S = y[b, index] (flattened per image).

    An int `index` gives scores (B,), a sequence (B, K); None takes a model with a single output per
    image ((B,) or (B, 1)). The output is the model's (first) array, or `outputs[key]`."""
    return Output(None if index is None else jnp.asarray(index, jnp.int32), key)


@jax.tree_util.register_pytree_node_class
class Finer:
    """Finer-CAM's contrast with the most similar classes; see `finer`."""

    def __init__(self, indices, comparisons: int = 3, alpha: float = 1.0):
        self.indices, self.comparisons, self.alpha = indices, comparisons, alpha

    def __call__(self, outputs) -> jax.Array:
        logits = float32_or_wider(logits_of(outputs))  # (B, N)
        indices = jnp.argmax(logits, axis=-1) if self.indices is None else self.indices
        picked = jnp.reshape(indices, (logits.shape[0], -1))  # (B, K)
        z = jnp.take_along_axis(logits, picked, axis=1)  # (B, K)
        distance = jnp.abs(logits[:, None, :] - z[..., None])  # (B, K, N)
        distance = jnp.where(jnp.arange(logits.shape[1]) == picked[..., None], jnp.inf, distance)
        _, similar = jax.lax.top_k(-jax.lax.stop_gradient(distance), min(self.comparisons, logits.shape[1] - 1))
        every = jnp.broadcast_to(logits[:, None, :], distance.shape)
        p = jnp.take_along_axis(jnp.broadcast_to(jax.nn.softmax(logits)[:, None, :], distance.shape), similar, axis=2)
        contrast = (p * (z[..., None] - self.alpha * jnp.take_along_axis(every, similar, axis=2))).sum(axis=2)
        scores = contrast / (p.sum(axis=2) + 1e-9)
        return scores[:, 0] if self.indices is None or jnp.ndim(self.indices) == 1 else scores

    def resolve(self, outputs) -> Finer:
        """The same target with top-1 (None) replaced by the classes `outputs` rank first (int32)."""
        if self.indices is not None:
            return self
        return Finer(jnp.argmax(logits_of(outputs), axis=-1).astype(jnp.int32), self.comparisons, self.alpha)

    def tree_flatten(self):
        return (self.indices,), (self.comparisons, self.alpha)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)


def finer(indices=None, comparisons: int = 3, alpha: float = 1.0) -> Finer:
    """Target: Finer-CAM's score (Zhang et al., CVPR 2025; pytorch-grad-cam's `FinerWeightedTarget`),
    class c against the `comparisons` classes whose logits are nearest to its own:

        S = sum_j p_j (z_c - alpha z_j) / (sum_j p_j + 1e-9),   p = softmax(z)

    so a map of S shows what tells c apart from the classes it is most easily confused with.
    `indices` (B,) -> scores (B,); (B, K) -> (B, K); None -> each image's top-1 class."""
    if indices is not None:
        indices = classes(indices).indices
    return Finer(indices, comparisons, alpha)


@jax.tree_util.register_pytree_node_class
class Function:
    """A plain function used as a target, carried as a static (hashed) part of the pytree."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, outputs):
        return self.fn(outputs)

    def tree_flatten(self):
        return (), self.fn

    @classmethod
    def tree_unflatten(cls, fn, children):
        return cls(fn)


def is_function(targets) -> bool:
    """Whether `targets` is a target function (or target object) rather than class indices."""
    return callable(targets) and not hasattr(targets, "shape")


def as_target(targets, batch: int, score: str = "softmax", num_classes: int | None = None) -> Callable:
    """The target object for what a user passed as `targets`: None or integer indices (B,) / (B, K)
    become `classes(targets, score)` (their range checked here, on the host, before any tracing);
    a target object (a pytree) is returned as it is, any other callable wrapped as `Function`."""
    if is_function(targets):
        return Function(targets) if jax.tree.leaves(targets) == [targets] else targets
    if targets is not None and not isinstance(targets, (np.ndarray, jax.Array, list, tuple)):
        raise TypeError(
            f"targets must be class indices, None or a function of the outputs; got {type(targets).__name__}"
        )
    if targets is not None:
        check_class_range(targets, batch, num_classes)
    return classes(targets, score)


def check_class_range(indices, batch: int, num_classes: int | None) -> None:
    """A ValueError for indices that are not (B,) / (B, K) integers in 0..num_classes - 1 (values
    are checked where they are concrete)."""
    shape = np.shape(indices)
    if len(shape) not in (1, 2) or shape[0] != batch:
        raise ValueError(f"targets must have shape ({batch},) or ({batch}, K); got {tuple(shape)}")
    if not is_concrete(indices):
        return
    host = np.asarray(indices)
    if not np.issubdtype(host.dtype, np.integer):
        raise ValueError(f"targets must be integer class indices; got dtype {host.dtype}")
    if host.size:
        low, high = int(host.min()), int(host.max())
        # without a count (the model declares none), methods and metrics check again against its outputs
        if num_classes is not None and (low < 0 or high >= num_classes):
            raise ValueError(f"target class {low if low < 0 else high} is out of range 0..{num_classes - 1}")

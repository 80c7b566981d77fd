"""DeepLIFT with the rescale rule (Shrikumar et al., ICML 2017), as captum 0.9's `DeepLift`:

    attribution = (x - x') * m(x, x'),   map = normalise( max_c |attribution| )

where m is the input gradient of the score with every ReLU's derivative replaced by its multiplier

    (relu(z) - relu(z')) / (z - z')     (z, z': the ReLU's input for x and for the reference x')

and by the ReLU's own derivative where |z - z'| < 1e-10 (captum's `eps`). The model runs once on
the batch [x; x'] (2B images), so each ReLU sees both inputs at once; its backward pass is a
`jax.custom_vjp` giving both halves the same multiplier. The ReLUs are reached as
`guided_backprop` reaches them (`jax.nn.relu` / `flax.linen.relu` / `flax.nnx.relu` swapped while
the method traces the model; see that module for what it cannot reach), and the score is that of
the first half. Every other operation keeps its ordinary derivative: linear layers are exact
for DeepLIFT anyway, while max pooling, LRN and other non-linearities are not rescaled (captum
also has a rule for `nn.MaxPool` modules; it applies its ReLU rule only to `nn.ReLU` modules).

With ReLUs as the only non-linearities the attributions add up to the difference of the scores
("summation to delta"): sum attribution = S(x) - S(x'), exactly.

`baseline` x' is as for `integrated_gradients`: "black" (0, captum's default), "mean" (the model's declared `mean_pixel` (GoogLeNet's: the Caffe RGB mean), else each image's own per-channel mean), a number or a per-channel tuple. The map reduces the attribution over channels (`reduce`,
default "abs_max") and rescales it; `Explanation.gradients` holds the multipliers
``(B, [K,] *spatial, C)``, so the attribution is (images - baseline) * gradients.

The model must apply its ReLUs to the whole batch: a ReLU whose input does not have 2B as leading
axis (a model that `jax.vmap`s itself over images, as Equinox models often do) raises ValueError.
The model must not mix images (BatchNorm in training mode would mix x with x').

Differentiable with respect to `variables` and `images`, under `jit`: jax.grad differentiates the
rescaled backward pass as written (as for `guided_backprop`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.methods.base import Explanation, register
from gradcam_jax._src.methods.common import baseline_pixels, input_gradients, reduce_channels
from gradcam_jax._src.methods.guided_backprop import swapped_relus

EPS = 1e-10  # captum's: below this input difference a ReLU keeps its own derivative


@jax.custom_vjp
def rescale_relu(z):
    """ReLU of `z` = [z; z'] (2B, ...) whose backward pass is DeepLIFT's rescale rule."""
    return jnp.maximum(z, 0)


def _rescale_relu_fwd(z):
    return jnp.maximum(z, 0), z


def _rescale_relu_bwd(z, dy):
    actual, reference = jnp.split(z, 2)
    delta_in = actual - reference
    close = jnp.abs(delta_in) < EPS
    # the safe denominator keeps the unused branch finite, so jax.grad of this rule is finite too
    multiplier = (jnp.maximum(actual, 0) - jnp.maximum(reference, 0)) / jnp.where(close, 1, delta_in)
    own = (z > 0).astype(dy.dtype)  # ReLU's derivative (0 at 0, as jax.nn.relu and torch)
    both = lambda a: jnp.concatenate([a, a])  # noqa: E731
    return (dy * jnp.where(both(close), own, both(multiplier)).astype(dy.dtype),)


rescale_relu.defvjp(_rescale_relu_fwd, _rescale_relu_bwd)


def paired_relu(pairs: int):
    """`rescale_relu` for a model run on 2 x `pairs` images; ValueError for any other leading axis."""

    def relu(z):
        if jnp.ndim(z) == 0 or jnp.shape(z)[0] != 2 * pairs:
            raise ValueError(
                f"deeplift: a ReLU got an input of shape {jnp.shape(z)}, not the batch of {2 * pairs} "
                "(images and references); the model must apply its ReLUs to the whole batch, not per image "
                "under jax.vmap"
            )
        return rescale_relu(z)

    return relu


@register("deeplift", score="logit")
def deeplift(model, variables, images, targets=None, *, baseline="black", reduce: str = "abs_max") -> Explanation:
    """DeepLIFT (rescale rule) maps of `targets` (B,) or (B, K) (None: top-1) at input resolution;
    see the module doc. images: float ``(B, *spatial, C)``. Returns an `Explanation` with map
    ``(B, [K,] *spatial)`` float32 in [0, 1] and the multipliers ``(B, [K,] *spatial, C)``."""
    images = maps.float32_or_wider(images)
    start = baseline_pixels(baseline, images, model)
    n = images.shape[0]
    reference = jnp.broadcast_to(start.astype(images.dtype), images.shape)

    def with_reference(variables, x):
        """The model on [x; x'], its outputs for x: the scores differentiated are those of x."""
        outputs = taps.call_model(model, variables, jnp.concatenate([x, reference]))
        return jax.tree.map(lambda a: a[:n] if jnp.ndim(a) and jnp.shape(a)[0] == 2 * n else a, outputs)

    with swapped_relus(paired_relu(n), "deeplift"):
        g = input_gradients(with_reference, variables, images, targets)
    attributions = (images - start)[:, None] * g.gradients
    return Explanation(
        maps.finish(reduce_channels(attributions, reduce), images.shape[1:-1]), g.scores, g.target, None, g.gradients
    )

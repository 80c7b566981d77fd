"""FullGrad (Srinivas & Fleuret, NeurIPS 2019), as pytorch-grad-cam 1.5.7's `FullGrad`: the input
gradient and the gradient at every biased convolution and batch norm, each times what it
multiplies, summed:

    map = normalise( sum_c N(|x_c * dS/dx_c|) + sum_layers U( sum_c N(|b_c * dS/dz_c|) ) )

where z is a layer's output, b its bias (a batch norm's folded with its running statistics,
beta - mean * gamma / sqrt(var + eps), as pytorch-grad-cam's `get_bias_data`), N min-max scales
one channel over its positions (constant -> 0) and U upsamples a layer's sum to the input size, linearly along each axis (cv2's
bilinear in 2-D, as pytorch-grad-cam's). Each channel is scaled before the resize, and a linear
resize commutes with the channel sum, so one resize per layer gives the original's sum of resized
channels. Scores are logits (`score="logit"`, pytorch-grad-cam's `ClassifierOutputTarget`). There
is no layer to choose: every convolution with a bias is read (`taps.bias_layers`: linen `nn.Conv`,
NNX `nnx.Conv`, Equinox `eqx.nn.Conv`, 1-D, 2-D or 3-D; a layer called twice is read at its first
call), and every batch norm with a bias over the channel (last) axis, as pytorch-grad-cam reads
`BatchNorm2d`: linen `nn.BatchNorm` and NNX `nnx.BatchNorm` (Equinox keeps batch-norm statistics in
a separate State, so its batch norms are not read).

Cost: one forward pass and one backward pass per target column, like `saliency`.

Differentiable with respect to `variables` and `images` almost everywhere (the absolute values
and the min-max scalings are piecewise smooth).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradcam_jax._src import maps
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.gradients import column_cotangents, resolved_scores
from gradcam_jax._src.methods.base import Explanation, register


def channel_sum(contributions: jax.Array) -> jax.Array:
    """``(B, K, *s, C)`` -> ``(B, K, *s)``: each channel's |contribution| min-max scaled over its
    positions, then summed over channels."""
    moved = jnp.moveaxis(jnp.abs(maps.float32_or_wider(contributions)), -1, 2)  # (B, K, C, *s)
    return maps.rescale(moved, moved.ndim - 3).sum(axis=2)


@register("fullgrad", score="logit")
def fullgrad(model, variables, images, targets=None) -> Explanation:
    """FullGrad maps of `targets` (B,) or (B, K) (None: top-1); see the module doc.
    images: ``(B, *spatial, C)``. Returns an `Explanation` with map ``(B, [K,] *spatial)`` float32
    in [0, 1]."""
    biases = taps.bias_layers(model, variables, images)
    if not biases:
        raise ValueError(
            "fullgrad reads convolutions and batch norms with a bias (nn.Conv, nnx.Conv, eqx.nn.Conv, "
            "nn.BatchNorm, nnx.BatchNorm); the model has none"
        )
    shapes = taps.layer_shapes(model, variables, images)
    size = images.shape[1:-1]

    def every_score(x, deltas):  # a zero added to each convolution's output, to differentiate
        with taps.tap(list(deltas), deltas):
            outputs = taps.call_model(model, variables, x)
        return resolved_scores(targets, outputs, x.shape[0])

    zeros = {path: jnp.zeros(shapes[path].shape, shapes[path].dtype) for path in biases}
    scores, vjp, target = jax.vjp(every_score, images, zeros, has_aux=True)
    input_gradients, layer_gradients = jax.vmap(vjp, out_axes=1)(column_cotangents(scores))
    total = channel_sum(images[:, None] * input_gradients)
    for path, bias in biases.items():
        layer = channel_sum(bias * layer_gradients[path])  # (B, K, *s)
        total = total + jax.image.resize(layer, (*layer.shape[:2], *size), method="linear")
    return Explanation(maps.finish(total, size), scores, target)

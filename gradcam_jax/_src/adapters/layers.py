"""What a submodule is, for the methods that treat layers by type (LRP, `relevance`): a linear layer
whose parameters can be read and replaced, a batch norm, a layer norm, or something else.

Each model library names these differently; this module is the one place that knows them:
linen `nn.Dense` / `nn.Conv` / `nn.BatchNorm` / `nn.LayerNorm` / `nn.RMSNorm`, their NNX twins, Equinox
`eqx.nn.Linear` / `eqx.nn.Conv` / `eqx.nn.BatchNorm` / `eqx.nn.LayerNorm` / `eqx.nn.RMSNorm`, and Keras
`Dense` / `Conv*D` / `BatchNormalization` / `LayerNormalization` / `RMSNormalization`. A module is
classified from the object a hook sees (`hooks.seeing()`), inside the model's trace.

`Linear.apply(kernel, bias, x)` runs the very layer with other parameters (the rules of LRP replace
the kernel by its positive part, its square, ...): the layer's own code, so padding, strides, dilation,
groups and layout are the model's. The attention's projections are linear layers too: linen
`nn.DenseGeneral` / `nn.Einsum`, NNX `nnx.LinearGeneral` / `nnx.Einsum`, Keras `EinsumDense`.

`norm(module)` reads a LayerNorm's or RMSNorm's parameters (`Norm`), for AttnLRP's rule on them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

LINEAR, BATCH_NORM, LAYER_NORM, OTHER = "linear", "batch_norm", "layer_norm", "other"

# Parameter-free layers that normalise (not elementwise): LRP passes relevance through them, as zennit's
# composites map normalisations to `Pass`; matched by class name, the models' own classes included.
NORMALISATION_NAMES = ("LRN", "LocalResponseNorm", "LocalResponseNormalization")


class Linear(NamedTuple):
    """A Dense or Conv layer (1-D, 2-D or 3-D) as seen in the trace: its kernel, its bias (None
    without one) shaped to broadcast against the layer's output, and `apply(kernel, bias, x)`, the
    layer with those parameters (bias None: zero; a bias shaped as `bias` is)."""

    kernel: jax.Array
    bias: jax.Array | None
    apply: Callable[[jax.Array, jax.Array | None, jax.Array], jax.Array]


def type_name(module) -> str:
    """The class name of a submodule ("Conv", "BatchNorm", "LRN"), as errors and composites name types."""
    return type(module).__name__


def kind(module) -> str:
    """LINEAR, BATCH_NORM, LAYER_NORM or OTHER for a submodule of any supported library."""
    if isinstance(module, nn.Module):
        if isinstance(module, (nn.Dense, nn.Conv, nn.DenseGeneral, nn.Einsum)):
            return LINEAR
        if isinstance(module, nn.BatchNorm):
            return BATCH_NORM
        if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            return LAYER_NORM
        return OTHER
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(module, nnx.Module):
        if isinstance(module, (nnx.Linear, nnx.Conv, nnx.LinearGeneral, nnx.Einsum)):
            return LINEAR
        if isinstance(module, nnx.BatchNorm):
            return BATCH_NORM
        if isinstance(module, (nnx.LayerNorm, nnx.RMSNorm)):
            return LAYER_NORM
        return OTHER
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(module, eqx.Module):
        if isinstance(module, (eqx.nn.Linear, eqx.nn.Conv)) and not isinstance(module, eqx.nn.ConvTranspose):
            return LINEAR
        if isinstance(module, eqx.nn.BatchNorm):
            return BATCH_NORM
        if isinstance(module, (eqx.nn.LayerNorm, eqx.nn.RMSNorm)):
            return LAYER_NORM
        return OTHER
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(module, keras.layers.Layer):
        layers = keras.layers
        if isinstance(
            module, (layers.Dense, layers.EinsumDense, layers.Conv1D, layers.Conv2D, layers.Conv3D)
        ) and not isinstance(module, (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)):
            return LINEAR
        if isinstance(module, layers.BatchNormalization):
            return BATCH_NORM
        if isinstance(module, (layers.LayerNormalization, *_keras_rms(layers))):
            return LAYER_NORM
    return OTHER


def _keras_rms(layers) -> tuple[type, ...]:
    return (layers.RMSNormalization,) if hasattr(layers, "RMSNormalization") else ()


def is_normalisation(module) -> bool:
    """A parameter-free normalisation (an LRN) by its class name."""
    return type_name(module) in NORMALISATION_NAMES


def has_parameters(module) -> bool:
    """Whether a submodule holds parameters of its own (not only through its submodules): a layer
    that a rule must cover. Containers (a block, a Sequential) hold none of their own."""
    if isinstance(module, nn.Module):
        params = module.variables.get("params", {}) if module.scope is not None else {}
        return any(not isinstance(v, dict) for v in params.values())
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(module, nnx.Module):
        return any(isinstance(v, nnx.Param) for v in vars(module).values())
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(module, eqx.Module):
        return any(eqx.is_array(v) for v in vars(module).values())
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(module, keras.layers.Layer):
        return bool(getattr(module, "_trainable_variables", None) or getattr(module, "_non_trainable_variables", None))
    return False


def linear(module) -> Linear:
    """The `Linear` view of a layer `kind` calls LINEAR, inside the model's trace (a Keras layer's
    fused activation left out of `apply`: `fused_activation`)."""
    if isinstance(module, nn.Module):
        params = module.variables["params"]
        unbound = module.clone(parent=None)

        def apply_linen(kernel, bias, x):
            new = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
            if module.use_bias and bias is None:
                new["bias"] = jnp.zeros_like(params["bias"])
            return jnp.asarray(unbound.apply({"params": new}, x))

        return Linear(params["kernel"], params.get("bias"), apply_linen)
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(module, nnx.Module):
        graphdef, state = nnx.split(module)

        def apply_nnx(kernel, bias, x):
            copy = nnx.merge(graphdef, jax.tree.map(lambda a: a, state))
            set_nnx(copy.kernel, kernel)
            if copy.bias is not None:
                set_nnx(copy.bias, jnp.zeros_like(copy.bias[...]) if bias is None else bias)
            return copy(x)

        bias = module.bias[...] if module.bias is not None else None
        return Linear(module.kernel[...], bias, apply_nnx)
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(module, eqx.Module):

        def apply_eqx(kernel, bias, x):
            if module.bias is None:
                return eqx.tree_at(lambda m: m.weight, module, kernel)(x)
            bias = jnp.zeros_like(module.bias) if bias is None else bias
            return eqx.tree_at(lambda m: (m.weight, m.bias), module, (kernel, bias))(x)

        return Linear(module.weight, module.bias, apply_eqx)
    # Keras: inside `stateless_call` a variable's `.value` is the value being traced
    use_bias = module.bias is not None
    bias = module.bias.value if use_bias else None
    if bias is not None and getattr(module, "data_format", "channels_last") == "channels_first":
        bias = jnp.reshape(bias, (-1, *[1] * (len(module.kernel.shape) - 2)))  # (C, 1, 1): against (B, C, H, W)

    fused = fused_activation(module)

    def apply_keras(kernel, bias, x):
        if fused:  # the linear map alone: the rules act on it, the activation after it passes relevance
            keras = sys.modules["keras"]
            y = module.convolution_op(x, kernel) if hasattr(module, "convolution_op") else keras.ops.matmul(x, kernel)
            return y if bias is None else y + bias
        if use_bias:
            weights = [kernel, jnp.zeros_like(module.bias.value) if bias is None else bias.reshape(-1)]
        else:
            weights = [kernel]
        return module.stateless_call(weights, [], x)[0]

    return Linear(module.kernel.value, bias, apply_keras)


def fused_activation(module) -> bool:
    """Whether a linear layer applies an activation of its own (Keras `Conv2D(..., activation="relu")`):
    its output is then not the linear map's, so `Linear.apply` leaves the activation out and no batch
    norm after it is folded into it."""
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(module, keras.layers.Layer):
        return False
    activation = getattr(module, "activation", None)
    return activation is not None and activation is not keras.activations.linear


def set_nnx(variable, value) -> None:
    """Set an NNX variable: `set_value` where flax has it (0.12 deprecates `.value`), else `.value`
    (flax 0.10, whose `var[...] = x` assigns into an immutable array)."""
    if hasattr(variable, "set_value"):
        variable.set_value(value)
    else:
        variable.value = value


def first_output(out):
    """A submodule's output array: `y` of an Equinox `(y, state)`, else `out` itself."""
    return out[0] if isinstance(out, tuple) else out


def affine(module, args: tuple, y_shape, dtype) -> tuple[jax.Array, jax.Array]:
    """(scale, shift), each of the output's shape, of a batch norm in inference mode, an elementwise
    affine map y = scale * x + shift: read by running the layer on zeros and ones (any library's
    parameters and statistics, as it applies them)."""
    if isinstance(module, nn.Module):  # a bound linen module cannot be called again inside its own call
        return _linen_batch_norm(module, y_shape, dtype)
    rest = args[1:]  # an Equinox batch norm's state
    zero = first_output(module(jnp.zeros(y_shape, dtype), *rest))
    one = first_output(module(jnp.ones(y_shape, dtype), *rest))
    return one - zero, zero


class Norm(NamedTuple):
    """A LayerNorm (`centred`) or RMSNorm as seen in the trace, for an input `x`: y = scale * (x - mean) /
    sqrt(var + epsilon) + bias over `axes` of x (RMSNorm: no mean), scale and bias shaped to broadcast
    against x (1 and 0 where the layer has none)."""

    scale: jax.Array
    bias: jax.Array
    epsilon: float
    axes: tuple[int, ...]
    centred: bool


def _along(value, x, axes: tuple[int, ...], default: float) -> jax.Array:
    """A parameter over the feature `axes` of x, reshaped to broadcast against x (None: `default`)."""
    if value is None:
        return jnp.asarray(default, x.dtype)
    value = jnp.asarray(value)
    if value.ndim == x.ndim:
        return value
    features = {a % x.ndim for a in axes}
    return value.reshape([x.shape[a] if a in features else 1 for a in range(x.ndim)])


def _axes(axes, ndim: int) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((axes,) if isinstance(axes, int) else axes))


def norm(module, x: jax.Array) -> Norm:
    """The `Norm` view of a layer `kind` calls LAYER_NORM, on its input `x`, inside the model's trace."""
    name = type_name(module)
    centred = "RMS" not in name
    if isinstance(module, nn.Module):
        params = module.variables.get("params", {})
        reduce, features = _axes(module.reduction_axes, x.ndim), _axes(module.feature_axes, x.ndim)
        scale = params.get("scale") if module.use_scale else None
        bias = params.get("bias") if centred and module.use_bias else None
        return Norm(_along(scale, x, features, 1.0), _along(bias, x, features, 0.0), module.epsilon, reduce, centred)
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(module, nnx.Module):
        reduce, features = _axes(module.reduction_axes, x.ndim), _axes(module.feature_axes, x.ndim)
        scale = module.scale[...] if getattr(module, "scale", None) is not None else None
        bias = module.bias[...] if centred and getattr(module, "bias", None) is not None else None
        return Norm(_along(scale, x, features, 1.0), _along(bias, x, features, 0.0), module.epsilon, reduce, centred)
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(module, eqx.Module):  # called per token: normalises all of x
        every = tuple(range(x.ndim))
        scale = module.weight if module.use_weight else None
        bias = module.bias if module.use_bias else None
        return Norm(_along(scale, x, every, 1.0), _along(bias, x, every, 0.0), module.eps, every, centred)
    # Keras LayerNormalization / RMSNormalization: inside `stateless_call` a variable's `.value` is traced
    axes = _axes(module.axis, x.ndim)
    scale = getattr(module, "gamma", None) if centred else getattr(module, "scale", None)
    bias = getattr(module, "beta", None) if centred else None
    scale, bias = (None if v is None else v.value for v in (scale, bias))
    return Norm(_along(scale, x, axes, 1.0), _along(bias, x, axes, 0.0), module.epsilon, axes, centred)


def _linen_batch_norm(module, y_shape, dtype) -> tuple[jax.Array, jax.Array]:
    """(scale, shift) of a linen `nn.BatchNorm` in inference mode, from its running statistics by
    its formula (scale * (x - mean) / sqrt(var + epsilon) + bias). Calling the module again from the
    interceptor that sees its output re-creates its variables (linen's NameInUseError), and an
    unbound copy would miss a `use_running_average` given at call time."""
    params = module.variables.get("params", {})
    stats = module.variables["batch_stats"]
    axes = (module.axis,) if isinstance(module.axis, int) else tuple(module.axis)
    axes = tuple(a % len(y_shape) for a in axes)
    shape = tuple(n if i in axes else 1 for i, n in enumerate(y_shape))

    def feature(a):
        return jnp.reshape(jnp.asarray(a, dtype), shape)

    scale = jax.lax.rsqrt(feature(stats["var"]) + module.epsilon)
    if module.use_scale:
        scale = scale * feature(params["scale"])
    shift = -feature(stats["mean"]) * scale
    if module.use_bias:
        shift = shift + feature(params["bias"])
    return jnp.broadcast_to(scale, y_shape), jnp.broadcast_to(shift, y_shape)

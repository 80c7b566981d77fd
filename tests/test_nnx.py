"""Flax NNX models through the same functions: `(graphdef, state) = nnx.split(module)` in place of
linen's `(model, variables)`. The reference is the model's linen twin with the same weights, tapped
by linen's `intercept_methods` (a different mechanism from the NNX class patching under test)."""

from __future__ import annotations

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradcam_jax as gj
from gradcam_jax._src.adapters import taps
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS

# --- the NNX model, as a user writes it (no sow, no perturb) -------------------------------------


class DoubledConv(nnx.Conv):
    """A subclass whose `__call__` goes through `super().__call__`: tapped once, at the outer call."""

    def __call__(self, x):
        return 2.0 * super().__call__(x)


class NNXBlock(nnx.Module):
    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.conv = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(channels, rngs=rngs)

    def __call__(self, x):
        return x + nnx.relu(self.bn(self.conv(x)))


class NNXCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.stem = DoubledConv(3, 8, (3, 3), rngs=rngs)
        self.blocks = getattr(nnx, "List", list)([NNXBlock(8, rngs), NNXBlock(8, rngs)])  # nnx.List: flax >= 0.12
        self.head = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


def assign(variable, value) -> None:
    """`variable[...] = value` (flax >= 0.11; its `.value` setter is deprecated), `.value = value` before."""
    try:
        variable[...] = value
    except TypeError:  # flax 0.10: item assignment reaches the immutable array
        variable.value = value


def make_nnx(seed: int) -> NNXCNN:
    """An NNX model in inference mode, with non-trivial batch-norm statistics."""
    model = NNXCNN(nnx.Rngs(seed))
    keys = iter(jax.random.split(jax.random.key(seed + 100), 8))
    for block in model.blocks:
        assign(block.bn.mean, 0.3 * jax.random.normal(next(keys), (8,)))
        assign(block.bn.var, jax.random.uniform(next(keys), (8,), minval=0.5, maxval=2.0))
        assign(block.bn.scale, jax.random.uniform(next(keys), (8,), minval=0.5, maxval=1.5))
        assign(block.bn.bias, 0.1 * jax.random.normal(next(keys), (8,)))
    model.eval()
    return model


# --- its linen twin --------------------------------------------------------------------------------


class LinenDoubled(nn.Module):
    @nn.compact
    def __call__(self, x):
        return 2.0 * nn.Conv(8, (3, 3), name="conv")(x)


class LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x + nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(8, (3, 3), name="conv")(x)))


class LinenCNN(nn.Module):
    def setup(self):
        self.stem = LinenDoubled()
        self.blocks = [LinenBlock(), LinenBlock()]  # paths blocks_0, blocks_1
        self.head = nn.Dense(5)

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


def linen_twin(module: NNXCNN):
    """(LinenCNN(), variables) holding `module`'s weights."""
    dense = lambda m: {"kernel": m.kernel[...], "bias": m.bias[...]}  # noqa: E731
    params = {"stem": {"conv": dense(module.stem)}, "head": dense(module.head)}
    stats = {}
    for i in range(2):
        bn = module.blocks[i].bn
        params[f"blocks_{i}"] = {
            "conv": dense(module.blocks[i].conv),
            "bn": {"scale": bn.scale[...], "bias": bn.bias[...]},
        }
        stats[f"blocks_{i}"] = {"bn": {"mean": bn.mean[...], "var": bn.var[...]}}
    return LinenCNN(), {"params": params, "batch_stats": stats}


def twin_path(path: str) -> str:
    return path.replace("blocks/", "blocks_")


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(7), (2, 10, 10, 3))


@pytest.fixture(scope="module")
def nnx_model():
    return make_nnx(0)


# --- tests -----------------------------------------------------------------------------------------


def test_linen_twin_is_the_same_network(nnx_model, images):
    model, variables = linen_twin(nnx_model)
    np.testing.assert_allclose(model.apply(variables, images), nnx_model(images), atol=1e-5)


@pytest.mark.oldest
@pytest.mark.parametrize("layer", ["stem", "blocks/0/conv", "blocks/1", "blocks/1/bn"])
def test_grad_cam_equals_linen_twin(nnx_model, images, layer):
    graphdef, state = nnx.split(nnx_model)
    twin, variables = linen_twin(nnx_model)
    targets = np.array([[0, 3], [4, 1]], np.int32)
    got = gj.grad_cam(graphdef, state, images, targets, layer=layer)
    want = gj.grad_cam(twin, variables, images, targets, layer=twin_path(layer))
    np.testing.assert_allclose(got.activations, want.activations, atol=1e-5)
    np.testing.assert_allclose(got.gradients, want.gradients, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
    np.testing.assert_allclose(got.map, want.map, atol=1e-5)
    assert got.map.shape == (2, 2, 10, 10)


@pytest.mark.oldest
def test_every_method_runs_on_nnx_like_on_linen(nnx_model, images):
    """Every registered method reaches the model through `taps`, so NNX needs nothing more."""
    graphdef, state = nnx.split(nnx_model)
    twin, variables = linen_twin(nnx_model)
    for name, method in sorted(gj.METHODS.items()):
        if name in ATTENTION_METHODS:  # a CNN: tests/test_transformers.py has an NNX ViT
            continue
        accepted = inspect.signature(method).parameters
        options = {"layer": "blocks/1"} if "layer" in accepted else {}
        options |= {"patch": 4} if "patch" in accepted else {}  # 9 patches of the 10 x 10 images
        options |= {"samples": 4} if "samples" in accepted else {}
        options |= {"segmentation": "grid"} if "segmentation" in accepted else {}  # image_lime, without scikit-image
        got = method(graphdef, state, images, **options)
        want = method(twin, variables, images, **{k: twin_path(v) if k == "layer" else v for k, v in options.items()})
        np.testing.assert_allclose(got.map, want.map, atol=1e-4, err_msg=name)


def test_outer_call_of_a_subclass_is_tapped(nnx_model, images):
    """`stem` is DoubledConv: its output is twice the convolution that `super().__call__` returns."""
    _, activation = taps.forward_with_layer(*nnx.split(nnx_model), images, "stem")
    np.testing.assert_allclose(activation, 2.0 * nnx.Conv.__call__(nnx_model.stem, images), atol=1e-6)


def test_paths_in_call_order_and_unknown_layer(nnx_model, images):
    graphdef, state = nnx.split(nnx_model)
    shapes = gj.layer_shapes(graphdef, state, images)
    assert list(shapes) == [
        "stem",
        "blocks/0/conv",
        "blocks/0/bn",
        "blocks/0",
        "blocks/1/conv",
        "blocks/1/bn",
        "blocks/1",
        "head",
    ]
    assert shapes["blocks/1"].shape == (2, 10, 10, 8)
    assert taps.resolve_layer(graphdef, state, images, "blocks-1-conv")[0] == "blocks/1/conv"
    with pytest.raises(gj.UnknownLayerError, match="blocks/0/conv, blocks/0/bn"):
        gj.grad_cam(graphdef, state, images, layer="blocks/2")


def test_classes_restored_and_module_untouched(images):
    module = make_nnx(1)
    before = nnx.to_pure_dict(nnx.state(module))
    calls = {cls: cls.__dict__.get("__call__") for cls in (nnx.Conv, DoubledConv, NNXBlock, nnx.BatchNorm, nnx.Linear)}
    gj.grad_cam(*nnx.split(module), images, layer="blocks/0/conv")
    assert {cls: cls.__dict__.get("__call__") for cls in calls} == calls
    after = nnx.to_pure_dict(nnx.state(module))
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_same_architecture_compiles_once_and_weights_are_not_baked_in(images):
    a, b = make_nnx(2), make_nnx(3)
    first = gj.grad_cam(*nnx.split(a), images, layer="blocks/1")
    size = gj.grad_cam.jitted._cache_size()
    second = gj.grad_cam(*nnx.split(b), images, layer="blocks/1")
    assert gj.grad_cam.jitted._cache_size() == size  # equal GraphDefs share the compiled code
    assert not np.allclose(first.map, second.map)
    twin, variables = linen_twin(b)
    np.testing.assert_allclose(second.map, gj.grad_cam(twin, variables, images, layer="blocks_1").map, atol=1e-5)


def test_unsplit_module_is_a_clear_error(nnx_model, images):
    with pytest.raises(TypeError, match="nnx.split"):
        gj.grad_cam(nnx_model, None, images, layer="stem")
    with pytest.raises(TypeError, match="nnx.split"):
        gj.top_k(nnx_model, None, images)


def test_tuple_output_and_plain_call_without_taps(images):
    class WithExtra(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            features = nnx.relu(self.conv(x))
            return self.head(features.mean(axis=(1, 2))), {"features": features}

    module = WithExtra(nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    np.testing.assert_allclose(taps.apply_logits(graphdef, state, images), module(images)[0], atol=1e-6)
    result = gj.grad_cam(graphdef, state, images, layer="conv")
    assert result.map.shape == (2, 10, 10) and bool(jnp.isfinite(result.map).all())

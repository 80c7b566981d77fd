"""Linen blocks lifted by `nn.vmap` (issue 26): an ensemble whose members are one block vmapped over its
parameters, a block vmapped over the batch (one image at a time), a shared block vmapped over a stack
of views of the batch, and a vmap with an `axis_name`.

Grad-CAM is checked against references written here: the model's forward pass by hand from its own
weights (convolutions with `lax.conv_general_dilated`, the head a matrix product), a perturbation added
at the layer, differentiated with `jax.grad`. (`nn.scan` and `nn.remat` are tested on big_vision's ViT,
tests/test_big_vision.py.)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src import maps, patching
from gradcam_jax._src.adapters import taps

MEMBERS, SIZE = 3, 8


class Member(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(6, (3, 3), name="conv")(x))


def lifted(over: str, axis_name: str | None = None):
    """`Member` lifted by nn.vmap over the ensemble's parameters ("params"), the batch ("batch") or
    a stack of views ("views")."""
    if over == "params":
        return nn.vmap(
            Member, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, axis_size=MEMBERS,
            axis_name=axis_name,
        )  # fmt: skip
    return nn.vmap(Member, variable_axes={"params": None}, split_rngs={"params": False}, in_axes=0)


class Net(nn.Module):
    over: str
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="stem")(x))
        if self.over == "params":  # an ensemble: (members, B, h, w, 6), each member's logits averaged
            y = lifted("params", self.axis_name)(name="members")(x)
            return nn.Dense(5, name="head")(y.mean(axis=(2, 3))).mean(axis=0)
        if self.over == "views":  # the batch and its mirror image, one shared block over both
            y = lifted("views")(name="views")(jnp.stack([x, x[:, :, ::-1]])).mean(axis=0)
        else:
            y = lifted("batch")(name="block")(x)  # each image on its own: (h, w, 4) in the block
        return nn.Dense(5, name="head")(y.mean(axis=(1, 2)))


def conv(p, x):
    return (
        jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + p["bias"]
    )


def built(over: str, axis_name: str | None = None):
    model = Net(over, axis_name)
    images = jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3))
    variables = model.init(jax.random.key(0), images)
    return model, variables, images


def hand_grad_cam(logits_with, activation):
    """Grad-CAM by hand: the softmax score of each image's top class, `jax.grad` w.r.t. a delta added
    at the (B, h, w, C) `activation`; channel weights the gradients' spatial sums (MATLAB's)."""
    zero = jnp.zeros_like(activation)
    classes = jnp.argmax(logits_with(zero), axis=-1)
    score = lambda d: jax.nn.softmax(logits_with(d))[jnp.arange(len(classes)), classes].sum()  # noqa: E731
    gradients = jax.grad(score)(zero)
    raw = jnp.einsum("bhwc,bc->bhw", activation, gradients.sum(axis=(1, 2)))
    return np.asarray(maps.finish(raw, (SIZE, SIZE))), gradients


def check(result, activation, gradients, expected):
    np.testing.assert_allclose(result.activations, activation, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.gradients, gradients, atol=1e-4 * float(jnp.abs(gradients).max()))
    np.testing.assert_allclose(result.map, expected, atol=1e-5)


def test_ensemble_members_by_index_and_layer_none_equal_hand_reference():
    model, variables, images = built("params")
    p = variables["params"]
    member = lambda m: jax.tree.map(lambda a: a[m], p["members"]["conv"])  # noqa: E731
    stem = jax.nn.relu(conv(p["stem"], images))

    def logits(stem_out, delta_at=None, delta=0.0):
        per_member = []
        for m in range(MEMBERS):
            pre = conv(member(m), stem_out) + (delta if m == delta_at else 0.0)
            per_member.append(jax.nn.relu(pre).mean(axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"])
        return jnp.mean(jnp.stack(per_member), axis=0)

    np.testing.assert_allclose(logits(stem), model.apply(variables, images), atol=1e-5)  # the real vmap
    activation = conv(member(1), stem)
    expected, gradients = hand_grad_cam(lambda d: logits(stem, 1, d), activation)
    check(gj.grad_cam(model, variables, images, layer="members[1]/conv"), activation, gradients, expected)
    shapes = gj.layer_shapes(model, variables, images)
    assert [p for p in shapes if p.startswith("members")] == [
        f"members[{m}]{sub}" for m in range(MEMBERS) for sub in ("/conv", "")
    ]
    assert all(shapes[f"members[{m}]"].shape == (2, SIZE, SIZE, 6) for m in range(MEMBERS))

    # layer=None: the last map that is the model's (the stem's convolution), not one of its parallel members
    assert taps.default_layer(model, variables, images) == "stem"
    pre = conv(p["stem"], images)
    expected, gradients = hand_grad_cam(lambda d: logits(jax.nn.relu(pre + d)), pre)
    check(gj.grad_cam(model, variables, images), pre, gradients, expected)
    with pytest.raises(gj.UnknownLayerError, match=r"runs under nn.vmap \(3 .*\): name one, members\[0\]") as caught:
        gj.grad_cam(model, variables, images, layer="members")
    assert "\n" not in str(caught.value)
    assert patching.open_patches() == []


def test_block_vmapped_over_the_batch_equals_hand_reference():
    model, variables, images = built("batch")
    p = variables["params"]
    stem = jax.nn.relu(conv(p["stem"], images))
    activation = conv(p["block"]["conv"], stem)
    logits_with = lambda d: _head(p, jax.nn.relu(activation + d))  # noqa: E731
    np.testing.assert_allclose(logits_with(0.0), model.apply(variables, images), atol=1e-5)
    expected, gradients = hand_grad_cam(logits_with, activation)
    check(gj.grad_cam(model, variables, images, layer="block/conv"), activation, gradients, expected)
    block = jax.nn.relu(activation)  # the block's own output, and layer=None (the last map)
    expected, gradients = hand_grad_cam(lambda d: _head(p, block + d), block)
    check(gj.grad_cam(model, variables, images, layer="block"), block, gradients, expected)
    assert taps.default_layer(model, variables, images) == "block"
    np.testing.assert_allclose(gj.grad_cam(model, variables, images).map, expected, atol=1e-5)


def _head(p, y):
    return y.mean(axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"]


def test_shared_block_over_views_as_long_as_the_batch_is_not_taken_for_it():
    model, variables, images = built("views")  # 2 views of a batch of 2: the vmapped axis is not the batch
    p = variables["params"]
    stem = jax.nn.relu(conv(p["stem"], images))
    views = [stem, stem[:, :, ::-1]]
    activation = conv(p["views"]["conv"], views[1])

    def logits_with(d):
        y = (jax.nn.relu(conv(p["views"]["conv"], views[0])) + jax.nn.relu(activation + d)) / 2
        return _head(p, y)

    np.testing.assert_allclose(logits_with(0.0), model.apply(variables, images), atol=1e-5)
    expected, gradients = hand_grad_cam(logits_with, activation)
    check(gj.grad_cam(model, variables, images, layer="views[1]/conv"), activation, gradients, expected)


def test_vmap_with_an_axis_name_runs_whole_and_says_so():
    model, variables, images = built("params", axis_name="member")
    assert "members[0]/conv" not in gj.layer_shapes(model, variables, images)  # run as jax.vmap, untapped
    with pytest.raises(gj.UnknownLayerError, match=r"inside an nn.vmap with an axis_name.*outside it") as caught:
        gj.grad_cam(model, variables, images, layer="members/conv")
    assert "\n" not in str(caught.value)
    p = variables["params"]  # a layer outside it: the stem, through the real vmap
    pre = conv(p["stem"], images)
    expected, _ = hand_grad_cam(lambda d: _ensemble(p, jax.nn.relu(pre + d)), pre)
    np.testing.assert_allclose(gj.grad_cam(model, variables, images, layer="stem").map, expected, atol=1e-5)


def _ensemble(p, stem_out):
    kernels, biases = p["members"]["conv"]["kernel"], p["members"]["conv"]["bias"]
    outs = [_head(p, jax.nn.relu(conv({"kernel": kernels[m], "bias": biases[m]}, stem_out))) for m in range(MEMBERS)]
    return jnp.mean(jnp.stack(outs), axis=0)

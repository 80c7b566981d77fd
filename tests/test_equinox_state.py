"""Equinox models with state (BatchNorm, `eqx.nn.make_with_state`): `(params, state)` as variables,
the state read in inference mode and never updated, against a hand-written reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj

eqx = pytest.importorskip("equinox")
pytestmark = pytest.mark.oldest


class Net(eqx.Module):
    """Per-image, channel-first, as Equinox's own ResNet examples: conv -> BatchNorm -> conv -> head."""

    conv1: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=k1)
        self.norm = eqx.nn.BatchNorm(6, axis_name="batch")
        self.conv2 = eqx.nn.Conv2d(6, 8, 3, padding=1, key=k2)
        self.head = eqx.nn.Linear(8, 4, key=k3)

    def one_image(self, x, state):  # (C, H, W)
        h = jax.nn.relu(self.conv1(x))
        h, state = self.norm(h, state)
        return self.head(jax.nn.relu(self.conv2(h)).mean(axis=(1, 2))), state

    def __call__(self, images, state):  # (B, H, W, C), as every model here
        one = jax.vmap(self.one_image, in_axes=(0, None), out_axes=(0, None), axis_name="batch")
        return one(images.transpose(0, 3, 1, 2), state)


def running(net):
    """The BatchNorm's running-statistics index (named `ema_state_index` since Equinox 0.12)."""
    return getattr(net.norm, "ema_state_index", None) or net.norm.state_index


@pytest.fixture(scope="module")
def stateful():
    net, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    # running statistics away from 0 and 1, so that inference mode (using them) is what is tested
    rng = np.random.default_rng(0)
    mean, var = jnp.asarray(rng.uniform(0, 1, 6), jnp.float32), jnp.asarray(rng.uniform(0.5, 2, 6), jnp.float32)
    state = state.set(running(net), (mean, var))
    params, static = eqx.partition(net, eqx.is_array)
    images = jax.random.uniform(jax.random.key(1), (2, 10, 10, 3)) * 255
    return net, static, params, state, images


def hand_upper(net, mean, var, a):
    """The network above conv1's output for one channel-first image: BatchNorm by its formula with the
    running statistics, then conv2, ReLU, pool and head."""
    h = jax.nn.relu(a)
    h = (h - mean[:, None, None]) / jnp.sqrt(var[:, None, None] + net.norm.eps)
    h = h * net.norm.weight[:, None, None] + net.norm.bias[:, None, None]
    return net.head(jax.nn.relu(net.conv2(h)).mean(axis=(1, 2)))


def test_stateful_grad_cam_equals_hand_written_reference(stateful):
    net, static, params, state, images = stateful
    mean, var = state.get(running(net))
    before = jax.tree.leaves(state)
    result = gj.grad_cam(static, (params, state), images, [1, 3], layer="conv1", score="logit")

    @jax.jit  # one program, not one compiled op at a time
    def by_hand(image, c):
        a = net.conv1(image.transpose(2, 0, 1))  # (C, h, w)
        logit = lambda a: hand_upper(net, mean, var, a)[c]  # noqa: E731
        return a, logit(a), jax.grad(logit)(a).transpose(1, 2, 0)

    for b, c in enumerate([1, 3]):
        a, logit, gradient = by_hand(images[b], c)
        np.testing.assert_allclose(result.scores[b], logit, rtol=1e-5)
        np.testing.assert_allclose(result.activations[b], a.transpose(1, 2, 0), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(result.gradients[b], gradient, atol=1e-5 * float(jnp.abs(gradient).max()))
        raw = jnp.einsum("hwc,c->hw", a.transpose(1, 2, 0), gradient.mean(axis=(0, 1)))
        raw = (raw - raw.min()) / (raw.max() - raw.min())
        np.testing.assert_allclose(result.map[b], raw, atol=1e-5)  # the layer is at the input resolution
    assert all(x is y for x, y in zip(before, jax.tree.leaves(state)))  # read, never written
    assert gj.occlusion(static, (params, state), images, [1, 3], patch=5, stride=5).map.shape == (2, 10, 10)


def test_state_missing_or_of_the_wrong_type_is_a_clear_error(stateful):
    _, static, params, state, images = stateful
    with pytest.raises(TypeError, match=r"has state .*pass \(params, state\) as variables"):
        gj.grad_cam(static, params, images, layer="conv1")
    with pytest.raises(TypeError, match=r"the state an eqx.nn.State .*got a dict as the state"):
        gj.grad_cam(static, (params, {"mean": 0}), images, layer="conv1")

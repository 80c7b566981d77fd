"""DeepLIFT (rescale rule) three ways: a one-hidden-unit network worked out by hand; the
summation-to-delta property (attributions add up to S(x) - S(x')) on small ReLU CNNs in 1-D, 2-D
and 3-D; and captum 0.9's `DeepLift` on a PyTorch twin of a small CNN (its ReLUs separate
`nn.ReLU` modules, the weights copied). On GoogLeNet it is compared with captum in
tests/test_originals.py (`benchmarks.originals.captum_deeplift`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj


class OneUnit(nn.Module):
    """(B, 1, 3, 1) -> z = x . w + b (one hidden unit) -> 3 relu(z) + 0.5."""

    @nn.compact
    def __call__(self, x):
        hidden = nn.relu(nn.Dense(1, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(1, name="out")(hidden)


W = np.array([2.0, -1.0, 0.5])
ONE_UNIT = {
    "params": {
        "hidden": {"kernel": jnp.asarray(W[:, None], jnp.float32), "bias": jnp.array([-1.0])},
        "out": {"kernel": jnp.array([[3.0]]), "bias": jnp.array([0.5])},
    }
}


def pixels(*rows) -> jax.Array:
    return jnp.asarray(rows, jnp.float32).reshape(len(rows), 1, 3, 1)


@pytest.mark.oldest
def test_one_hidden_unit_by_hand():
    """DeepLIFT's gradient is 3 m w, with the unit's multiplier m = (relu(z) - relu(z')) / (z - z'),
    so the attribution is (x - x') 3 m w. Gradient x input has m = relu'(z) instead."""
    # black baseline: z' = -1. Image 1: z = 4 - 1 + 1.5 - 1 = 3.5, m = 3.5 / 4.5 = 7/9 (gradient x
    # input: 1); image 2: z = -3, both off, m = 0 / -2 = 0.
    x = pixels([2.0, 1.0, 3.0], [0.0, 2.0, 0.0])
    result = gj.deeplift(OneUnit(), ONE_UNIT, x, np.array([0, 0]))
    gradients = np.asarray(result.gradients)[:, 0, :, 0]
    np.testing.assert_allclose(gradients, [3 * 7 / 9 * W, 0 * W], rtol=1e-6)
    attributions = np.asarray(x)[:, 0, :, 0] * gradients
    np.testing.assert_allclose(attributions[0], [28 / 3, -7 / 3, 3.5], rtol=1e-6)  # input x gradient: 12, -3, 1.5
    np.testing.assert_allclose(attributions[0].sum(), 3 * 3.5, rtol=1e-6)  # S(x) - S(x') = 3 relu(3.5) - 0
    np.testing.assert_allclose(
        np.asarray(result.map)[:, 0], [[1.0, 0.0, (3.5 - 7 / 3) / 7], [0.0, 0.0, 0.0]], atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(result.scores), [3 * 3.5 + 0.5, 0.5], rtol=1e-6)

    # baseline 1: z' = 0.5. Image 1: both on, m = 1 (= gradient x input). Image 2: z = -3,
    # m = (0 - 0.5) / (-3 - 0.5) = 1/7 where the gradient is 0. Image 3: x - x' = (0.5, 1, 0)
    # is orthogonal to w, so z = z' = 0.5: the ReLU keeps its own derivative 1 (captum's eps
    # branch; 0/0 without it).
    x = pixels([2.0, 1.0, 3.0], [0.0, 2.0, 0.0], [1.5, 2.0, 1.0])
    result = gj.deeplift(OneUnit(), ONE_UNIT, x, np.array([0, 0, 0]), baseline=1.0)
    gradients = np.asarray(result.gradients)[:, 0, :, 0]
    np.testing.assert_allclose(gradients, [3 * W, 3 / 7 * W, 3 * W], rtol=1e-6)
    attributions = (np.asarray(x)[:, 0, :, 0] - 1.0) * gradients
    np.testing.assert_allclose(attributions[1], [-6 / 7, -3 / 7, -3 / 14], rtol=1e-6)
    np.testing.assert_allclose(attributions.sum(axis=1), [3 * 3.0, 3 * -0.5, 0.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(result.map)[1, 0], [1.0, 1 / 3, 0.0], atol=1e-6)


class CNN(nn.Module):
    """conv -> ReLU -> conv (stride 2) -> ReLU -> mean -> dense -> ReLU -> dense, over any number of
    spatial axes: ReLUs are its only non-linearities."""

    @nn.compact
    def __call__(self, x):
        spatial = x.ndim - 2
        x = nn.relu(nn.Conv(4, (3,) * spatial, name="conv1")(x))
        x = nn.relu(nn.Conv(6, (3,) * spatial, (2,) * spatial, name="conv2")(x))
        x = nn.relu(nn.Dense(8, name="dense")(x.mean(axis=tuple(range(1, 1 + spatial)))))
        return nn.Dense(5, name="head")(x)


def numpy_variables(model: nn.Module, x: np.ndarray, rng: np.random.Generator) -> dict:
    """Normal(0, 0.5) weights and biases in `model`'s shapes, drawn by numpy (jax.random's
    initialisers take seconds to compile on a small CPU)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize("shape", [(2, 12, 2), (2, 10, 10, 3), (2, 6, 6, 4, 1)], ids=["1d", "2d", "3d"])
def test_attributions_add_up_to_the_score_difference(shape):
    """Summation to delta: with ReLUs as the only non-linearities, sum (x - x') m = S(x) - S(x')
    for every image and class, while gradient x input's sum misses it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    model = CNN()
    variables = numpy_variables(model, x, rng)
    baseline = np.linspace(-0.5, 0.5, shape[-1], dtype=np.float32)
    targets = np.array([[0, 3], [4, 1]])
    result = gj.deeplift(model, variables, x, targets, baseline=tuple(baseline.tolist()))
    logits = np.asarray(jax.jit(model.apply)(variables, np.concatenate([x, np.broadcast_to(baseline, x.shape)])))
    differences = np.take_along_axis(logits[:2] - logits[2:], targets, 1)
    spread = tuple(range(2, x.ndim + 1))
    sums = ((x - baseline)[:, None] * np.asarray(result.gradients)).sum(axis=spread)
    np.testing.assert_allclose(sums, differences, rtol=1e-4, atol=1e-6)
    assert np.abs(differences).min() > 1e-3  # a real difference to explain
    plain = gj.input_x_gradient(model, variables, x, targets, baseline=tuple(baseline.tolist()))
    plain_sums = ((x - baseline)[:, None] * np.asarray(plain.gradients)).sum(axis=spread)
    assert np.abs(plain_sums - differences).max() > 0.05 * np.abs(differences).max()


# ---- captum's DeepLift on a PyTorch twin ------------------------------------------------------------


def torch_twin():
    """A PyTorch CNN, NCHW, every ReLU an `nn.ReLU` module used once (what captum hooks), seeded;
    skips the test without torch (the rest of this file needs no torch)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.conv1, net.relu1 = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU()
    net.conv2, net.relu2 = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1), torch.nn.ReLU()
    net.head = torch.nn.Linear(8, 5)
    net.forward = lambda x: net.head(net.relu2(net.conv2(net.relu1(net.conv1(x)))).mean(dim=(2, 3)))
    return torch, net.eval()


class Twin(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), padding=1, name="conv1")(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding=1, name="conv2")(x))
        return nn.Dense(5, name="head")(x.mean(axis=(1, 2)))


def twin_variables(net) -> dict:
    """`net`'s weights as `Twin`'s variables: conv OIHW -> HWIO, linear (out, in) -> (in, out)."""
    leaf = lambda t, *axes: jnp.asarray(t.detach().numpy().transpose(*axes))  # noqa: E731
    conv = lambda c: {"kernel": leaf(c.weight, 2, 3, 1, 0), "bias": leaf(c.bias)}  # noqa: E731
    head = {"kernel": leaf(net.head.weight, 1, 0), "bias": leaf(net.head.bias)}
    return {"params": {"conv1": conv(net.conv1), "conv2": conv(net.conv2), "head": head}}


def test_equals_captums_deeplift_on_a_twin():
    captum = pytest.importorskip("captum.attr")
    torch, net = torch_twin()
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype(np.float32)
    baseline = (0.2, -0.1, 0.3)
    targets = np.array([[0, 3], [4, 1]])
    ours = gj.deeplift(Twin(), twin_variables(net), x, targets, baseline=baseline)
    ours_attributions = (x - np.asarray(baseline, np.float32))[:, None] * np.asarray(ours.gradients)

    nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    reference = torch.tensor(baseline).view(1, 3, 1, 1).expand_as(nchw).contiguous()
    for k in range(targets.shape[1]):
        theirs = captum.DeepLift(net).attribute(nchw, baselines=reference, target=targets[:, k].tolist())
        theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
        mine = ours_attributions[:, k]
        assert np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] >= 0.999, k
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
        their_map = np.abs(theirs).max(axis=-1)
        low, high = their_map.min(axis=(1, 2), keepdims=True), their_map.max(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(np.asarray(ours.map[:, k]), (their_map - low) / (high - low), atol=1e-4)
        # the rule bit: captum's DeepLift is not its gradient x input here
        plain = captum.InputXGradient(net).attribute(nchw - reference, target=targets[:, k].tolist())
        assert np.abs(plain.detach().numpy().transpose(0, 2, 3, 1) - theirs).max() > 0.05 * np.abs(theirs).max()


# ---- what it refuses --------------------------------------------------------------------------------


def test_refuses_a_model_that_vmaps_its_relus_per_image():
    """As Equinox models often are: each ReLU sees one image, so it cannot pair it with its reference."""
    kernel = np.linspace(-1, 1, 3 * 4, dtype=np.float32).reshape(3, 4)

    def per_image(kernel, images):
        return jax.vmap(lambda one: jax.nn.relu(one @ kernel).mean(axis=(0, 1)))(images)

    with pytest.raises(ValueError, match="whole batch, not per image"):
        gj.deeplift(per_image, kernel, np.ones((2, 5, 5, 3), np.float32), np.array([0, 1]))
    assert nn.relu is jax.nn.relu  # restored after the error


def test_refuses_a_model_without_swappable_relu():
    class MaxZero(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(jnp.maximum(x.mean(axis=(1, 2)), 0))

    x = np.ones((1, 4, 4, 3), np.float32)
    variables = numpy_variables(MaxZero(), x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="deeplift found no ReLU"):
        gj.deeplift(MaxZero(), variables, x)

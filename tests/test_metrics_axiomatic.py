"""The axiomatic metrics (completeness, non-sensitivity, input invariance) against Quantus 0.6.0 on a
PyTorch twin of a small CNN (same weights), and by hand on linear models in 1-D, 2-D and 3-D (no torch)."""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax import metrics

B, SIZE, CLASSES = 3, 8, 3
TARGETS = np.array([0, 1, 2])


class Twin(nn.Module):
    """conv1 unpadded: Quantus shifts its bias by one value per channel, exact only without padding."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), padding="VALID", name="conv1")(x))
        x = nn.relu(nn.Conv(6, (3, 3), strides=2, padding=1, name="conv2")(x))
        return nn.Dense(CLASSES, name="head")(x.mean(axis=(1, 2)))


class Linear(nn.Module):
    """logits = sum over every value of w * x + b, any number of spatial axes."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(CLASSES, name="dense")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(B, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def twin():
    """(torch net, Twin variables) with the same weights: conv OIHW -> HWIO, linear (out, in) -> (in, out)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("quantus")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, CLASSES),
    ).eval()
    leaf = lambda t, *axes: jnp.asarray(t.detach().numpy().transpose(*axes))  # noqa: E731
    conv = lambda c: {"kernel": leaf(c.weight, 2, 3, 1, 0), "bias": leaf(c.bias)}  # noqa: E731
    head = {"kernel": leaf(net[6].weight, 1, 0), "bias": leaf(net[6].bias)}
    return net, {"params": {"conv1": conv(net[0]), "conv2": conv(net[2]), "head": head}}


def quantus_metric(name: str, **options):
    import quantus

    warnings.filterwarnings("ignore", module="quantus")
    return getattr(quantus, name)(disable_warnings=True, **options)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


# ---- against Quantus on the twin --------------------------------------------------------------------


def test_non_sensitivity_counts_quantus_counts(twin, images):
    net, variables = twin
    maps = np.random.default_rng(1).normal(size=(B, SIZE, SIZE)).astype(np.float32)
    maps[:, :3] = 0  # rows of no relevance, which the model does not ignore
    maps[:, -1, -2:] = 0
    ours = metrics.non_sensitivity(Twin(), variables, images, maps, TARGETS)
    theirs = quantus_metric("NonSensitivity")(model=net, x_batch=nchw(images), y_batch=TARGETS, a_batch=maps)
    np.testing.assert_array_equal(ours.per_image, np.asarray(theirs, np.float32))
    assert float(ours.aggregate) == pytest.approx(np.mean(theirs))
    assert ours.per_image.min() >= 3 * SIZE * 3  # every zero of the map on every channel is counted


def test_completeness_decides_as_quantus_does(twin, images):
    """Quantus's test is `==`: its score change put in one pixel of the map passes, 1% more fails.
    Quantus 0.6.0 replaces as many values as the map has (from the first, channel-first): given a
    (B, H, W) map, only the first channel goes black; we black out the image. So Quantus gets the map
    on every channel's grid, zero but on the first, whose sums are ours."""
    torch = pytest.importorskip("torch")
    net, variables = twin
    with torch.no_grad():
        x = torch.from_numpy(nchw(images))
        change = (net(x) - net(torch.ones_like(x) * x.flatten(1).min(1)[0].view(-1, 1, 1, 1))).numpy()
    change = change[np.arange(B), TARGETS]
    maps = np.zeros((B, SIZE, SIZE), np.float32)
    maps[:, 2, 3] = change
    maps[1, 2, 3] *= 1.01
    channels = np.zeros((B, 3, SIZE, SIZE), np.float32)
    channels[:, 0] = maps
    theirs = quantus_metric("Completeness", normalise=False)(
        model=net, x_batch=nchw(images), y_batch=TARGETS, a_batch=channels
    )
    ours = metrics.completeness(Twin(), variables, images, maps, TARGETS, normalise=False)
    np.testing.assert_array_equal(np.asarray(theirs, np.float32), [1, 0, 1])
    np.testing.assert_array_equal(ours.per_image, np.asarray(theirs, np.float32))


def torch_gradient(net, x: np.ndarray, y, times_input: bool) -> np.ndarray:
    """Quantus's explain_func: |d logit / d x| (times x) max over channels, rescaled to [0, 1] per map,
    as gradcam_jax's saliency and input_x_gradient maps are."""
    import torch

    inputs = torch.from_numpy(np.asarray(x, np.float32)).requires_grad_(True)
    net(inputs)[torch.arange(len(y)), torch.as_tensor(np.asarray(y))].sum().backward()
    gradient = inputs.grad
    assert gradient is not None
    attribution = gradient * inputs if times_input else gradient
    m = attribution.abs().amax(dim=1).detach().numpy()
    low, high = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
    return (m - low) / (high - low)


@pytest.mark.parametrize("method, times_input, passes", [("saliency", False, 1.0), ("input_x_gradient", True, 0.0)])
def test_input_invariance_agrees_with_quantus(twin, images, method, times_input, passes):
    """Quantus 0.6.0's `perturb_batch` hands its shift every index but the first (`indices[i][1:]`), so
    one value of each image stays unshifted and saliency fails on images whose corner matters; both
    sides shift every value here (`shift_all`, Quantus's `baseline_replacement_by_shift` without the
    dropped index), which is what input invariance asks."""
    net, variables = twin

    def shift_all(arr, indices, indexed_axes, input_shift, **_):
        return arr + np.float32(input_shift)

    theirs = quantus_metric("InputInvariance", perturb_func=shift_all)(
        model=net,
        x_batch=nchw(images),
        y_batch=TARGETS,
        a_batch=torch_gradient(net, nchw(images), TARGETS, times_input),
        explain_func=lambda model, inputs, targets, **_: torch_gradient(model, inputs, targets, times_input),
    )
    ours = metrics.input_invariance(Twin(), variables, images, targets=TARGETS, method=method)
    np.testing.assert_array_equal(ours.per_image, np.asarray(theirs, np.float32))
    np.testing.assert_array_equal(ours.per_image, passes)


# ---- by hand, no torch ------------------------------------------------------------------------------


def linear(shape, zero_rows: int = 0):
    """A `Linear` model on (B, *shape) inputs, its variables with the weights of the first `zero_rows`
    positions (all channels, all classes) set to 0: features the model ignores."""
    model = Linear()
    variables = model.init(gj_key(), jnp.zeros((1, *shape)))
    kernel = np.array(variables["params"]["dense"]["kernel"]).reshape(*shape, CLASSES)
    kernel[:zero_rows] = 0
    variables = {"params": {"dense": {"kernel": jnp.asarray(kernel.reshape(-1, CLASSES)),
                                      "bias": variables["params"]["dense"]["bias"]}}}  # fmt: skip
    return model, variables, kernel


def gj_key():
    import jax

    return jax.random.key(0)


@pytest.mark.parametrize("shape", [(12, 2), (6, 5, 2), (3, 4, 5, 2)])
def test_completeness_of_a_linear_model_by_hand(shape):
    """(x - baseline) * w summed over channels is complete for a linear model's logit; a map off by a
    factor is not, and neither is the default (normalised) one."""
    model, variables, kernel = linear(shape)
    x = np.random.default_rng(2).normal(size=(B, *shape)).astype(np.float32)
    black = x.reshape(B, -1).min(axis=1).reshape(-1, *(1,) * len(shape))
    w = np.moveaxis(kernel[..., TARGETS], -1, 0)  # (B, *shape)
    exact = ((x - black) * w).sum(axis=-1)
    np.testing.assert_array_equal(
        metrics.completeness(model, variables, x, exact, TARGETS, normalise=False).per_image, 1.0
    )
    np.testing.assert_array_equal(
        metrics.completeness(model, variables, x, exact * 1.01, TARGETS, normalise=False).per_image, 0.0
    )
    assert metrics.completeness(model, variables, x, exact, TARGETS).aggregate == 0.0
    white = x.reshape(B, -1).max(axis=1).reshape(-1, *(1,) * len(shape))
    np.testing.assert_array_equal(
        metrics.completeness(
            model, variables, x, ((x - white) * w).sum(-1), TARGETS, normalise=False, perturb_baseline="white"
        ).per_image,
        1.0,
    )


@pytest.mark.parametrize("shape", [(12, 2), (6, 5, 2), (3, 4, 5, 2)])
def test_non_sensitivity_of_a_linear_model_by_hand(shape):
    """The model ignores its first two rows: a map zero there and nonzero elsewhere breaks no axiom;
    one nonzero everywhere is wrong on every value of those rows (each channel counts)."""
    model, variables, _ = linear(shape, zero_rows=2)
    x = np.random.default_rng(3).normal(size=(B, *shape)).astype(np.float32)
    right = np.ones((B, *shape[:-1]), np.float32)
    right[:, :2] = 0
    ignored_values = 2 * int(np.prod(shape[1:]))
    # the logit moves by |w (x - 10)| >> 1e-4 wherever w != 0 ("black", the image's minimum, would
    # not move the one value that is the minimum)
    logit: dict[str, Any] = {"score": "logit", "eps": 1e-4, "perturb_baseline": 10.0}
    assert float(metrics.non_sensitivity(model, variables, x, right, TARGETS, **logit).aggregate) == 0.0
    everywhere = np.ones((B, *shape[:-1]), np.float32)
    np.testing.assert_array_equal(
        metrics.non_sensitivity(model, variables, x, everywhere, TARGETS, **logit).per_image, ignored_values
    )
    # groups of a whole row of values (channel-first runs): a row either ignored or not
    row = int(np.prod(shape[1:-1]))
    grouped = metrics.non_sensitivity(model, variables, x, everywhere, TARGETS, features_in_step=row, **logit)
    np.testing.assert_array_equal(grouped.per_image, 2 * shape[-1])  # 2 ignored rows in each channel


@pytest.mark.parametrize("shape", [(12, 2), (3, 4, 5, 2)])  # images: against Quantus above
def test_input_invariance_by_hand(shape):
    """A linear model's gradient does not move with the input: saliency is invariant; input x gradient
    (zero baseline) is not, as Kindermans et al. show; the shifted model scores the shifted input as the
    model scores the input."""
    model, variables, _ = linear(shape)
    x = np.random.default_rng(4).normal(size=(B, *shape)).astype(np.float32)
    np.testing.assert_array_equal(
        metrics.input_invariance(model, variables, x, targets=TARGETS, method="saliency").per_image, 1
    )
    np.testing.assert_array_equal(
        metrics.input_invariance(model, variables, x, targets=TARGETS, method=gj.METHODS["input_x_gradient"]).per_image,
        0,
    )
    from gradcam_jax._src.evaluation.axiomatic import MeanShifted, first_layer_shift

    delta = first_layer_shift(model, variables, jnp.asarray(x), jnp.float32(2.5), layer="dense")
    shifted = MeanShifted(model, "dense")((variables, delta), jnp.asarray(x) + 2.5)
    np.testing.assert_allclose(np.asarray(shifted), np.asarray(model.apply(variables, x)), rtol=1e-5, atol=1e-5)


def never_run(*args, **options):
    raise AssertionError("the method ran before the input was checked")


def test_bad_input_is_one_line():
    model, variables, _ = linear((6, 5, 2))
    x = np.zeros((B, 6, 5, 2), np.float32)
    cases = [
        (lambda: metrics.input_invariance(model, variables, x, np.zeros((B, 6, 5)), TARGETS), "method="),
        (lambda: metrics.completeness(model, variables, x, targets=TARGETS), "maps="),
        (lambda: metrics.non_sensitivity(model, variables, x, np.zeros((B, 6)), TARGETS), "maps must be"),
        (lambda: metrics.completeness(model, variables, x, targets=TARGETS, method=never_run, perturb_baseline="grey"), "baseline"),
        (lambda: metrics.non_sensitivity(model, variables, x, targets=TARGETS, method=never_run, features_in_step=0), "features_in_step"),
    ]  # fmt: skip
    for call, words in cases:
        with pytest.raises(ValueError, match=words) as err:
            call()
        assert "\n" not in str(err.value)


def test_input_invariance_shifts_an_nnx_model_too():
    """The shift is undone through a layer tap, so other model kinds (here NNX, split) are shifted alike."""
    import jax
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(2, 3, (3, 3), padding="VALID", rngs=rngs)
            self.head = nnx.Linear(3, CLASSES, rngs=rngs)

        def __call__(self, x):
            return self.head(jax.nn.relu(self.conv(x)).mean(axis=(1, 2)))

    graph, state = nnx.split(Net(nnx.Rngs(0)))
    x = np.random.default_rng(5).normal(size=(B, 6, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        metrics.input_invariance(graph, state, x, targets=TARGETS, method="saliency").per_image, 1
    )

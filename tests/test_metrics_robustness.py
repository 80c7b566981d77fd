"""The robustness metrics: hand-derived answers on tiny fixtures (a "method" whose map is the input's
first channel, so every ratio has a closed form), then equality with Quantus 0.6.0 (and captum's
`sensitivity_max`) on a PyTorch twin of a small CNN, the same saliency on both sides and our noise
draws handed to theirs through a `perturb_func` that returns them."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_deeplift import CNN, Twin, numpy_variables, torch_twin, twin_variables

from gradcam_jax import metrics, saliency
from gradcam_jax._src.evaluation.robustness import gaussian_noise, noise_draw, translation_shifts, uniform_noise
from gradcam_jax._src.methods.common import random_key

B = 3


def first_channel(model, variables, images, indices):
    """A 'method' with a closed form: the map is the input's first channel."""
    return images[..., 0]


def small(shape):
    """deeplift's CNN (any number of spatial axes) with numpy weights: the torch-free fixtures' model."""
    return CNN(), numpy_variables(CNN(), np.zeros(shape, np.float32), np.random.default_rng(3))


@pytest.fixture(scope="module")
def twin():
    torch, net = torch_twin()
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    return torch, net, Twin(), twin_variables(net), x


def flat(a):
    return a.reshape(a.shape[0], -1)


def l2(a):
    return np.linalg.norm(flat(a), axis=-1)


def draws(kind, key, count, shape, *params):
    """(count, *shape) our draws 0..count-1 of `key`, as the metrics make them (`uniform_noise`
    with (lower, upper) or `gaussian_noise` with (mean, std))."""
    if kind == "uniform":
        low, high = (-params[0], params[0]) if params[1] is None else params
    else:
        low, high = params
    return np.asarray(_draws(random_key(key), np.arange(count), shape, kind == "gaussian", low, high))


@functools.partial(jax.jit, static_argnames="shape")
def _draws(key, indices, shape, gaussian, low, high):
    return jax.vmap(lambda i: noise_draw(key, i, shape, gaussian, low, high))(indices)


# ---- hand-derived ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(B, 12, 2), (B, 6, 6, 3), (B, 4, 4, 3, 1)], ids=["1d", "2d", "3d"])
def test_sensitivities_and_lipschitz_of_the_identity_map_by_hand(shape):
    """map = x[..., 0], so a - a' is the noise's first channel: every ratio is a norm of the draws."""
    x = np.random.default_rng(2).uniform(1.0, 2.0, size=shape).astype(np.float32)
    model, variables = small(shape)
    common = dict(method=first_channel, key=7, samples=6, batch_size=2 * B)
    u = draws("uniform", 7, 6, shape, 0.3, None)
    g = draws("gaussian", 7, 6, shape, 0.0, 0.1)
    ratio = l2(u[..., 0].reshape(6 * B, -1)).reshape(6, B) / l2(x[..., 0])
    got = metrics.max_sensitivity(model, variables, x, lower_bound=0.3, **common)
    np.testing.assert_allclose(got.per_image, ratio.max(0), rtol=1e-5)
    np.testing.assert_allclose(got.aggregate, ratio.max(0).mean(), rtol=1e-5)
    avg = metrics.avg_sensitivity(model, variables, x, lower_bound=0.3, **common)
    np.testing.assert_allclose(avg.per_image, ratio.mean(0), rtol=1e-5)
    lipschitz = l2(g[..., 0].reshape(6 * B, -1)) / (l2(g.reshape(6 * B, -1)) + 1e-10)
    lle = metrics.local_lipschitz_estimate(model, variables, x, normalise=False, **common)
    np.testing.assert_allclose(lle.per_image, lipschitz.reshape(6, B).max(0), rtol=1e-5)
    moved = x + u
    ris = l2(((x - moved) / x)[..., 0].reshape(6 * B, -1)) / l2(((x - moved) / x).reshape(6 * B, -1))
    got = metrics.relative_input_stability(
        model, variables, x, lower_bound=0.3, upper_bound=None, nan_when_prediction_changes=False, **common
    )
    np.testing.assert_allclose(got.per_image, ris.reshape(6, B).max(0), rtol=1e-5)


def test_uniform_bounds_are_quantus_one_or_two_sided():
    two = np.asarray(uniform_noise(0, 0, (4000,), 0.2, None))
    one = np.asarray(uniform_noise(0, 0, (4000,), 0.02, 0.2))
    assert -0.2 <= two.min() < -0.19 and 0.19 < two.max() <= 0.2
    assert 0.02 <= one.min() < 0.021 and 0.199 < one.max() <= 0.2
    normal = np.asarray(gaussian_noise(0, 1, (4000,), 0.5, 2.0))
    assert abs(normal.mean() - 0.5) < 0.1 and abs(normal.std() - 2.0) < 0.1  # 3.2 and 4.5 standard errors


def test_continuity_of_the_identity_map_by_hand():
    """Shifted along the width, uncovered columns at each image's minimum: the map moves with x."""
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    model, variables = small(x.shape)
    got = metrics.continuity(model, variables, x, method=first_channel, steps=5, normalise=False, abs=False)
    best = np.zeros(B)
    for shift in translation_shifts(10, 5):
        moved = np.empty_like(x)
        for w in range(10):
            source = w - shift
            moved[:, :, w] = x[:, :, source] if 0 <= source < 10 else x.min(axis=(1, 2, 3))[:, None, None]
        ratio = np.abs(flat(x[..., 0] - moved[..., 0])).sum(-1) / (l2(x - moved) + 1e-9)
        best = np.maximum(best, ratio)
    np.testing.assert_allclose(got.per_image, best, rtol=1e-5)


def test_consistency_by_hand():
    """Images 0, 1, 3 share a code, 2 is alone: each scores the share of its look-alikes in its class."""
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    model, variables = small(x.shape)
    x = np.concatenate([x, x[:1]])  # image 3 is image 0, so they are predicted alike
    maps = np.ones((4, 10, 10), np.float32)
    maps[2, 0, 0] = -1.0  # a different sign among the first five entries
    predicted = np.asarray(jnp.argmax(jax.jit(model.apply)(variables, x), -1))
    got = metrics.consistency(model, variables, x, maps, abs=False)
    group = [0, 1, 3]
    expected = [
        np.mean([predicted[j] == predicted[i] for j in group if j != i]) if i in group else 0.0 for i in range(4)
    ]
    np.testing.assert_allclose(got.per_image, expected, atol=1e-6)
    assert got.per_image[0] == 1.0  # image 3 is its twin


def test_bad_input_is_one_line_each():
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    model, variables = small(x.shape)
    maps = np.zeros((B, 10, 10), np.float32)
    for metric in (metrics.max_sensitivity, metrics.relative_output_stability, metrics.continuity):
        with pytest.raises(ValueError, match="re-explains perturbed inputs: pass method="):
            metric(model, variables, x, maps)
    with pytest.raises(ValueError, match="perturbs nothing"):
        metrics.avg_sensitivity(model, variables, x, method="saliency", lower_bound=0.0)
    with pytest.raises(ValueError, match="perturb nothing"):
        metrics.local_lipschitz_estimate(model, variables, x, method="saliency", std=0.0)
    with pytest.raises(ValueError, match="steps must be an int 1..21"):
        metrics.continuity(model, variables, x, method="saliency")  # Quantus's 28 steps on a width of 10
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        metrics.max_sensitivity(model, variables, x, method="nope")
    with pytest.raises(ValueError, match="draws must be an int at least 1"):
        metrics.max_sensitivity(model, variables, x, method="saliency", samples=0)


# ---- Quantus 0.6.0 and captum on a PyTorch twin -------------------------------------------------------


def torch_saliency(torch):
    """Quantus's `explain_func`: our saliency on the torch twin (max_c |d logit / dx|, min-max per image)."""

    def explain(model, inputs, targets, **kwargs):
        x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
        with torch.enable_grad():  # captum's sensitivity_max calls it under no_grad
            logits = model(x)
            logits[torch.arange(x.shape[0]), torch.as_tensor(np.asarray(targets))].sum().backward()
        g = x.grad.abs().amax(dim=1).numpy()
        low, high = g.min(axis=(1, 2), keepdims=True), g.max(axis=(1, 2), keepdims=True)
        return ((g - low) / (high - low)).astype(np.float32)

    return explain


def handing(noise):
    """A Quantus `perturb_func` returning x + our draw i on its i-th call (NCHW, flattened as Quantus)."""
    calls = iter(noise.transpose(0, 1, 4, 2, 3).reshape(noise.shape[0], noise.shape[1], -1))

    def perturb(arr, indices=None, **kwargs):
        return (arr.astype(np.float32) + next(calls)).astype(np.float32)

    return perturb


def torch_module(torch, net):
    """The twin as an `nn.Module` subclass (Quantus reads hidden layers of anything but the model's own class)."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.relu1, self.conv2, self.relu2, self.head = (
                net.conv1, net.relu1, net.conv2, net.relu2, net.head,
            )  # fmt: skip

        def forward(self, x):
            return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))

    return Net().eval()


SAMPLES = 4
PER_IMAGE = {"normalise_func_kwargs": {"normalise_axes": (1, 2, 3)}}  # Quantus normalises over the batch by default


@pytest.mark.parametrize(
    "name, ours, kind, params",
    [
        ("MaxSensitivity", {}, "uniform", (0.2, None)),
        ("AvgSensitivity", {}, "uniform", (0.2, None)),
        ("LocalLipschitzEstimate", {}, "gaussian", (0.0, 0.1)),
        ("RelativeInputStability", {}, "uniform", (0.02, 0.2)),
        ("RelativeOutputStability", {}, "uniform", (0.02, 0.2)),
        ("RelativeRepresentationStability", {"layer": "conv2"}, "uniform", (0.02, 0.2)),
    ],
)
def test_equals_quantus(twin, name, ours, kind, params):
    quantus = pytest.importorskip("quantus")
    torch, net, model, variables, x = twin
    targets = np.array([0, 3, 4])
    maps = np.asarray(saliency(model, variables, x, targets).map)
    function = {
        "MaxSensitivity": metrics.max_sensitivity,
        "AvgSensitivity": metrics.avg_sensitivity,
        "LocalLipschitzEstimate": metrics.local_lipschitz_estimate,
        "RelativeInputStability": metrics.relative_input_stability,
        "RelativeOutputStability": metrics.relative_output_stability,
        "RelativeRepresentationStability": metrics.relative_representation_stability,
    }[name]
    got = function(model, variables, x, maps, targets, method="saliency", key=5, samples=SAMPLES, **ours)
    extra = {"layer_names": ["conv2"]} if "layer" in ours else {}
    metric = getattr(quantus, name)(
        nr_samples=SAMPLES, perturb_func=handing(draws(kind, 5, SAMPLES, x.shape, *params)),
        disable_warnings=True, **PER_IMAGE, **extra,
    )  # fmt: skip
    theirs = metric(
        model=torch_module(torch, net), x_batch=x.transpose(0, 3, 1, 2).copy(), y_batch=targets,
        a_batch=maps, channel_first=True, explain_func=torch_saliency(torch),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got.per_image), np.asarray(theirs, np.float64), rtol=1e-4)


def test_continuity_and_consistency_equal_quantus(twin):
    quantus = pytest.importorskip("quantus")
    torch, net, model, variables, x = twin
    targets = np.array([0, 3, 4])
    nchw = x.transpose(0, 3, 1, 2).copy()
    got = metrics.continuity(model, variables, x, None, targets, method="saliency", steps=4)
    theirs = quantus.Continuity(nr_steps=4, disable_warnings=True, **PER_IMAGE)(
        model=torch_module(torch, net), x_batch=nchw, y_batch=targets, channel_first=True,
        explain_func=torch_saliency(torch),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got.per_image), np.asarray(theirs), rtol=1e-4)

    x6 = np.concatenate([x, x[::-1] + 0.01])
    maps = np.array(saliency(model, variables, x6, np.zeros(6, int)).map)
    maps[:, 0, :5] = np.where(np.arange(6)[:, None] % 2 == 0, 0.0, 0.5)  # codes alike in pairs
    got = metrics.consistency(model, variables, x6, maps)
    theirs = quantus.Consistency(disable_warnings=True, **PER_IMAGE)(
        model=torch_module(torch, net), x_batch=x6.transpose(0, 3, 1, 2).copy(), y_batch=np.zeros(6, int),
        a_batch=maps, channel_first=True,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got.per_image), np.asarray(theirs), atol=1e-6)


def test_sensitivity_max_equals_captums(twin):
    captum_metrics = pytest.importorskip("captum.metrics")
    torch, net, model, variables, x = twin
    targets = np.array([0, 3, 4])
    maps = np.asarray(saliency(model, variables, x, targets).map)  # captum recomputes them: the same
    got = metrics.sensitivity_max(model, variables, x, maps, targets, method="saliency", key=9, samples=SAMPLES)
    noise = draws("uniform", 9, SAMPLES, x.shape, 0.02, None)  # (S, B, H, W, C)
    explain = torch_saliency(torch)

    def explanation_func(inputs, target=None):  # captum hands (and expects back) a tuple for the first call
        (inputs,) = inputs if isinstance(inputs, tuple) else (inputs,)
        return (torch.from_numpy(explain(net, inputs.detach().numpy(), np.asarray(target))),)

    def perturb_func(inputs, radius):  # captum repeats each image n times in a row: image-major
        return inputs + torch.from_numpy(noise.transpose(1, 0, 4, 2, 3).reshape(inputs.shape))

    theirs = captum_metrics.sensitivity_max(
        explanation_func, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), perturb_func=perturb_func,
        n_perturb_samples=SAMPLES, target=torch.as_tensor(targets),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got.per_image), theirs.numpy(), rtol=1e-4)

"""The randomisation metrics: their pieces against numpy/scipy/skimage, hand-derived answers for a
map that ignores the weights and the class, then equality with Quantus 0.6.0 on a PyTorch twin of a
small CNN: the same saliency on both sides, our re-initialised weights handed to Quantus's
`reset_parameters`, our noise and off-class draws to its `np.random` calls."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_deeplift import Twin, numpy_variables, torch_twin, twin_variables
from test_metrics_robustness import first_channel, torch_module, torch_saliency

from gradcam_jax import metrics, saliency
from gradcam_jax._src.evaluation.randomisation import discrete_entropy, off_draws, ssim_flat
from gradcam_jax._src.evaluation.robustness import gaussian_noise
from gradcam_jax._src.metrics import fresh_variables

B = 3


@pytest.fixture(scope="module")
def small():
    """Twin with numpy weights: the torch-free fixtures' model."""
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    return Twin(), numpy_variables(Twin(), x, np.random.default_rng(3)), x


@pytest.fixture(scope="module")
def twin():
    torch, net = torch_twin()
    x = np.random.default_rng(1).normal(size=(B, 10, 10, 3)).astype(np.float32)
    return torch, net, Twin(), twin_variables(net), x


# ---- the pieces, and hand-derived answers ---------------------------------------------------------


def test_discrete_entropy_is_numpys_histogram_entropy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    maps = np.stack([rng.uniform(size=(12, 12)), rng.normal(size=(12, 12)) ** 2, np.full((12, 12), 0.3)])
    maps[0, 0, :3] = [0.0, 1.0, 0.5]
    expected = [stats.entropy(np.histogram(m, bins=100)[0]) for m in maps.astype(np.float32)]
    np.testing.assert_allclose(discrete_entropy(maps.astype(np.float32)), expected, rtol=1e-5, atol=1e-6)
    assert expected[2] == 0.0


def test_ssim_is_skimages_on_flattened_maps():
    metrics_skimage = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(3, 60)).astype(np.float32)
    b = (0.7 * a + 0.3 * rng.uniform(size=(3, 60))).astype(np.float32)
    expected = [
        metrics_skimage.structural_similarity(x, y, data_range=float(max(x.max(), y.max()) - min(x.min(), y.min())))
        for x, y in zip(a.astype(np.float64), b.astype(np.float64))
    ]
    np.testing.assert_allclose(ssim_flat(a, b), expected, rtol=1e-4)


def test_a_map_that_ignores_weights_and_class_scores_as_such(small):
    """map = the input's first channel: every randomised map is the original (Spearman 1, entropy rise
    0) and every class's map is the target's (SSIM 1)."""
    model, variables, x = small
    m = metrics.mprt(model, variables, x, method=first_channel, abs=False)
    assert m.layers == ("head", "conv2", "conv1")
    np.testing.assert_allclose(m.by_layer, np.ones((3, B)), atol=1e-6)
    s = metrics.smooth_mprt(model, variables, x, method=first_channel, samples=1, abs=False)
    assert s.layers == ("conv1", "conv2", "head")
    np.testing.assert_allclose(s.per_image, np.ones(B), atol=1e-6)
    np.testing.assert_allclose(
        metrics.efficient_mprt(model, variables, x, method=first_channel).per_image, 0, atol=1e-6
    )
    np.testing.assert_allclose(metrics.random_logit(model, variables, x, method=first_channel).per_image, 1, atol=1e-5)


def test_off_class_is_never_the_target_and_covers_the_others():
    targets = np.full(4000, 2)
    r = np.asarray(off_draws(0, 4000, 5))
    off = r + (r >= targets)
    assert set(off.tolist()) == {0, 1, 3, 4}


def test_mprt_is_model_randomisation(small):
    """Quantus's MPRT by another name: the same cascade and correlations as `model_randomisation`."""
    model, variables, x = small
    targets = np.array([0, 3, 4])
    check = metrics.model_randomisation("saliency", model, variables, x, targets)
    m = metrics.mprt(model, variables, x, None, targets, method="saliency", average=True)
    assert m.layers == check.layers
    np.testing.assert_allclose(m.by_layer, check.correlations, atol=1e-6)
    np.testing.assert_allclose(m.per_image, check.correlations.mean(0), atol=1e-6)


def test_bad_input_is_one_line_each(small):
    model, variables, x = small
    maps = np.zeros((B, 10, 10), np.float32)
    for metric in (metrics.mprt, metrics.smooth_mprt, metrics.efficient_mprt, metrics.random_logit):
        with pytest.raises(ValueError, match="re-explains perturbed inputs: pass method="):
            metric(model, variables, x, maps)
    with pytest.raises(ValueError, match="unknown order 'sideways'"):
        metrics.smooth_mprt(model, variables, x, method="saliency", order="sideways")
    with pytest.raises(ValueError, match="samples must be an int at least 1"):
        metrics.smooth_mprt(model, variables, x, method="saliency", samples=0)


# ---- Quantus 0.6.0 on a PyTorch twin --------------------------------------------------------------


def handing_fresh_weights(monkeypatch, torch, net, model, x, init_key=0):
    """Quantus re-initialises each torch layer by `reset_parameters()`; make that load our
    `fresh_variables(model, init_key)` for the layer instead."""
    fresh = twin_variables_inverse(fresh_variables(model, init_key, (1, *x.shape[1:])))
    for name in ("conv1", "conv2", "head"):
        getattr(net, name)._fresh = fresh[name]  # deep copies carry it

    def reset(self):
        weight, bias = self._fresh
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(weight))
            self.bias.copy_(torch.from_numpy(bias))

    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", reset)
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", reset)


def twin_variables_inverse(variables):
    """Our variables in torch's layouts: conv HWIO -> OIHW, dense (in, out) -> (out, in)."""
    p = jax.tree.map(np.asarray, variables["params"])
    conv = lambda c: (np.ascontiguousarray(c["kernel"].transpose(3, 2, 0, 1)), c["bias"])  # noqa: E731
    return {
        "conv1": conv(p["conv1"]),
        "conv2": conv(p["conv2"]),
        "head": (np.ascontiguousarray(p["head"]["kernel"].T), p["head"]["bias"]),
    }


def quantus_call(torch, net, x, targets, maps, **kwargs):
    return dict(
        model=torch_module(torch, net), x_batch=x.transpose(0, 3, 1, 2).copy(), y_batch=targets, a_batch=maps,
        channel_first=True, explain_func=torch_saliency(torch), **kwargs,
    )  # fmt: skip


def test_mprt_and_emprt_equal_quantus(twin, monkeypatch):
    quantus = pytest.importorskip("quantus")
    torch, net, model, variables, x = twin
    handing_fresh_weights(monkeypatch, torch, net, model, x)
    targets = np.array([0, 3, 4])
    maps = np.asarray(saliency(model, variables, x, targets).map)
    ours = metrics.mprt(model, variables, x, maps, targets, method="saliency")
    theirs = quantus.MPRT(disable_warnings=True)(**quantus_call(torch, net, x, targets, maps))
    assert list(theirs)[1:] == list(ours.layers)
    np.testing.assert_allclose(ours.by_layer, np.array(list(theirs.values())[1:]), rtol=1e-4, atol=1e-6)
    assert np.ptp(np.asarray(ours.by_layer)) > 0.1  # the cascade moves the maps

    ours = metrics.efficient_mprt(model, variables, x, maps, targets, method="saliency")
    theirs = quantus.EfficientMPRT(disable_warnings=True)(**quantus_call(torch, net, x, targets, maps))
    np.testing.assert_allclose(ours.per_image, theirs, rtol=1e-4)


def test_smooth_mprt_equals_quantus(twin, monkeypatch):
    quantus = pytest.importorskip("quantus")
    torch, net, model, variables, x = twin
    handing_fresh_weights(monkeypatch, torch, net, model, x)
    targets = np.array([0, 3, 4])
    samples = 3
    ours = metrics.smooth_mprt(model, variables, x, None, targets, method="saliency", key=4, samples=samples)
    draws = [np.asarray(gaussian_noise(4, s, x.shape, 0.0, 1.0)).transpose(0, 3, 1, 2) for s in range(samples - 1)]
    calls = iter(draws * 10)  # the same draws for every smoothing, as ours
    monkeypatch.setattr(np.random, "randn", lambda *shape: next(calls).astype(np.float64))
    monkeypatch.setattr(
        quantus, "explain", lambda model, inputs, targets, **kw: torch_saliency(torch)(model, inputs, targets)
    )
    theirs = quantus.SmoothMPRT(nr_samples=samples, disable_warnings=True)(**quantus_call(torch, net, x, targets, None))
    assert list(theirs)[1:] == list(ours.layers)
    np.testing.assert_allclose(theirs["original"], 1.0, atol=1e-6)  # a_batch and "original": the same draws
    # ranks of near-tied pixels of the random models' smoothed maps flip with float32 summation order
    np.testing.assert_allclose(ours.by_layer, np.array(list(theirs.values())[1:]), atol=1e-3)


def test_random_logit_equals_quantus(twin, monkeypatch):
    quantus = pytest.importorskip("quantus")
    torch, net, model, variables, x = twin
    targets = np.array([0, 3, 4])
    maps = np.asarray(saliency(model, variables, x, targets).map)
    ours = metrics.random_logit(model, variables, x, maps, targets, method="saliency", key=3)
    r = np.asarray(off_draws(3, B, 5))
    monkeypatch.setattr(np.random, "randint", lambda low, high, size: r)
    theirs = quantus.RandomLogit(
        num_classes=5, disable_warnings=True, normalise_func_kwargs={"normalise_axes": (1, 2, 3)}
    )(**quantus_call(torch, net, x, targets, maps))
    np.testing.assert_allclose(ours.per_image, theirs, rtol=1e-4)
    assert np.ptp(np.asarray(ours.per_image)) > 0  # not a constant

"""Defaults that fit the input, not GoogLeNet (issue 27): `baseline="mean"` is the model's declared
`mean_pixel` (GoogLeNet's Caffe RGB mean, so its maps are unchanged) or else each image's own mean,
whatever the input's scale and channel count."""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src.methods.common import MEAN_PIXEL, baseline_pixels


class UnitInput(nn.Module):
    """A 10-class CNN taking [0, 1] pixels and no declared mean. Far outside that range (Caffe's mean
    pixel on 0..255) it says class 9 whatever the image, as a trained network says something."""

    @nn.compact
    def __call__(self, x):
        logits = nn.Dense(10, name="head")(nn.relu(nn.Conv(8, (3, 3), name="c1")(x)).mean(axis=(1, 2)))
        return logits.at[:, 9].add(jnp.mean(x, axis=(1, 2, 3)) ** 2)


class Declares(UnitInput):
    mean_pixel = (0.5, 0.25, 0.125)


class DeclaresTwo(UnitInput):
    mean_pixel = (0.5, 0.25)  # the wrong channel count for RGB input: ignored


@pytest.fixture(scope="module")
def unit():
    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
    model = UnitInput()
    variables = model.init(jax.random.key(0), x)
    targets = np.asarray(model.apply(variables, x)).argmax(-1)
    assert (targets != 9).all()  # the images themselves are not class 9
    return model, variables, x, targets


def test_mean_is_the_declared_pixel_else_each_images_own_mean(unit):
    _, _, x, _ = unit
    own = baseline_pixels("mean", x, UnitInput())
    assert own.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(own[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(baseline_pixels("mean", x, Declares())[:, 0, 0], [[0.5, 0.25, 0.125]] * 2)
    np.testing.assert_array_equal(baseline_pixels("mean", x, DeclaresTwo()), own)  # falls back, no error
    np.testing.assert_array_equal(baseline_pixels("mean", x, lambda v, x: x), own)  # a function declares nothing
    np.testing.assert_array_equal(
        baseline_pixels("mean", x, gj.GoogLeNet())[0, 0, 0], np.asarray(MEAN_PIXEL, np.float32)
    )
    np.testing.assert_array_equal(baseline_pixels("black", x), np.zeros((2, 1, 1, 3)))
    with pytest.raises(ValueError, match="3 per-channel values"):
        baseline_pixels((1.0, 2.0), x)


def test_score_cam_on_unit_inputs_is_informative_with_the_default(unit):
    model, variables, x, targets = unit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gj.DegenerateMapWarning)
        caffe = gj.score_cam(model, variables, x, targets, layer="c1", baseline=MEAN_PIXEL)
    assert np.asarray(caffe.map).max() == 0.0  # the old default: every mask scored 0, an all-zero map
    with warnings.catch_warnings():
        warnings.simplefilter("error", gj.DegenerateMapWarning)
        result = gj.score_cam(model, variables, x, targets, layer="c1")
    assert not np.any(np.asarray(result.flags))
    assert (np.ptp(np.asarray(result.map), axis=(1, 2)) > 0.5).all()


@pytest.mark.parametrize("method", ["score_cam", "occlusion", "feature_ablation", "integrated_gradients"])
def test_mean_on_two_channel_signals_is_a_default_not_an_error(method):
    class Signal(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Conv(6, (5,), name="c1")(x))
            return nn.Dense(3, name="head")(h.mean(axis=1))

    x = np.random.RandomState(1).randn(3, 40, 2).astype(np.float32)
    model = Signal()
    variables = model.init(jax.random.key(0), x)
    options: dict[str, object] = (
        {"layer": "c1"} if method == "score_cam" else {"patch": 8} if method != "integrated_gradients" else {}
    )
    result = gj.METHODS[method](model, variables, x, baseline="mean", **options)
    assert result.map.shape == (3, 40) and np.isfinite(np.asarray(result.map)).all()
    # slicing the batch (batch_size 1) gives each image its own mean: the same maps
    if method != "integrated_gradients":
        options["batch_size"] = 1
    sliced = gj.METHODS[method](model, variables, x, baseline="mean", **options)
    np.testing.assert_allclose(sliced.map, result.map, atol=1e-5)


@pytest.mark.parametrize(("method", "options"), [("score_cam", {"layer": "inception_5b-relu_pool_proj"}),
                                                 ("occlusion", {"patch": 56, "stride": 56})])  # fmt: skip
def test_googlenet_maps_with_the_default_are_those_of_the_caffe_mean(googlenet, cat, method, options):
    model, variables = googlenet
    default = gj.METHODS[method](model, variables, cat, **options)
    caffe = gj.METHODS[method](model, variables, cat, baseline=(122.6789, 116.6687, 104.0069), **options)
    np.testing.assert_array_equal(np.asarray(default.map), np.asarray(caffe.map))

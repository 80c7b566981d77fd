"""Explanations point at the evidence in 3-D and 1-D: a volume CNN and a signal CNN trained here
(`gradcam_jax.toys.nd`), the pointing game on held-out samples for the CAM family, occlusion and
integrated gradients, against random maps (scripts/pointing_nd.py prints the figures)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import nd as toy_nd

MARGIN = 0.4  # a method must hit this much more often than random maps (which hit about the object's share)


def trained(make_model, data, steps, batch, learning_rate):
    model, variables, losses = toy.train(seed=0, steps=steps, batch=batch, model=make_model(), data=data,
                                         learning_rate=learning_rate)  # fmt: skip
    held = data(jax.random.key(1_000), 24)
    return toy_nd.pointing(model, variables, held, toy_nd.POINTING_METHODS), losses


@pytest.fixture(scope="module")
def volumes():
    return trained(toy_nd.volume_cnn, toy_nd.make_volumes, 60, 16, 3e-3)


@pytest.fixture(scope="module")
def signals():
    return trained(toy_nd.signal_cnn, toy_nd.make_signals, 80, 32, 1e-2)


def test_toy_volumes_and_signals_hold_their_shapes():
    batch = toy_nd.make_volumes(jax.random.key(0), 12)
    assert batch.images.shape == (12, 24, 24, 24, 1) and batch.masks.shape == (12, 24, 24, 24)
    voxels = np.asarray(batch.masks.sum(axis=(1, 2, 3)))
    labels = np.asarray(batch.labels)
    assert (voxels[labels == 2] == 0).all() and (voxels[labels < 2] >= 27).all()  # radius >= 3: at least 3^3
    # the object is brighter than the rest on average
    inside = np.asarray((batch.images[..., 0] * batch.masks).sum(axis=(1, 2, 3))) / np.maximum(voxels, 1)
    assert (inside[labels < 2] > 0.4).all()
    traces = toy_nd.make_signals(jax.random.key(0), 12)
    assert traces.images.shape == (12, 128, 1) and traces.masks.shape == (12, 128)
    width = np.asarray(traces.masks.sum(axis=1))
    assert (width[np.asarray(traces.labels) == 2] == 0).all() and (width[np.asarray(traces.labels) < 2] >= 7).all()


@pytest.mark.parametrize("kind", ["volumes", "signals"])
def test_maps_point_at_the_object_far_more_often_than_random_maps(kind, request):
    report, losses = request.getfixturevalue(kind)
    assert float(losses[-10:].mean()) < float(losses[:10].mean()) - 0.1  # it learned (from ln 3 = 1.10)
    assert report.random < 0.2
    for name, share in report.shares.items():
        assert share >= report.random + MARGIN, (kind, name, share, report.random)

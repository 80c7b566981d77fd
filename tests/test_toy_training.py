"""A CNN trained here with optax on shapes made on the fly: Grad-CAM must point at the shape
(the pointing game), far more often than a map that ignores the image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradcam_jax.toys import classifier as toy


@pytest.fixture(scope="module")
def trained(toy_classifier):
    return toy_classifier


@pytest.fixture(scope="module")
def report(trained):
    model, variables, _ = trained
    report = toy.evaluate(model, variables)
    print(
        f"\ntoy pointing game (256 held-out images): accuracy {report.accuracy:.3f}, "
        f"Grad-CAM peak on the shape {report.pointing:.3f} (within {toy.TOLERANCE:g} px: {report.pointing_near:.3f}); "
        f"random maps {report.random_pointing:.3f} ({report.random_near:.3f}); shape area {report.area:.3f}"
    )
    return report


def test_training_learns(trained, report):
    _, _, losses = trained
    assert float(losses[-50:].mean()) < 0.5 * float(losses[:10].mean())
    assert report.accuracy >= 0.85


def test_grad_cam_wins_the_pointing_game(report):
    assert report.pointing >= 0.9
    assert report.pointing_near >= report.pointing
    assert report.random_pointing <= 0.2 and report.random_near <= 0.25
    assert report.pointing - report.random_pointing >= 0.6


def test_shapes_are_the_shapes_they_claim():
    """Masks against hand-derived geometry: areas (pi r^2, (1.7 r)^2, two bars less their overlap)."""
    r = 20.0
    labels = jnp.array([0, 1, 2])
    masks = np.asarray(toy.shape_masks(labels, jnp.full((3, 2), 50.0), jnp.full((3,), r), 101))
    side, arm = 2 * 0.85 * r, 2 * r / 3
    expected = [side**2, np.pi * r**2, 2 * (2 * r) * arm - arm**2]
    np.testing.assert_allclose(masks.sum(axis=(1, 2)), expected, rtol=0.06)
    assert masks[2, 50, 50] and not masks[2, 50 - 15, 50 - 15]  # the cross is empty between its arms
    assert masks[0, 50 - 15, 50 - 15] and not masks[1, 50 - 15, 50 - 15]  # the square has corners


def test_batches_are_reproducible_and_labelled():
    a, b = toy.make_batch(jax.random.key(5), 64), toy.make_batch(jax.random.key(5), 64)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (64, 32, 32, 1) and a.images.dtype == jnp.float32
    assert set(np.asarray(a.labels).tolist()) == {0, 1, 2}
    # every shape lies wholly inside the image and is brighter than the background on average
    masks = np.asarray(a.masks)
    assert not masks[:, 0].any() and not masks[:, -1].any() and not masks[:, :, 0].any() and not masks[:, :, -1].any()
    inside = (np.asarray(a.images[..., 0]) * masks).sum((1, 2)) / masks.sum((1, 2))
    assert (inside > 0.4).all()


def test_pointing_hits_by_hand():
    masks = np.zeros((3, 5, 5), bool)
    masks[:, 1:3, 1:3] = True
    maps = np.zeros((3, 5, 5), np.float32)
    maps[0, 2, 2] = 1  # on the mask
    maps[1, 3, 2] = 1  # 1 px below it
    maps[2, 4, 4] = 1  # 2 px diagonally away
    np.testing.assert_array_equal(toy.pointing_hits(maps, masks), [True, False, False])
    np.testing.assert_array_equal(toy.pointing_hits(maps, masks, 1.0), [True, True, False])
    np.testing.assert_array_equal(toy.peaks(maps), [[2, 2], [3, 2], [4, 4]])

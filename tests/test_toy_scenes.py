"""Targets other than classes, on models trained here with optax: Seg-Grad-CAM on a toy segmentation
network must point at the shape in the region it is asked about, and similarity to the mean
embedding of squares must point at the square, far more often than maps that ignore the image."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax import targets
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import scenes as toy_scenes


@pytest.fixture(scope="module")
def segmentation_report():
    model, variables, losses = toy_scenes.train_segmentation(seed=0)  # 150 steps of 16 scenes
    assert float(losses[-20:].mean()) < 0.25 * float(losses[:5].mean())
    report = toy_scenes.evaluate_segmentation(model, variables)
    print(
        f"\nSeg-Grad-CAM at {toy_scenes.SEG_LAYER} (128 held-out scenes): pixel accuracy {report.pixel_accuracy:.3f}; "
        f"'square' over the square: peak on it {report.square:.3f} (random maps {report.random_square:.3f}); "
        f"'cross' around the cross: {report.cross:.3f} (random {report.random_cross:.3f})"
    )
    return report


def test_scenes_hold_a_square_and_a_cross_apart():
    scenes = toy_scenes.make_scenes(jax.random.key(0), 16)
    assert scenes.images.shape == (16, 32, 32, 1) and scenes.labels.shape == (16, 32, 32)
    assert bool(scenes.square.any(axis=(1, 2)).all()) and bool(scenes.cross.any(axis=(1, 2)).all())
    assert not bool((scenes.square & scenes.cross).any())
    np.testing.assert_array_equal(np.asarray(scenes.labels == 1), np.asarray(scenes.square))


def test_seg_grad_cam_points_at_the_shape_in_the_region(segmentation_report):
    report = segmentation_report
    assert report.pixel_accuracy >= 0.95
    assert report.square >= 0.9 and report.cross >= 0.85
    assert report.random_square <= 0.2 and report.random_cross <= 0.2


def test_similarity_to_the_mean_square_points_at_the_square(toy_classifier):
    _, variables, _ = toy_classifier
    concept = toy_scenes.mean_embedding(variables, "square")
    scenes = toy_scenes.make_scenes(jax.random.key(7), 128)
    result = gj.grad_cam(toy_scenes.toy_embedding, variables, scenes.images, targets.similarity(concept),
                         layer=toy.LAYER, relu=True)  # fmt: skip
    on_square = float(toy.pointing_hits(result.map, scenes.square).mean())
    on_cross = float(toy.pointing_hits(result.map, scenes.cross).mean())
    print(f"\nsimilarity to the mean square embedding: peak on the square {on_square:.3f}, on the cross {on_cross:.3f}")
    assert on_square >= 0.9 and on_cross <= 0.1

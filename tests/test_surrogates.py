"""The surrogate-model methods (`lime`, `kernel_shap`, `image_lime`) against references written out
here in numpy: the perturbed images built pixel by pixel, scored by the model, weighted by each
method's kernel and fitted by scikit-learn's own `Lasso` / `LinearRegression` (run to full precision);
on a linear model, against the exact per-feature contributions worked out by hand. Their comparison
with captum's `Lime` and `KernelShap` on GoogLeNet (the same draws on both sides) is in
test_originals.py."""

from __future__ import annotations

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CAT_BOX, DOG_BOX

import gradcam_jax as gj
from gradcam_jax._src.methods.image_lime import superpixels
from gradcam_jax._src.methods.surrogate import lasso, least_squares

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"


class Linear(nn.Module):
    """S(x) = sum w * x + b: every feature adds its own share, whatever else is on."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class Bumpy(nn.Module):
    """A small nonlinear model, so that the fits have residuals to weigh."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1) / 4)))


def rescaled(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min())


def patch_ids(shape, patch) -> np.ndarray:
    """Row-major index of each pixel's (ph, pw) patch, short patches at the end."""
    rows, cols = np.arange(shape[0]) // patch[0], np.arange(shape[1]) // patch[1]
    return rows[:, None] * (-(-shape[1] // patch[1])) + cols[None, :]


def scene(seed: int, n: int) -> np.ndarray:
    """(n, 12, 12, 3) RGB 0..255: four slanted regions of random colours, a little noise; SLIC follows them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:12, :12]
    region = (yy > 4) * 2 + ((xx + yy // 2) > 6)
    colours = rng.uniform(0, 255, (n, 4, 3))
    return (np.stack([c[region] for c in colours]) + rng.normal(0, 5, (n, 12, 12, 3))).astype(np.float32)


def reference_maps(model, variables, x, targets, ids, fills, kept, weigh, fit) -> np.ndarray:
    """(B, K, H, W) maps computed sample by sample: image b with the features off in row s of `kept`
    at fills[b], the model's scores, weigh(original, perturbed, row) and fit(design, y, weights)."""
    out = np.zeros((*targets.shape, *x.shape[1:3]))
    for b in range(len(x)):
        perturbed = np.stack([np.where(row[ids[b]][..., None], x[b], fills[b]) for row in kept])
        scores = np.asarray(model.apply(variables, perturbed), np.float64)
        weights = np.array([weigh(x[b], p, row) for p, row in zip(perturbed, kept)])
        for k, c in enumerate(targets[b]):
            out[b, k] = rescaled(fit(kept.astype(np.float64), scores[:, c], weights)[ids[b]])
    return out


def test_the_fits_are_scikit_learns():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    design = (rng.random((30, 8)) < 0.5).astype(np.float32)
    truth = rng.normal(size=8) * (rng.random(8) < 0.6)  # some features do nothing: zeros in the Lasso
    scores = ((design @ truth)[:, None, None] + 0.3 * rng.normal(size=(30, 2, 2)) + 2).astype(np.float32)
    weights = rng.uniform(0.2, 1.0, (30, 2)).astype(np.float32)
    ours_lasso = np.asarray(jax.jit(lasso, static_argnums=3)(design, scores, weights, 0.05))
    few = design[:6]  # 6 samples, 8 features: the minimum-norm least-squares solution
    ours_few = np.asarray(jax.jit(least_squares)(few, scores[:6], weights[:6]))
    zeros = 0
    for b in range(2):
        for k in range(2):
            fitted = sklearn.Lasso(alpha=0.05, tol=1e-12, max_iter=10**6)
            fitted.fit(design.astype(np.float64), scores[:, b, k].astype(np.float64), sample_weight=weights[:, b])
            np.testing.assert_allclose(ours_lasso[b, k], fitted.coef_, atol=2e-6)
            zeros += int((fitted.coef_ == 0).sum())
            assert ((ours_lasso[b, k] == 0) == (fitted.coef_ == 0)).all()
            regression = sklearn.LinearRegression().fit(few, scores[:6, b, k], sample_weight=weights[:6, b])
            np.testing.assert_allclose(ours_few[b, k], regression.coef_, atol=1e-5)
    assert zeros > 0  # the Lasso really dropped features


def test_lime_is_captums_recipe_with_scikit_learns_lasso():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 2)).astype(np.float32)
    model = Bumpy()
    variables = model.init(jax.random.key(0), x)
    targets = np.array([[1, 2], [0, 1]], np.int32)
    fill = np.array([0.5, -1.0], np.float32)
    kept = np.asarray(jax.random.bernoulli(jax.random.key(3), 0.5, (24, 4)))  # the draws its doc promises

    def weigh(original, perturbed, _):  # captum: exp(-d^2 / (2 * 1^2)), d the inputs' cosine distance
        a, p = original.ravel().astype(np.float64), perturbed.ravel().astype(np.float64)
        return np.exp(-((1 - a @ p / (np.linalg.norm(a) * np.linalg.norm(p))) ** 2) / 2)

    def fit(design, y, weights):
        return sklearn.Lasso(alpha=0.01, tol=1e-12, max_iter=10**6).fit(design, y, sample_weight=weights).coef_

    ids = np.broadcast_to(patch_ids((6, 5), (4, 3)), (2, 6, 5))
    expected = reference_maps(model, variables, x, targets, ids, [fill, fill], kept, weigh, fit)
    result = gj.lime(model, variables, x, targets, patch=(4, 3), baseline=(0.5, -1.0), samples=24, key=3)
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=1e-4)
    other = gj.lime(model, variables, x, targets, patch=(4, 3), baseline=(0.5, -1.0), samples=24, key=4)
    assert not np.allclose(np.asarray(other.map), expected, atol=1e-2)  # the key matters


@pytest.mark.oldest
def test_kernel_shap_of_a_linear_model_is_the_exact_shapley_values():
    # S linear: the Shapley value of a patch is sum over it of w * (x - baseline), and the weighted
    # fit recovers it exactly from any draws that determine it. Patches (4, 3) on 6 x 5: 4 features,
    # short ones at the end.
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 2)).astype(np.float32)
    variables = Linear().init(jax.random.key(0), x)
    w = np.asarray(variables["params"]["Dense_0"]["kernel"]).reshape(6, 5, 2, 3)
    baseline = np.array([0.5, -1.0], np.float32)
    targets = np.array([[1, 2], [0, 1]], np.int32)
    ids = patch_ids((6, 5), (4, 3))
    expected = np.zeros((2, 2, 6, 5))
    for b in range(2):
        for k, c in enumerate(targets[b]):
            contribution = (w[..., c] * (x[b] - baseline)).sum(axis=-1)  # (6, 5)
            expected[b, k] = rescaled(np.bincount(ids.ravel(), contribution.ravel())[ids])
    for key in (0, 7):
        result = gj.kernel_shap(
            Linear(), variables, x, targets, patch=(4, 3), baseline=(0.5, -1.0), samples=12, key=key
        )
        np.testing.assert_allclose(np.asarray(result.map), expected, atol=1e-4)
    with pytest.raises(ValueError, match="at least 2 patches"):
        gj.kernel_shap(Linear(), variables, x, targets, patch=6)


# the user's own regions (MATLAB's label matrix): rows of stripes and a disc, label 3 unused
YY, XX = np.mgrid[:12, :12]
REGIONS = np.where((YY - 6) ** 2 + (XX - 6) ** 2 < 10, 5, np.where(YY < 4, 0, np.where(XX < 7, 1, 4)))


@pytest.mark.parametrize("segmentation", ["grid", "superpixels", "labels"])
def test_image_lime_of_a_linear_model_is_each_superpixels_contribution(segmentation):
    # S linear and the left-out superpixels at the image's mean pixel: the least-squares coefficient
    # of a superpixel is sum over it of w * (x - mean), whatever the weights
    x = scene(3, 2)
    variables = Linear().init(jax.random.key(0), x)
    w = np.asarray(variables["params"]["Dense_0"]["kernel"]).reshape(12, 12, 3, 3)
    if segmentation == "superpixels":
        ids = superpixels(x, 4)
    else:
        ids = np.broadcast_to(REGIONS if segmentation == "labels" else patch_ids((12, 12), (6, 6)), (2, 12, 12))
    assert all(len(np.unique(i)) > 2 for i in ids)
    targets = np.array([[1, 2], [0, 1]], np.int32)
    expected = np.zeros((2, 2, 12, 12))
    for b in range(2):
        for k, c in enumerate(targets[b]):
            contribution = (w[..., c] * (x[b] - x[b].mean(axis=(0, 1)))).sum(axis=-1)
            expected[b, k] = rescaled(np.bincount(ids[b].ravel(), contribution.ravel())[ids[b]])
    option = REGIONS if segmentation == "labels" else segmentation
    result = gj.image_lime(
        Linear(), variables, x, targets, score="logit", segments=4, samples=40, segmentation=option, key=1
    )
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=1e-4)


def test_image_lime_weights_are_matlabs_kernel_on_the_on_off_vectors():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x = scene(4, 1)
    model = Bumpy()
    variables = model.init(jax.random.key(2), x)
    ids = superpixels(x, 4)
    count = 8  # room for 2 x features labels; those no pixel has are left out of the fit
    kept = np.asarray(jax.random.bernoulli(jax.random.key(6), 0.5, (30, count)))
    present = np.isin(np.arange(count), ids)

    def weigh(original, perturbed, row):  # exp(-d^2 / 0.25^2), d = 1 - cos(z, 1) over its superpixels
        z = row[present].astype(np.float64)
        cosine = z.sum() / (np.linalg.norm(z) * np.sqrt(len(z))) if z.any() else 0.0
        return np.exp(-((1 - cosine) ** 2) / 0.25**2)

    def fit(design, y, weights):
        coef = np.zeros(count)
        coef[present] = sklearn.LinearRegression().fit(design[:, present], y, sample_weight=weights).coef_
        return coef

    targets = np.array([[0, 2]], np.int32)
    expected = reference_maps(model, variables, x, targets, ids, [x[0].mean(axis=(0, 1))], kept, weigh, fit)
    result = gj.image_lime(model, variables, x, targets, score="logit", segments=4, samples=30, key=6)
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=1e-4)


def test_superpixels_are_slics():
    segmentation = pytest.importorskip("skimage.segmentation")
    x = np.random.default_rng(5).uniform(0, 255, (1, 16, 16, 3))
    labels = superpixels(x, 6)[0]
    theirs = segmentation.slic(x[0] / 255, n_segments=6, compactness=10, start_label=0)  # x spans ~0..255
    assert labels.dtype == np.int32 and labels.min() == 0 and labels.max() < 12
    pairs = set(zip(labels.ravel().tolist(), theirs.ravel().tolist()))
    assert len(pairs) == len(np.unique(labels)) == len(np.unique(theirs))  # the same partition


def test_image_lime_refuses_what_is_not_an_rgb_photo():
    x = np.zeros((1, 8, 8, 2), np.float32)
    variables = Linear().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="RGB images"):
        gj.image_lime(Linear(), variables, x)
    with pytest.raises(ValueError, match="unknown segmentation"):
        gj.image_lime(Linear(), variables, np.zeros((1, 8, 8, 3), np.float32), segmentation="slic")
    with pytest.raises(ValueError, match=r"one \(H, W\) = \(8, 8\) array; got shape \(1, 8, 8\)"):
        gj.image_lime(Linear(), variables, np.zeros((1, 8, 8, 3), np.float32), segmentation=np.zeros((1, 8, 8), int))
    with pytest.raises(ValueError, match="non-negative integers"):
        gj.image_lime(Linear(), variables, np.zeros((1, 8, 8, 3), np.float32), segmentation=-np.ones((8, 8), int))


def test_image_lime_without_scikit_image_says_which_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else 1)
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ImportError, match=r"gradcam-jax\[lime\]"):
        gj.image_lime(Linear(), Linear().init(jax.random.key(0), x), x, samples=4)


def superpixel_peak_in(m: np.ndarray, box) -> bool:
    """Whether the centre of the map's top region (its highest superpixel) lies in `box` (y0, y1, x0, x1)."""
    ys, xs = np.nonzero(m >= m.max() - 1e-6)
    return box[0] <= ys.mean() < box[1] and box[2] <= xs.mean() < box[3]


def test_image_lime_peaks_on_the_animal_asked_for(googlenet, cat_dog):
    result = gj.image_lime(*googlenet, cat_dog, np.array([[DOG, CAT]]), samples=64, key=0, batch_size=32)
    dog, cat = np.asarray(result.map[0])
    assert superpixel_peak_in(dog, DOG_BOX) and superpixel_peak_in(cat, CAT_BOX)
    assert not superpixel_peak_in(dog, CAT_BOX) and not superpixel_peak_in(cat, DOG_BOX)

"""The complexity metrics against Quantus 0.6.0 on the same random maps (signals and images: Quantus takes
no volumes), and by hand on tiny fixtures in 1-D, 2-D and 3-D (no torch)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradcam_jax import metrics

B = 4
PAIRS = [
    (metrics.sparseness, "Sparseness", {}),
    (metrics.complexity, "Complexity", {}),
    (metrics.effective_complexity, "EffectiveComplexity", {"eps": 0.3}),
    (metrics.effective_complexity, "EffectiveComplexity", {}),
]


@pytest.mark.parametrize("spatial", [(40,), (9, 11)])
@pytest.mark.parametrize("ours, theirs, options", PAIRS, ids=lambda p: p if isinstance(p, str) else "")
def test_equals_quantus(spatial, ours, theirs, options):
    """One image per Quantus call: Quantus normalises the batch by the batch's largest |value|, we each
    map by its own (with one map they are the same)."""
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    maps = np.random.default_rng(0).normal(size=(B, *spatial)).astype(np.float32)
    maps[1] *= 5  # a map on another scale than its neighbours
    maps[2][maps[2] < 0.5] = 0  # zeros for effective complexity's threshold to find
    metric = getattr(quantus, theirs)(disable_warnings=True, **options)
    expected = [
        metric(
            model=None,
            x_batch=np.zeros((1, 1, *spatial), np.float32),
            y_batch=np.zeros(1, int),
            a_batch=maps[i : i + 1],
        )
        for i in range(B)
    ]
    got = ours(maps, **options)
    np.testing.assert_allclose(got.per_image, np.ravel(expected), rtol=1e-4)
    assert float(got.aggregate) == pytest.approx(np.mean(expected), rel=1e-4)


def test_effective_complexity_does_not_depend_on_the_batch():
    """Quantus's batch-wide normalisation changes a map's count with its neighbours; ours does not."""
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    small = np.linspace(0.1, 1.0, 10, dtype=np.float32)[None]
    big = 100 * np.ones((1, 10), np.float32)
    ours_alone = metrics.effective_complexity(small, eps=0.05).per_image
    ours_beside = metrics.effective_complexity(np.concatenate([small, big]), eps=0.05).per_image[:1]
    theirs_beside = quantus.EffectiveComplexity(disable_warnings=True, eps=0.05)(
        model=None,
        x_batch=np.zeros((2, 1, 10), np.float32),
        y_batch=np.zeros(2, int),
        a_batch=np.concatenate([small, big]),
    )[0]
    np.testing.assert_array_equal([ours_alone, ours_beside], 10)
    assert theirs_beside == 0  # every value of the small map is below 0.05 x 100


@pytest.mark.parametrize("spatial", [(8,), (2, 4), (2, 2, 2)])
def test_by_hand(spatial):
    """An even map: Gini 0, entropy log(8), 8 effective pixels; one pixel: Gini (n - 1) / n up to
    Quantus's 1e-7 shift, entropy 0, one effective pixel; on 1-D, 2-D and 3-D maps alike."""
    even = np.ones((1, *spatial), np.float32)
    one = np.zeros((1, *spatial), np.float32)
    one.reshape(-1)[5] = -3.0  # abs (the default) counts it
    maps = np.concatenate([even, one])
    np.testing.assert_allclose(metrics.sparseness(maps).per_image, [0, 7 / 8], atol=1e-5)
    np.testing.assert_allclose(metrics.complexity(maps).per_image, [np.log(8), 0], atol=1e-5)
    np.testing.assert_array_equal(metrics.effective_complexity(maps).per_image, [8, 1])
    # two values a, b of eight: the Gini index of their sorted values by its formula
    two = np.zeros((1, *spatial), np.float32)
    two.reshape(-1)[[0, 7]] = [1.0, 3.0]
    a = np.sort(np.abs(two.reshape(-1)) / 3 + 1e-7)
    gini = ((2 * np.arange(1, 9) - 9) * a).sum() / (8 * a.sum())
    np.testing.assert_allclose(metrics.sparseness(two).per_image, [gini], rtol=1e-5)
    p = np.array([1, 3]) / 4
    np.testing.assert_allclose(metrics.complexity(two).per_image, [-(p * np.log(p)).sum()], rtol=1e-5)


def test_bad_input_is_one_line():
    for fn in (metrics.sparseness, metrics.complexity, metrics.effective_complexity):
        with pytest.raises(ValueError, match="maps=") as err:
            fn()
        assert "\n" not in str(err.value)

"""The localisation metrics against Quantus 0.6.0 on the same random maps and masks (signals and images:
Quantus takes no volumes), and by hand on tiny fixtures in 1-D, 2-D and 3-D (no torch)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from gradcam_jax import metrics

B = 5
# (our function, Quantus's class, options): Quantus's defaults and some of their variants
PAIRS = [
    (metrics.pointing_game, "PointingGame", {}),
    (metrics.attribution_localisation, "AttributionLocalisation", {}),
    (metrics.attribution_localisation, "AttributionLocalisation", {"positive_attributions": True, "abs": False}),
    (metrics.top_k_intersection, "TopKIntersection", {"k": 7}),
    (metrics.top_k_intersection, "TopKIntersection", {"k": 9, "concept_influence": True, "abs": True}),
    (metrics.relevance_mass_accuracy, "RelevanceMassAccuracy", {"abs": True}),
    (metrics.relevance_mass_accuracy, "RelevanceMassAccuracy", {}),
    (metrics.relevance_rank_accuracy, "RelevanceRankAccuracy", {}),
    (metrics.auc, "AUC", {}),
]


def random_case(spatial: tuple[int, ...], seed: int = 0):
    """Signed maps without ties, masks of about 40% of each map, one empty mask (the last)."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(B, *spatial)).astype(np.float32)
    masks = (rng.random((B, *spatial)) < 0.4).astype(np.float32)
    masks[-1] = 0
    return maps, masks


@pytest.mark.parametrize("spatial", [(40,), (9, 11)])
@pytest.mark.parametrize("ours, theirs, options", PAIRS, ids=lambda p: p if isinstance(p, str) else "")
def test_equals_quantus(spatial, ours, theirs, options):
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    warnings.filterwarnings("ignore", module="sklearn")  # sklearn's ROC warns on the empty mask
    maps, masks = random_case(spatial)
    x = np.zeros((B, 1, *spatial), np.float32)  # Quantus reads only the inputs' shape here
    expected = np.asarray(
        getattr(quantus, theirs)(disable_warnings=True, **options)(
            model=None, x_batch=x, y_batch=np.zeros(B, int), a_batch=maps, s_batch=masks[:, None]
        ),
        np.float64,
    )
    got = ours(maps, masks, **options)
    if theirs == "PointingGame":  # Quantus 0.6.0 casts its NaN for an empty mask into its boolean hits
        assert expected[-1] == 1.0
        expected[-1] = np.nan
    np.testing.assert_allclose(got.per_image, expected, rtol=1e-4, atol=1e-6)
    assert np.isnan(got.per_image[-1])  # an empty mask
    assert np.isnan(got.aggregate) == np.isnan(expected).any()


def test_auc_with_many_ties_equals_quantus():
    """Maps of a few levels (runs of ties), where sklearn's ROC steps over each tied run at once."""
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    maps, masks = random_case((12, 10), seed=3)
    maps = np.round(maps * 2) / 2
    expected = quantus.AUC(disable_warnings=True)(
        model=None, x_batch=np.zeros((B - 1, 1, 12, 10), np.float32), y_batch=np.zeros(B - 1, int), a_batch=maps[:-1],
        s_batch=masks[:-1, None],
    )  # fmt: skip
    np.testing.assert_allclose(metrics.auc(maps[:-1], masks[:-1]).per_image, expected, rtol=1e-5)


def test_focus_equals_quantus():
    torch = pytest.importorskip("torch")
    quantus = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(B, 10, 13)).astype(np.float32)  # odd width: the right half takes the odd column
    positions = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 1, 0]])
    expected = quantus.Focus(disable_warnings=True)(
        model=torch.nn.Identity(),  # Focus asks for a torch model; with maps it calls none
        x_batch=np.zeros((B, 1, 10, 13), np.float32),
        y_batch=np.zeros(B, int),
        a_batch=maps,
        custom_batch=[tuple(p) for p in positions],
    )
    np.testing.assert_allclose(metrics.focus(maps, positions).per_image, expected, rtol=1e-4, atol=1e-6)


# ---- by hand, no torch ------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(6,), (4, 5), (2, 3, 4)])
def test_every_metric_by_hand(spatial):
    """Each metric on two maps whose answer can be read off: the top value on the mask (and the mask the
    top 2 values), then the top value off it; on 1-D, 2-D and 3-D maps alike."""
    n = int(np.prod(spatial))
    values = np.arange(1, n + 1, dtype=np.float32)  # n is the largest, n - 1 next
    on = np.zeros(n, np.float32)
    on[[n - 1, n - 2]] = 1  # the mask holds the two largest values
    off = np.zeros(n, np.float32)
    off[[0, 1]] = 1  # ... the two smallest
    maps = np.stack([values, values]).reshape(2, *spatial)
    masks = np.stack([on, off]).reshape(2, *spatial)
    total = values.sum()

    def check(fn, expected, **options):
        np.testing.assert_allclose(fn(maps, masks, **options).per_image, expected, rtol=1e-6, err_msg=fn.__name__)

    check(metrics.pointing_game, [1, 0])
    check(metrics.pointing_game, [1 - 2 / n, 0], weighted=True)
    check(metrics.attribution_localisation, [(2 * n - 1) / total, 3 / total])
    check(metrics.attribution_localisation, [(2 * n - 1) / total * 2 / n, 3 / total * 2 / n], weighted=True)
    check(metrics.top_k_intersection, [1, 0], k=2)
    check(metrics.top_k_intersection, [2 / 3, 0], k=3)
    check(metrics.top_k_intersection, [2 / 3 * n / 2, 0], k=3, concept_influence=True)
    check(metrics.relevance_mass_accuracy, [(2 * n - 1) / total, 3 / total])
    check(metrics.relevance_rank_accuracy, [1, 0])
    check(metrics.auc, [1, 0])


def test_auc_counts_ties_half():
    maps = np.array([[3.0, 1.0, 1.0, 1.0]], np.float32)
    masks = np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)
    # the one pixel on the mask ties with two off it and is beaten by one: (0 + 2 x 1/2) / 3
    np.testing.assert_allclose(metrics.auc(maps, masks).per_image, [1 / 3], rtol=1e-6)


def test_pointing_game_counts_every_tied_peak_and_a_tolerance():
    maps = np.zeros((2, 5, 5), np.float32)
    maps[:, 0, 0] = maps[:, 4, 4] = 1  # two peaks
    masks = np.zeros((2, 5, 5), np.float32)
    masks[0, 4, 4] = 1  # the second peak is on it
    masks[1, 2, 3] = 1  # 2 rows and 1 column from the second peak: sqrt(5) = 2.24 px
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks).per_image, [1, 0])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, ties="first").per_image, [0, 0])  # (0, 0) only
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=2.0).per_image, [1, 0])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=2.3).per_image, [1, 1])


@pytest.mark.parametrize("spatial", [(8,), (4, 6), (2, 4, 6)])
def test_focus_and_mosaics_by_hand(spatial):
    """All positive relevance in the target cells scores 1, none 0, an even map the target cells' share;
    `mosaics` puts image i of the indices into cell i."""
    d = len(spatial)
    cells = 2**d
    positions = np.zeros((3, cells), np.int32)
    positions[:, :2] = 1
    tiles = np.arange(cells, dtype=np.float32).reshape(-1, *(1,) * (d + 1)) * np.ones((cells, *spatial, 1), np.float32)
    mosaic = np.asarray(metrics.mosaics(tiles, np.arange(cells)[None]))[0, ..., 0]  # cell i holds the value i
    on_target = np.where(mosaic < 2, 1.0, -1.0)
    maps = np.stack([on_target, -on_target, np.ones_like(mosaic)]).astype(np.float32)
    np.testing.assert_allclose(metrics.focus(maps, positions).per_image, [1, 0, 2 / cells], atol=1e-6)
    # the first cell is the corner at the origin, the last the opposite one
    assert mosaic[(0,) * d] == 0 and mosaic[(-1,) * d] == cells - 1


def test_maps_from_a_method():
    """Given a method instead of maps: the method's maps are scored, the same as passing them."""
    import flax.linen as nn

    from gradcam_jax import METHODS

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(3, (3, 3), name="conv")(x))
            return nn.Dense(2, name="head")(x.mean(axis=(1, 2)))

    model = Tiny()
    images = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype(np.float32)
    variables = model.init(__import__("jax").random.key(0), jnp.asarray(images))
    targets = np.array([0, 1])
    masks = np.zeros((2, 6, 6), np.float32)
    masks[:, 1:4, 2:5] = 1
    given = METHODS["saliency"](model, variables, images, targets).map
    for fn in (metrics.pointing_game, metrics.relevance_rank_accuracy, metrics.auc):
        by_name = fn(None, masks, model=model, variables=variables, images=images, targets=targets, method="saliency")
        np.testing.assert_allclose(by_name.per_image, fn(given, masks).per_image, rtol=1e-6)


def never_run(*args, **options):
    raise AssertionError("the method ran before the input was checked")


def test_bad_input_is_one_line():
    maps, masks = random_case((4, 4))
    cases = [
        (lambda: metrics.pointing_game(maps), "segmentation mask"),
        (lambda: metrics.auc(maps, None), "segmentation mask"),
        (lambda: metrics.relevance_mass_accuracy(maps, masks[:, :3]), "s_batch must be"),
        (lambda: metrics.top_k_intersection(maps, masks, k=17), "k must be"),
        (lambda: metrics.focus(maps), "positions"),
        (lambda: metrics.pointing_game(None, masks), "maps="),
        (lambda: metrics.pointing_game(maps, masks, tolerance=-1), "tolerance"),
        (lambda: metrics.pointing_game(maps, masks, ties="last"), "ties"),
        # before the method runs: it would fail otherwise
        (lambda: metrics.auc(None, None, images=np.zeros((B, 4, 4, 3)), method=never_run), "segmentation mask"),
        (
            lambda: metrics.top_k_intersection(None, masks, images=np.zeros((B, 4, 4, 3)), method=never_run, k=99),
            "k must",
        ),
        (lambda: metrics.focus(None, np.ones((B, 3)), images=np.zeros((B, 4, 4, 3)), method=never_run), "positions"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError, match=words) as err:
            call()
        assert "\n" not in str(err.value)

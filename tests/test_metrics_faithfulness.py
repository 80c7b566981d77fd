"""The faithfulness metrics (`gradcam_jax.metrics`, issue 29) two ways: on a linear model, whose score
changes are sums of pixel contributions, worked out by hand in numpy (1-D, 2-D and 3-D inputs);
and against Quantus 0.6.0 (and captum 0.9's `infidelity`) on the PyTorch twin of a small CNN
(tests/test_deeplift.py's, weights copied), with the same maps and deterministic settings: a numeric
baseline, our random draws handed to theirs. Quantus counts channel values where we count pixels,
so its `features_in_step` and `subset_size` are ours x C."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from gradcam_jax import metrics
from gradcam_jax._src.evaluation import faithfulness, faithfulness_regions

# ---- hand-derived: a linear model ----------------------------------------------------------------


class Linear(nn.Module):
    """logit_k = sum_i v_ik x_i over every pixel and channel."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, use_bias=False, name="head")(x.reshape(x.shape[0], -1))


def linear(shape, seed=0):
    """The model, its variables, a batch of `shape` and the exact contributions of each pixel to
    logit 0 (v . x summed over channels), which a perfectly faithful map equals."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    v = rng.normal(size=(int(np.prod(shape[1:])), 2)).astype(np.float32)
    contributions = (x * v[:, 0].reshape(shape[1:])).sum(-1)
    return Linear(), {"params": {"head": {"kernel": jnp.asarray(v)}}}, x, contributions, v


def order(m):
    """Flat pixel order, most relevant first, ties to the earlier pixel."""
    return np.argsort(-m.ravel(), kind="stable")


@pytest.mark.parametrize("shape", [(2, 10, 1), (2, 6, 5, 2), (1, 3, 4, 3, 1)])
def test_pixel_flipping_and_estimate_by_hand(shape):
    model, variables, x, c, _ = linear(shape)
    t = np.zeros(shape[0], int)
    m = c + np.random.default_rng(1).normal(0, 0.3, c.shape).astype(np.float32)  # a noisy map
    flip = metrics.pixel_flipping(model, variables, x, m, t, features_in_step=2, baseline=0.0, score="logit")
    est = metrics.faithfulness_estimate(model, variables, x, m, t, features_in_step=2, baseline=0.0)
    for b in range(shape[0]):
        steps = order(m[b]).reshape(-1, 2)
        removed = np.cumsum([c[b].ravel()[s].sum() for s in steps])
        curve = c[b].sum() - removed
        np.testing.assert_allclose(flip.curve[b], curve, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(flip.per_image[b], np.trapezoid(curve), rtol=1e-4)
        drops = [c[b].ravel()[s].sum() for s in steps]
        sums = [m[b].ravel()[s].sum() for s in steps]
        np.testing.assert_allclose(est.per_image[b], np.corrcoef(drops, sums)[0, 1], rtol=1e-4)
    exact = metrics.faithfulness_estimate(model, variables, x, c, t, features_in_step=2, baseline=0.0)
    np.testing.assert_allclose(exact.per_image, 1.0, atol=1e-5)  # the contributions themselves: perfect


def test_faithfulness_correlation_draws_by_hand():
    model, variables, x, c, _ = linear((2, 6, 6, 1))
    m = c * np.random.default_rng(2).uniform(0.5, 1.5, c.shape).astype(np.float32)
    got = metrics.faithfulness_correlation(
        model, variables, x, m, [0, 0], nr_runs=7, subset_size=5, baseline=0.0, key=3
    )
    draws = np.asarray(faithfulness.subset_draws(3, 2, 36, 7, 5))
    assert all(len(set(d)) == 5 for d in draws.reshape(-1, 5))  # without replacement
    for b in range(2):
        drops = [c[b].ravel()[draws[r, b]].sum() for r in range(7)]
        sums = [m[b].ravel()[draws[r, b]].sum() for r in range(7)]
        np.testing.assert_allclose(got.per_image[b], np.corrcoef(drops, sums)[0, 1], rtol=1e-4)
    np.testing.assert_allclose(got.aggregate, got.per_image.mean())
    exact = metrics.faithfulness_correlation(model, variables, x, c, [0, 0], nr_runs=7, subset_size=5, baseline=0.0)
    np.testing.assert_allclose(exact.per_image, 1.0, atol=1e-5)


def test_monotonicity_and_correlation_by_hand():
    model, variables, x, c, v = linear((2, 8, 1))
    x[0, :, 0] *= np.sign(v[:, 0])  # image 0: every pixel adds to logit 0; image 1 has some that subtract
    c = (x[..., 0] * v[:, 0]).astype(np.float32)
    assert (c[0] > 0).all() and (c[1] < 0).any()
    got = metrics.monotonicity(model, variables, x, np.abs(c), [0, 0], features_in_step=2, baseline=0.0, score="logit")
    np.testing.assert_array_equal(got.per_image, [1.0, 0.0])
    ascending = np.argsort(np.abs(c[1]), kind="stable").reshape(-1, 2)
    np.testing.assert_allclose(got.curve[1], np.cumsum([c[1][s].sum() for s in ascending]), rtol=1e-4, atol=1e-5)
    corr = metrics.monotonicity_correlation(model, variables, x, c, [0, 0], features_in_step=2, nr_samples=1,
                                            baseline=0.0, abs=False, score="logit")  # fmt: skip
    logit = c.sum(-1)
    for b in range(2):
        steps = np.argsort(c[b], kind="stable").reshape(-1, 2)
        variances = [(c[b][s].sum() / logit[b]) ** 2 for s in steps]
        sums = [c[b][s].sum() for s in steps]
        expected = np.corrcoef(np.argsort(np.argsort(sums)), np.argsort(np.argsort(variances)))[0, 1]
        np.testing.assert_allclose(corr.per_image[b], expected, rtol=1e-4)


def test_regions_and_infidelity_by_hand():
    model, variables, x, c, v = linear((2, 5, 7, 1))
    m = c + np.random.default_rng(4).normal(0, 0.2, c.shape).astype(np.float32)
    # patch 3 on 5 x 7: padding (0, 1) rows and (1, 1) columns, so a 2 x 3 grid of patches
    ids, count = faithfulness_regions.patch_ids((5, 7), 3)
    assert count == 6 and ids[0, 0] == 0 and ids[0, 2] == 1 and ids[4, 6] == 5 and ids[2, 1] == 0 and ids[3, 1] == 3
    got = metrics.region_perturbation(model, variables, x, m, [0, 0], patch_size=3, baseline=0.0, score="logit")
    sel = metrics.selectivity(model, variables, x, m, [0, 0], patch_size=3, baseline=0.0, score="logit")
    inf = metrics.infidelity(model, variables, x, m, [0, 0], perturb_patch_sizes=(3, 5), baseline=0.0)
    for b in range(2):
        patch_c = np.array([c[b][ids == i].sum() for i in range(6)])
        patch_m = np.array([m[b][ids == i].sum() for i in range(6)])
        drops = np.cumsum(patch_c[np.argsort(-patch_m, kind="stable")])
        np.testing.assert_allclose(got.curve[b], drops, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.per_image[b], drops.mean(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(sel.curve[b], c[b].sum() - drops, rtol=1e-4, atol=1e-4)
        losses = []
        for size in (3, 5):
            pid, n = faithfulness_regions.patch_ids((5, 7), size)
            c_drop = np.cumsum([c[b][pid == i].sum() for i in range(n)])
            explained = np.cumsum([(m[b] * x[b, ..., 0])[pid == i].sum() for i in range(n)])
            losses.append(np.mean((c_drop - explained) ** 2))
        np.testing.assert_allclose(inf.per_image[b], np.mean(losses), rtol=1e-4)
    exact = metrics.infidelity(model, variables, x, c / x[..., 0], [0, 0], perturb_patch_sizes=(3, 5), baseline=0.0)
    np.testing.assert_allclose(exact.per_image, 0.0, atol=1e-6)  # the map is the weights: perfect
    sampled = metrics.sampled_infidelity(model, variables, x, c / x[..., 0], [0, 0], noise=0.5, n_perturb_samples=4)
    np.testing.assert_allclose(sampled.per_image, 0.0, atol=1e-6)
    rough = metrics.sampled_infidelity(model, variables, x, m, [0, 0], noise=0.5, n_perturb_samples=4, key=1)
    draws = 0.5 * np.asarray(faithfulness_regions.noise_draws(1, 4, x.shape))[..., 0]
    for b in range(2):
        wrong = ((m[b] - c[b] / x[b, ..., 0]) * draws[:, b]).sum((1, 2))  # the map's error times I
        np.testing.assert_allclose(rough.per_image[b], np.mean(wrong**2), rtol=1e-4)


def test_volume_patches_and_irof_by_hand():
    model, variables, x, c, _ = linear((1, 4, 4, 4, 1))
    ids, count = faithfulness_regions.patch_ids((4, 4, 4), 2)
    assert count == 8 and ids[3, 3, 3] == 7 and ids[0, 2, 1] == 2
    m = c + 0.1
    got = metrics.region_perturbation(model, variables, x, m, [0], patch_size=2, baseline=0.0, score="logit")
    patch_c = np.array([c[0][ids == i].sum() for i in range(8)])
    patch_m = np.array([m[0][ids == i].sum() for i in range(8)])
    np.testing.assert_allclose(got.curve[0], np.cumsum(patch_c[np.argsort(-patch_m, kind="stable")]), rtol=1e-4)
    # IROF on a signal with 3 hand segments (labels 0..2), the score as a fraction of the untouched one
    model, variables, x, c, _ = linear((1, 9, 1), seed=5)
    x = np.abs(x)
    segments = np.array([[0, 0, 1, 1, 1, 2, 2, 2, 2]])
    m = np.random.default_rng(6).uniform(size=(1, 9)).astype(np.float32)
    got = metrics.irof(model, variables, x, m, [0], segments=segments, baseline=0.0, score="logit")
    means = [m[0][segments[0] == s].mean() for s in range(3)]
    removed = np.cumsum([c[0][segments[0] == s].sum() for s in np.argsort(-np.array(means))])
    ratio = (c[0].sum() - removed) / c[0].sum()
    np.testing.assert_allclose(got.curve[0], ratio, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.per_image[0], 3 - np.trapezoid(ratio), rtol=1e-4)


def test_sensitivity_n_and_sufficiency_by_hand():
    model, variables, x, c, _ = linear((4, 3, 3, 1))
    m = c + np.random.default_rng(7).normal(0, 0.5, c.shape).astype(np.float32)
    got = metrics.sensitivity_n(model, variables, x, m, [0] * 4, features_in_step=1, n_max_percentage=0.5,
                                baseline=0.0, score="logit")  # fmt: skip
    assert got.per_n.shape == (4,)  # int(0.5 x 9 // 1)
    orders = [order(m[b]) for b in range(4)]
    for n in range(4):
        drops = [c[b].ravel()[orders[b][: n + 1]].sum() for b in range(4)]
        sums = [m[b].ravel()[orders[b][n]] for b in range(4)]
        np.testing.assert_allclose(got.per_n[n], np.corrcoef(drops, sums)[0, 1], rtol=1e-4)
    # sufficiency: images 0, 1 have near maps and the same class; image 2 near 0 and 1 but another class
    model, variables, x, _, v = linear((4, 2, 2, 1))
    maps = np.array([[0, 0, 0, 0], [0.1, 0, 0.1, 0], [0.1, 0.1, 0, 0], [5, 4, 6, 5]], np.float32).reshape(4, 2, 2)
    predicted = (x.reshape(4, -1) @ v).argmax(-1)
    got = metrics.sufficiency(model, variables, x, maps, [0] * 4, threshold=0.3)
    flat = maps.reshape(4, -1)
    d = np.sqrt((((flat[:, None] - flat[None]) ** 2) / flat.var(0, ddof=1)).sum(-1))
    similar = (d / d.max() <= 0.3) & ~np.eye(4, dtype=bool)
    expected = [(similar[i] & (predicted == predicted[i])).sum() / max(similar[i].sum(), 1) for i in range(4)]
    np.testing.assert_allclose(got.per_image, expected, rtol=1e-6)
    assert similar[3].sum() == 0 and similar[0].sum() == 2


def test_a_method_by_name_gives_the_maps_it_computes():
    model, variables, x, _, _ = linear((2, 6, 6, 3))
    from gradcam_jax import saliency

    maps = np.asarray(saliency(model, variables, x, np.array([0, 1])).map)
    settings = dict(features_in_step=6, baseline=0.0)
    by_name = metrics.pixel_flipping(model, variables, x, targets=[0, 1], method="saliency", **settings)
    by_maps = metrics.pixel_flipping(model, variables, x, maps, [0, 1], **settings)
    np.testing.assert_array_equal(by_name.curve, by_maps.curve)
    with pytest.raises(ValueError, match="not both"):
        metrics.pixel_flipping(model, variables, x, maps, [0, 1], method="saliency", **settings)
    with pytest.raises(ValueError, match="pass a method as method="):
        metrics.pixel_flipping(model, variables, x, "saliency", [0, 1], **settings)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: metrics.pixel_flipping(*a, features_in_step=0), "features_in_step must be 1..256"),
        (lambda a: metrics.faithfulness_estimate(*a, features_in_step=256), "it needs 2"),
        (lambda a: metrics.faithfulness_correlation(*a, subset_size=0), "subset_size must be an int 1..255"),
        (lambda a: metrics.faithfulness_correlation(*a, nr_runs=1), "nr_runs must be an int at least 2"),
        (lambda a: metrics.sensitivity_n(*a, n_max_percentage=0.0), "leaves no step"),
        (lambda a: metrics.region_perturbation(*a, regions_evaluation=0), "regions_evaluation must be"),
        (lambda a: metrics.region_perturbation(*a, patch_size=0), "patch_size must be an int 1..16"),
        (lambda a: metrics.region_perturbation(*a, order="best"), "order must be one of"),
        (lambda a: metrics.infidelity(*a, perturb_patch_sizes=()), "nothing would be perturbed"),
        (lambda a: metrics.sampled_infidelity(*a, noise=0.0), "perturbs nothing"),
        (lambda a: metrics.monotonicity_correlation(*a, nr_samples=0), "nr_samples must be"),
        (lambda a: metrics.irof(*a, segments=np.zeros((2, 5, 5), int)), r"segments must be \(B, \*spatial\)"),
        (lambda a: metrics.sufficiency(a[0], a[1], a[2][:1], a[3][:1], a[4][:1]), "at least 2"),
    ],
)
def test_settings_that_perturb_nothing_are_one_line_errors(call, message):
    model, variables, x, c, _ = linear((2, 16, 16, 1))
    with pytest.raises(ValueError, match=message) as error:
        call((model, variables, x, c, np.array([0, 0])))
    assert "\n" not in str(error.value)


# ---- against Quantus 0.6.0 and captum on a PyTorch twin ------------------------------------------


@pytest.fixture(scope="module")
def twin():
    """The torch CNN, our linen twin with its weights, 3 images (12 x 12 x 3, 0..1), distinct maps
    and targets; Quantus's NCHW views of them."""
    pytest.importorskip("quantus")
    from tests.test_deeplift import Twin, torch_twin, twin_variables

    torch, net = torch_twin()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 12, 12, 3)).astype(np.float32)
    maps = rng.permutation(3 * 144).reshape(3, 12, 12).astype(np.float32) / 432  # no ties
    targets = np.array([0, 3, 1])
    return dict(
        torch=torch, net=net, model=Twin(), variables=twin_variables(net), x=x, maps=maps, y=targets,
        x_q=np.ascontiguousarray(x.transpose(0, 3, 1, 2)), a_q=maps[:, None],
    )  # fmt: skip


def quantus_metric(name: str, **options) -> Any:
    import quantus

    return getattr(quantus, name)(disable_warnings=True, **options)


def quantus_call(metric, t, **kwargs):
    return metric(model=t["net"], x_batch=t["x_q"], y_batch=t["y"], a_batch=t["a_q"], device="cpu", **kwargs)


def ours(name, t, **kwargs):
    return getattr(metrics, name)(t["model"], t["variables"], t["x"], t["maps"], t["y"], **kwargs)


def test_faithfulness_correlation_equals_quantus_with_our_draws(twin, monkeypatch):
    runs, subset = 6, 20
    draws = np.asarray(faithfulness.subset_draws(5, 3, 144, runs, subset))  # (runs, B, subset) pixels
    # Quantus draws channel values: each of our pixels p is its values c x 144 + p, c = 0, 1, 2
    handed = iter(np.concatenate([draws + c * 144 for c in range(3)], -1).reshape(runs * 3, -1))
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: next(handed))
    metric = quantus_metric(
        "FaithfulnessCorrelation", nr_runs=runs, subset_size=3 * subset, perturb_baseline=0.0, return_aggregate=False
    )
    theirs = quantus_call(metric, twin)
    got = ours("faithfulness_correlation", twin, nr_runs=runs, subset_size=subset, baseline=0.0, key=5)
    np.testing.assert_allclose(got.per_image, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["FaithfulnessEstimate", "PixelFlipping", "SensitivityN"])
def test_ordered_metrics_equal_quantus(twin, name, monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)  # Quantus's AUC calls np.trapz (gone in NumPy 2.4)
    options = dict(perturb_baseline=0.0, features_in_step=3 * 8)
    if name == "PixelFlipping":
        theirs = quantus_call(quantus_metric("PixelFlipping", **options), twin, softmax=True)
        got = ours("pixel_flipping", twin, features_in_step=8, baseline=0.0)
        np.testing.assert_allclose(got.curve, theirs, rtol=1e-4, atol=1e-6)
        auc = quantus_call(quantus_metric("PixelFlipping", **options, return_auc_per_sample=True), twin, softmax=True)
        np.testing.assert_allclose(got.per_image, auc, rtol=1e-4)
    elif name == "FaithfulnessEstimate":
        theirs = quantus_call(quantus_metric("FaithfulnessEstimate", **options), twin)
        got = ours("faithfulness_estimate", twin, features_in_step=8, baseline=0.0)
        np.testing.assert_allclose(got.per_image, theirs, rtol=1e-4, atol=1e-5)
    else:  # Quantus's n_max_percentage counts pixels but steps count channel values: 3 x ours gives our steps
        metric = quantus_metric("SensitivityN", **options, n_max_percentage=3 * 0.5, return_aggregate=False)
        theirs = quantus_call(metric, twin, softmax=False)  # logits: softmax drops of 1e-3 across 3 images
        got = ours("sensitivity_n", twin, features_in_step=8, n_max_percentage=0.5, baseline=0.0, score="logit")
        assert got.per_n.shape == (9,)
        np.testing.assert_allclose(got.per_n, np.ravel(theirs), rtol=1e-4, atol=1e-5)


def test_monotonicity_equals_quantus_putting_the_image_back(twin):
    """Quantus 0.6.0's own perturbation puts the baseline back into the baseline (every map passes);
    with a perturbation that puts the image's channel values back, it is the paper's, and ours."""
    flat = twin["x_q"].reshape(3, -1)

    def put_back(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = flat[rows, indices]
        return out

    options = dict(perturb_baseline=0.0, features_in_step=3 * 24)
    unchanged = quantus_call(quantus_metric("Monotonicity", **options), twin, softmax=True)
    assert all(unchanged)  # the baseline's score never moves
    theirs = quantus_call(quantus_metric("Monotonicity", **options, perturb_func=put_back), twin, softmax=True)
    got = ours("monotonicity", twin, features_in_step=24, baseline=0.0)
    assert np.abs(np.diff(got.curve, axis=-1)).min() > 1e-5  # no step too close to call
    np.testing.assert_array_equal(got.per_image, np.asarray(theirs, np.float32))


def test_monotonicity_correlation_equals_quantus_with_our_uniform_draws(twin, monkeypatch):
    steps, samples = 6, 2
    fills = iter(np.asarray(faithfulness.uniform_fills(9, steps, samples, 3)).reshape(-1, 3))
    monkeypatch.setattr(np.random, "uniform", lambda *a, **k: next(fills))
    metric = quantus_metric("MonotonicityCorrelation", nr_samples=samples, features_in_step=3 * 24)
    theirs = quantus_call(metric, twin, softmax=True)
    got = ours("monotonicity_correlation", twin, features_in_step=24, nr_samples=samples, key=9)
    np.testing.assert_allclose(got.per_image, theirs, rtol=1e-4, atol=1e-5)


def test_region_perturbation_and_selectivity_equal_quantus(twin):
    patch_size = 5  # 12 is no multiple of 5: both pad the grid to 15, a patch of 1 pixel before, 2 after
    options = dict(patch_size=patch_size, perturb_baseline=0.0)
    theirs = quantus_call(quantus_metric("RegionPerturbation", **options, regions_evaluation=5), twin, softmax=True)
    got = ours("region_perturbation", twin, patch_size=patch_size, regions_evaluation=5, baseline=0.0)
    np.testing.assert_allclose(got.curve, theirs, rtol=1e-4, atol=1e-6)
    theirs = quantus_call(quantus_metric("Selectivity", **options), twin, softmax=True)
    got = ours("selectivity", twin, patch_size=patch_size, baseline=0.0)
    np.testing.assert_allclose(got.curve, theirs, rtol=1e-4, atol=1e-6)


def test_irof_equals_quantus(twin, monkeypatch):
    """On images of 3 x 3 colour blocks cut by Quantus's "felzenszwalb" (a few segments; handed to ours
    as `segments`), one image per Quantus call: in a batch Quantus pads the shorter curves with zeros
    and counts the drop to them in the area. Ours cut by default as Quantus's "slic" does. Two
    repairs to Quantus 0.6.0 that change no value: its AUC's np.trapz (gone in NumPy 2.4), and its
    mask, one channel deep, broadcast over the image's channels (else its own perturbation asserts)."""
    from quantus.functions.perturb_func import baseline_replacement_by_mask
    from quantus.helpers.utils import get_superpixel_segments

    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)

    def by_mask(arr, mask, **kwargs):
        return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)

    rng = np.random.default_rng(8)
    x = np.repeat(np.repeat(rng.uniform(0, 1, (2, 3, 3, 3)), 4, 1), 4, 2).astype(np.float32)
    x_q = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    segments = np.stack([get_superpixel_segments(img.astype("double"), "felzenszwalb") for img in x])
    assert 2 <= segments[0].max() + 1 <= 12
    slic = np.stack([get_superpixel_segments(img.astype("double"), "slic") for img in x])
    np.testing.assert_array_equal(faithfulness_regions.quantus_segments(x), slic)

    data = {**twin, "x": x, "maps": twin["maps"][:2], "y": twin["y"][:2]}
    got = ours("irof", data, segments=segments, baseline=0.0)
    metric = quantus_metric(
        "IROF", segmentation_method="felzenszwalb", perturb_baseline=0.0, perturb_func=by_mask, return_aggregate=False
    )
    for b in range(2):
        one = {**data, "x_q": x_q[b : b + 1], "a_q": twin["a_q"][b : b + 1], "y": twin["y"][b : b + 1]}
        np.testing.assert_allclose(got.per_image[b], quantus_call(metric, one, softmax=True), rtol=1e-4)


def test_region_orders_lerf_and_random_equal_quantus(twin, monkeypatch):
    """Least relevant first, and a random order: our permutations handed to Quantus's np.random.permutation."""
    options = dict(patch_size=4, perturb_baseline=0.0, regions_evaluation=4)
    theirs = quantus_call(quantus_metric("RegionPerturbation", **options, order="lerf"), twin, softmax=True)
    got = ours("region_perturbation", twin, patch_size=4, regions_evaluation=4, order="lerf", baseline=0.0)
    np.testing.assert_allclose(got.curve, theirs, rtol=1e-4, atol=1e-6)
    orders = iter(np.asarray(faithfulness_regions.random_orders(4, 3, 9)))
    monkeypatch.setattr(np.random, "permutation", lambda n: next(orders))
    theirs = quantus_call(quantus_metric("RegionPerturbation", **options, order="random"), twin, softmax=True)
    got = ours("region_perturbation", twin, patch_size=4, regions_evaluation=4, order="random", key=4, baseline=0.0)
    np.testing.assert_allclose(got.curve, theirs, rtol=1e-4, atol=1e-6)


def test_infidelity_equals_quantus(twin):
    metric = quantus_metric("Infidelity", perturb_baseline=0.0, perturb_patch_sizes=[3, 4], n_perturb_samples=1)
    theirs = quantus_call(metric, twin)
    got = ours("infidelity", twin, perturb_patch_sizes=(3, 4), baseline=0.0)
    np.testing.assert_allclose(got.per_image, theirs, rtol=1e-4)


@pytest.mark.parametrize("normalize", [False, True])
def test_sampled_infidelity_equals_captums_with_our_noise(twin, normalize):
    from captum.metrics import infidelity

    torch, samples = twin["torch"], 5
    draws = 0.2 * np.asarray(faithfulness_regions.noise_draws(2, samples, twin["x"].shape))  # (S, B, H, W, C)
    handed = torch.from_numpy(np.ascontiguousarray(draws.transpose(1, 0, 4, 2, 3).reshape(3 * samples, 3, 12, 12)))

    def perturb(inputs):  # captum repeats each image `samples` times in a row: image-major, like `handed`
        return handed, inputs - handed

    attributions = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(twin["a_q"], twin["x_q"].shape)))
    theirs = infidelity(twin["net"], perturb, torch.from_numpy(twin["x_q"]), attributions, target=twin["y"].tolist(),
                        n_perturb_samples=samples, normalize=normalize)  # fmt: skip
    got = ours("sampled_infidelity", twin, n_perturb_samples=samples, noise=0.2, key=2, normalize=normalize)
    np.testing.assert_allclose(got.per_image, theirs.numpy(), rtol=1e-4)


def test_sufficiency_equals_quantus(twin):
    rng = np.random.default_rng(3)
    base = rng.uniform(size=(2, 12, 12)).astype(np.float32)
    maps = np.concatenate(
        [base[:1] + 0.05 * rng.uniform(size=(2, 12, 12)), base[1:] + 0.05 * rng.uniform(size=(1, 12, 12))]
    )
    maps = maps.astype(np.float32)
    data = {**twin, "maps": maps, "a_q": maps[:, None]}
    for threshold in (0.3, 0.6, 0.99):
        theirs = quantus_call(quantus_metric("Sufficiency", threshold=threshold), data)
        got = ours("sufficiency", data, threshold=threshold)
        np.testing.assert_allclose(got.per_image, theirs, rtol=1e-6)

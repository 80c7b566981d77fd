"""ROAD (`metrics.road`): the imputation against its equations solved by hand (numpy, from the
definition), and the whole metric against pytorch-grad-cam 1.5.7's own classes on the BVLC weights
(the PyTorch port), cat_dog.jpg and the same Grad-CAM maps for both animals: the removed pixels,
the imputed pixels (noise 0) and the score changes (noise 0, and with our noise draws handed to theirs)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradcam_jax import metrics

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def hand_weight(dy: int, dx: int) -> float:
    return 1 / 12 if dy and dx else 1 / 6  # Rong et al.: diagonal 1/12, direct 1/6


def hand_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(H, W, C) float64: the removed pixels solved from their equations, written out densely: for
    each removed pixel i, sum_j w_ij (x_i - y_j) = 0 over its neighbours j inside the image, y_j the
    kept value or the unknown x_j."""
    h, w, _ = image.shape
    unknowns = [tuple(p) for p in np.argwhere(removed)]
    index = {p: n for n, p in enumerate(unknowns)}
    a = np.zeros((len(unknowns), len(unknowns)))
    b = np.zeros((len(unknowns), image.shape[-1]))
    for n, (y, x) in enumerate(unknowns):
        for dy, dx in OFFSETS:
            j = (y + dy, x + dx)
            if not (0 <= j[0] < h and 0 <= j[1] < w):
                continue
            a[n, n] += hand_weight(dy, dx)
            if j in index:
                a[n, index[j]] -= hand_weight(dy, dx)
            else:
                b[n] += hand_weight(dy, dx) * image[j]
    out = image.astype(np.float64).copy()
    out[removed] = np.linalg.solve(a, b)
    return out


@pytest.mark.oldest
def test_one_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    image = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1) ** 2  # 0 1 4 / 9 16 25 / 36 49 64
    removed = np.zeros((1, 3, 3), bool)
    removed[0, 1, 1] = removed[0, 0, 0] = True
    got = np.asarray(metrics.noisy_linear_imputation(image, removed, noise=0.0))[0, ..., 0]
    # corner x0: (0,1)=1 and (1,0)=9 at 1/6, the centre xc at 1/12 (weights 5/12 inside the image);
    # centre xc: 1, 9, 25, 49 at 1/6, x0, 4, 36, 64 at 1/12
    equations = [[5 / 12, -1 / 12], [-1 / 12, 1.0]]
    known = [(1 + 9) / 6, (1 + 9 + 25 + 49) / 6 + (4 + 36 + 64) / 12]
    np.testing.assert_allclose([got[0, 0], got[1, 1]], np.linalg.solve(equations, known), rtol=1e-5)
    np.testing.assert_array_equal(got[~removed[0]], image[0, ..., 0][~removed[0]])  # kept pixels untouched


def test_imputation_solves_the_neighbour_equations():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (2, 20, 23, 3)).astype(np.float32)
    removed = rng.uniform(size=(2, 20, 23)) < np.array([0.3, 0.8])[:, None, None]
    got = np.asarray(metrics.noisy_linear_imputation(image, removed, noise=0.0))
    for b in range(2):
        np.testing.assert_allclose(got[b], hand_imputation(image[b], removed[b]), atol=1e-2)  # of 0..255


def test_noise_is_our_keys_normal_draw_on_the_removed_pixels_only():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (2, 12, 10, 3)).astype(np.float32)
    removed = rng.uniform(size=(2, 12, 10)) < 0.5
    clean = np.asarray(metrics.noisy_linear_imputation(image, removed, noise=0.0))
    noisy = np.asarray(metrics.noisy_linear_imputation(image, removed, noise=3.0, key=7))
    draws = np.asarray(jax.random.normal(jax.random.key(7), image.shape))
    np.testing.assert_allclose(noisy - clean, np.where(removed[..., None], 3.0 * draws, 0.0), atol=1e-3)
    np.testing.assert_array_equal(noisy, metrics.noisy_linear_imputation(image, removed, noise=3.0, key=7))
    assert not np.allclose(noisy, metrics.noisy_linear_imputation(image, removed, noise=3.0, key=8))


def test_a_region_with_no_kept_neighbour_keeps_the_kept_mean():
    """No solution there (pytorch-grad-cam's solve gives NaN): the documented fill, finite."""
    image = np.random.default_rng(3).uniform(0, 255, (2, 12, 10, 3)).astype(np.float32)
    removed = np.zeros((2, 12, 10), bool)
    removed[0] = True  # everything: nothing kept, the fill is 0
    removed[1, :, :9] = True  # columns 0..8 reach column 9, which is kept: solvable
    got = np.asarray(metrics.noisy_linear_imputation(image, removed, noise=0.0))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_allclose(got[1], hand_imputation(image[1], removed[1]), atol=1e-2)


@pytest.mark.oldest
def test_road_of_a_linear_model_by_hand():
    """logit = sum_i v_i x_i: each score change is v . (imputed - image), imputed by the hand solve."""
    from flax import linen as nn

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1, use_bias=False, name="head")(x.reshape(x.shape[0], -1))

    rng = np.random.default_rng(2)
    image = rng.uniform(0, 9, (1, 6, 7, 1)).astype(np.float32)
    v = rng.normal(size=(42, 1)).astype(np.float32)
    variables = {"params": {"head": {"kernel": jnp.asarray(v)}}}
    m = (rng.permutation(42).reshape(1, 6, 7) / 41.0).astype(np.float32)
    got = metrics.road(Linear(), variables, image, m, np.array([0]), percentiles=(10, 50), noise=0.0, score="logit")
    for j, p in enumerate((10, 50)):
        most, least = m[0] >= np.percentile(m[0], p), 1 - m[0] >= np.percentile(1 - m[0], p)
        for field, removed in (("most_relevant_first", most), ("least_relevant_first", least)):
            change = v[:, 0] @ (hand_imputation(image[0], removed) - image[0]).reshape(-1)
            np.testing.assert_allclose(getattr(got, field)[0, j], change, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.combined, (got.least_relevant_first.mean(1) - got.most_relevant_first.mean(1)) / 2)


def test_bad_input_is_one_clear_error(googlenet, cat_dog):
    model, variables = googlenet
    with pytest.raises(ValueError, match=r"defined on \(B, H, W, C\) images"):
        metrics.noisy_linear_imputation(np.zeros((1, 8, 2)), np.zeros((1, 8), bool))
    with pytest.raises(ValueError, match="percentiles must be"):
        metrics.road(model, variables, cat_dog, np.zeros(cat_dog.shape[:-1]), np.array([1]), percentiles=(50, 120))
    with pytest.raises(ValueError, match=r"maps must be \(B, \*spatial\)"):
        metrics.road(model, variables, cat_dog, np.zeros((1, 7, 7)), np.array([1]))


# -- against pytorch-grad-cam ----------------------------------------------------------------------
# Their scores are read from tests/data/road_pytorch_grad_cam.npz, written by
# `python benchmarks/road_original.py --write ...` (their sparse direct solves take about a minute
# here); the maps handed to both sides are stored with them. The imputed pixels are compared live.

REFERENCE = Path(__file__).resolve().parent / "data" / "road_pytorch_grad_cam.npz"


@pytest.fixture(scope="module")
def reference(cat_dog):
    """(images, the stored reference, maps (2, H, W) float32 as both sides got them)."""
    stored = dict(np.load(REFERENCE))
    return np.repeat(cat_dog, 2, axis=0), stored, stored["maps"].astype(np.float32) / 255


def test_removed_and_imputed_pixels_are_pytorch_grad_cams(reference):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    images, _, maps = reference
    # the dog's map, most relevant first at 70 (30% removed); the cat's, least relevant first at 60
    cases = ((0, 70, True, RemoveMostRelevantFirst), (1, 60, False, RemoveLeastRelevantFirst))
    ours = np.stack([np.asarray(metrics.road_removed(maps[b : b + 1], p, most))[0] for b, p, most, _ in cases])
    imputed = np.asarray(metrics.noisy_linear_imputation(images, ours, noise=0.0))
    worst = 0.0
    for b, percentile, _, remover in cases:
        seen = []  # their binary mask: 1 = kept, 0 = imputed
        remover(percentile, lambda x, mask, seen=seen: seen.append(mask.numpy()))(None, torch.from_numpy(maps[b]))
        np.testing.assert_array_equal(ours[b], seen[0] == 0)
        x = torch.from_numpy(np.ascontiguousarray(images[b].transpose(2, 0, 1)))
        theirs = NoisyLinearImputer(noise=0.0)(x, torch.from_numpy(seen[0])).numpy().transpose(1, 2, 0)
        worst = max(worst, float(np.abs(imputed[b] - theirs).max()))
        assert np.abs(imputed[b] - images[b])[ours[b]].mean() > 5  # the removed pixels did change
    print("largest difference of an imputed pixel (0..255):", worst)
    assert worst < 0.1


def test_scores_are_pytorch_grad_cams(googlenet, reference):
    """Noise 0: `ROADMostRelevantFirst(p)` / `ROADLeastRelevantFirst(p)`; noise 20 (0..255 units,
    enough to move the scores) with our key's draws handed to theirs: `ROADCombined`."""
    images, stored, maps = reference
    model, variables = googlenet
    options = {"percentiles": tuple(stored["percentiles"]), "score": "softmax"}
    clean = metrics.road(model, variables, images, maps, stored["classes"], noise=0.0, **options)
    noisy = metrics.road(
        model, variables, images, maps, stored["classes"], noise=stored["noise"], key=int(stored["key"]), **options
    )
    for got, want in (
        (clean.most_relevant_first, stored["most"]),
        (clean.least_relevant_first, stored["least"]),
        (noisy.combined, stored["combined_noisy"]),
    ):
        print(np.asarray(got).round(5).tolist(), want.round(5).tolist())
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    assert np.abs(stored["most"]).min() > 0.05  # removing the explained animal costs it probability
    moved = np.abs(np.asarray(noisy.combined) - np.asarray(clean.combined)).max()
    assert moved > 20 * 1e-3 * np.abs(stored["combined_noisy"]).max()  # the noise matters at that tolerance

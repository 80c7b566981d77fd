"""Signals (B, L, C) and volumes (B, D, H, W, C), for every method and metric: Grad-CAM of a 1-D and
a 3-D CNN against a hand-written forward pass differentiated by `jax.grad` and upsampled by Pillow
(its own Keys cubic, one axis at a time); occlusion of a linear model by hand; the blur against
scipy; every registered method's map shape and range on both ranks; the errors for bad ranks; the
pictures and the volume loader."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import gradcam_jax as gj
from gradcam_jax import metrics, volumes
from gradcam_jax._src import maps
from gradcam_jax._src.methods.occlusion import occlusion_grid
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from gradcam_jax.overlay import blend, montage, planes, signal, window

LETTERS = {1: "W", 2: "HW", 3: "DHW"}


class Relu(nn.Module):  # a ReLU layer of its own, to tap after the activation
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class TinyND(nn.Module):
    """conv (3 per axis, 3 channels) -> ReLU -> conv (stride 2, 4 channels) -> ReLU "relu2" ->
    global average pool -> dense (3 classes), over `spatial` axes; padding 1 on every side."""

    spatial: int

    @nn.compact
    def __call__(self, x):
        kernel, pad = (3,) * self.spatial, [(1, 1)] * self.spatial
        x = nn.relu(nn.Conv(3, kernel, padding=pad, name="conv1")(x))
        x = Relu(name="relu2")(nn.Conv(4, kernel, (2,) * self.spatial, padding=pad, name="conv2")(x))
        return nn.Dense(3, name="head")(x.mean(axis=tuple(range(1, 1 + self.spatial))))


SHAPES = {1: (2, 16, 2), 3: (2, 6, 8, 4, 1)}  # a 2-channel signal, a grey volume


@pytest.fixture(scope="module", params=[1, 3], ids=["signal", "volume"])
def tiny(request):
    """(model, variables, inputs) for a signal model and a volume model, random weights and inputs."""
    spatial = request.param
    model = TinyND(spatial)
    x = jax.random.normal(jax.random.key(spatial), SHAPES[spatial])
    return model, model.init(jax.random.key(10 + spatial), x), x


def pillow_upsample(m: np.ndarray, size) -> np.ndarray:
    """(B, *s) -> (B, *size) with Pillow's bicubic along one spatial axis at a time (a resize that
    keeps one side of an "F" image interpolates along the other only), clipped to [0, 1]."""
    for axis, n in enumerate(size, start=1):
        moved = np.moveaxis(m, axis, -1)
        rows = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]), np.float32)
        resized = np.asarray(Image.fromarray(rows, "F").resize((n, rows.shape[0]), Image.Resampling.BICUBIC))
        m = np.moveaxis(resized.reshape(*moved.shape[:-1], n), -1, axis)
    return np.clip(m, 0.0, 1.0)


def hand_grad_cam(variables, x, classes) -> np.ndarray:
    """Grad-CAM (logit, ReLU) of TinyND written out: the forward pass by lax convolutions, the
    gradient of the logit with respect to relu2 by jax.grad, weights averaged over every spatial
    axis, min-max in numpy, Pillow's cubic upsampling."""
    p = variables["params"]
    spatial = x.ndim - 2
    letters = LETTERS[spatial]
    numbers = (f"N{letters}C", f"{letters}IO", f"N{letters}C")

    def conv(h, layer, stride):
        out = jax.lax.conv_general_dilated(h, p[layer]["kernel"], (stride,) * spatial, [(1, 1)] * spatial,
                                           dimension_numbers=numbers)  # fmt: skip
        return out + p[layer]["bias"]

    acts = jax.nn.relu(conv(jax.nn.relu(conv(x, "conv1", 1)), "conv2", 2))  # (B, *s, 4)
    axes = tuple(range(1, 1 + spatial))

    def logit_sum(a):  # images do not interact: one backward pass gives every image's gradient
        logits = a.mean(axis=axes) @ p["head"]["kernel"] + p["head"]["bias"]
        return logits[np.arange(len(classes)), classes].sum()

    return finish_by_hand(acts, jax.grad(logit_sum)(acts), x.shape[1:-1])


def finish_by_hand(acts, grads, size) -> np.ndarray:
    """Grad-CAM with a ReLU from a layer's activations and gradients (B, *s, C): weights averaged
    over every spatial axis, min-max in numpy, Pillow's cubic upsampling to `size`."""
    axes = tuple(range(1, acts.ndim - 1))
    alpha = np.asarray(grads).mean(axis=axes)  # (B, C)
    raw = np.maximum(np.einsum("b...c,bc->b...", np.asarray(acts), alpha), 0.0)
    low = raw.min(axis=axes, keepdims=True)
    return pillow_upsample((raw - low) / (raw.max(axis=axes, keepdims=True) - low), size)


def test_grad_cam_matches_a_hand_written_jax_grad(tiny):
    model, variables, x = tiny
    classes = np.array([2, 0], np.int32)
    result = gj.grad_cam(model, variables, x, classes, layer="relu2", score="logit", relu=True)
    assert result.map.shape == x.shape[:-1]
    assert result.activations.shape == (x.shape[0], *[(n + 1) // 2 for n in x.shape[1:-1]], 4)
    np.testing.assert_allclose(np.asarray(result.map), hand_grad_cam(variables, x, classes), atol=2e-5)


def test_equinox_channel_first_volumes():
    """An Equinox 3-D CNN whose layers run per volume, channels first (C, D, H, W): the tap moves
    them to (B, d, h, w, C), and the map equals the hand-written Grad-CAM of the same layers."""
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        conv1: eqx.nn.Conv3d
        conv2: eqx.nn.Conv3d
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.conv1 = eqx.nn.Conv3d(1, 3, 3, padding=1, key=k1)
            self.conv2 = eqx.nn.Conv3d(3, 4, 3, stride=2, padding=1, key=k2)
            self.head = eqx.nn.Linear(4, 3, key=k3)

        def top(self, a):  # conv2's output (4, d, h, w) -> logits
            return self.head(jax.nn.relu(a).mean(axis=(1, 2, 3)))

        def __call__(self, volumes):  # (B, D, H, W, 1), the library's layout, one volume at a time
            return jax.vmap(lambda v: self.top(self.conv2(jax.nn.relu(self.conv1(jnp.moveaxis(v, -1, 0))))))(volumes)

    net = Net(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 8, 4, 1))
    params, static = eqx.partition(net, eqx.is_array)
    classes = np.array([1, 2], np.int32)
    result = gj.grad_cam(static, params, x, classes, layer="conv2", score="logit", relu=True)
    acts = jnp.moveaxis(jax.vmap(lambda v: net.conv2(jax.nn.relu(net.conv1(jnp.moveaxis(v, -1, 0)))))(x), 1, -1)

    def logit_sum(a):
        logits = jax.vmap(lambda one: net.top(jnp.moveaxis(one, -1, 0)))(a)
        return logits[np.arange(2), classes].sum()

    assert result.activations.shape == (2, 3, 4, 2, 4)
    np.testing.assert_allclose(result.activations, acts, rtol=1e-6, atol=1e-6)
    expected = finish_by_hand(acts, jax.grad(logit_sum)(acts), x.shape[1:-1])
    np.testing.assert_allclose(np.asarray(result.map), expected, atol=2e-5)


def method_options(name: str, channels: int) -> dict:
    """Options that make each method quick on a tiny model and fill with zeros (the "mean" fill is
    the RGB ImageNet mean, refused for other channel counts)."""
    return {
        "cam": {"layer": "relu2"},
        "eigen_cam": {"layer": "relu2"},
        "grad_cam": {"layer": "relu2"},
        "grad_cam_plus_plus": {"layer": "relu2"},
        "guided_grad_cam": {"layer": "relu2"},
        "hires_cam": {"layer": "relu2"},
        "layer_cam": {"layer": "relu2"},
        "xgrad_cam": {"layer": "relu2"},
        "score_cam": {"layer": "relu2", "baseline": 0.0},
        "occlusion": {"baseline": 0.0},
        "integrated_gradients": {"baseline": 0.0, "steps": 4},
        "smoothgrad": {"samples": 4},
        "input_x_gradient": {"baseline": 0.0},
        "gradient_shap": {"baseline": 0.0, "samples": 4},
        "grad_cam_elementwise": {"layer": "relu2"},
        "eigen_grad_cam": {"layer": "relu2"},
        "ablation_cam": {"layer": "relu2"},
        "kpca_cam": {"layer": "relu2"},
        "fem": {"layer": "relu2"},
        "finer_cam": {"layer": "relu2"},
        "shapley_cam": {"layer": "relu2"},
        "is_cam": {"layer": "relu2", "baseline": 0.0, "samples": 2},
        "smooth_grad_cam_plus_plus": {"layer": "relu2", "samples": 2},
        "feature_ablation": {"patch": 2, "baseline": 0.0},
        "shapley_sampling": {"patch": 2, "baseline": 0.0, "samples": 2},
        "ss_cam": {"layer": "relu2", "baseline": 0.0, "samples": 2},
        "lime": {"patch": 2, "baseline": 0.0, "samples": 8},
        "kernel_shap": {"patch": 2, "baseline": 0.0, "samples": 8},
    }.get(name, {})


# the attention methods read a transformer's attention: tests/test_transformers.py; image_lime takes
# RGB photos only (tests/test_surrogates.py)
@pytest.mark.parametrize("name", sorted(set(gj.METHODS) - set(ATTENTION_METHODS) - {"image_lime"}))
def test_every_method_gives_maps_of_the_input_shape_in_0_1(tiny, name):
    model, variables, x = tiny
    options = method_options(name, x.shape[-1])
    result = gj.METHODS[name](model, variables, x, np.array([[0, 1], [2, 0]], np.int32), **options)
    assert result.map.shape == (x.shape[0], 2, *x.shape[1:-1]), name
    m = np.asarray(result.map)
    assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0, name
    assert m.max() > 0.5, name  # rescaled, not all zero


def test_fullgrad_resizes_each_layer_linearly_by_hand():
    """A signal model with a strided convolution: its layer (length 4) is resized to the input's 8
    by linear interpolation with half-pixel centres (np.interp at (i + 0.5) / 2 - 0.5, ends held);
    the gradients come from a hand-written jax.grad of the same network (not through taps)."""

    class Strided(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Conv(2, (1,), name="conv1")(x))
            g = nn.relu(nn.Conv(3, (2,), strides=(2,), padding="VALID", name="conv2")(h))
            return nn.Dense(2, name="head")(g.reshape(x.shape[0], -1))

    x = jax.random.normal(jax.random.key(0), (1, 8, 1))
    variables = Strided().init(jax.random.key(1), x)
    shift = lambda w: w + 0.5 * jax.random.normal(jax.random.key(2), w.shape)  # noqa: E731  # biases off 0
    variables = jax.tree.map(shift, variables)
    p = jax.tree.map(np.asarray, variables["params"])

    def logit(x, d1, d2, k):  # x (8, 1); d1 (8, 2), d2 (4, 3): zeros added to the convolutions' outputs
        h = jax.nn.relu(x @ p["conv1"]["kernel"][0] + p["conv1"]["bias"] + d1)
        z2 = h[0::2] @ p["conv2"]["kernel"][0] + h[1::2] @ p["conv2"]["kernel"][1] + p["conv2"]["bias"] + d2
        return jax.nn.relu(z2).reshape(-1) @ p["head"]["kernel"][:, k] + p["head"]["bias"][k]

    def scaled_sum(m):  # (L, C): each channel min-max scaled, summed over channels
        low, high = m.min(axis=0), m.max(axis=0)
        return np.where(high > low, (m - low) / np.where(high > low, high - low, 1), 0).sum(axis=1)

    expected = []
    for k in range(2):
        gx, g1, g2 = jax.grad(logit, argnums=(0, 1, 2))(x[0], jnp.zeros((8, 2)), jnp.zeros((4, 3)), k)
        a = scaled_sum(np.abs(p["conv2"]["bias"] * np.asarray(g2)))
        total = scaled_sum(np.abs(np.asarray(x[0] * gx))) + scaled_sum(np.abs(p["conv1"]["bias"] * np.asarray(g1)))
        assert np.ptp(a) > 0.1  # the resize matters
        total = total + np.interp((np.arange(8) + 0.5) / 2 - 0.5, np.arange(4), a)
        expected.append((total - total.min()) / (total.max() - total.min()))
    got = gj.fullgrad(Strided(), variables, x, np.array([[0, 1]]))
    np.testing.assert_allclose(np.asarray(got.map[0]), np.stack(expected), atol=1e-5)


def test_occlusion_windows_per_axis_by_hand():
    """A linear model: occluding a window with zeros drops the logit by sum_window W x. With
    windows that tile the volume (mask = stride, no clipping) and nearest upsampling, every voxel
    of the map is its window's drop, min-max rescaled."""

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="head")(x.reshape(x.shape[0], -1))

    x = jax.random.uniform(jax.random.key(0), (1, 4, 6, 2, 1), minval=0.5, maxval=1.5)
    model = Linear()
    variables = model.init(jax.random.key(1), x)
    result = gj.occlusion(model, variables, x, np.array([1]), patch=(2, 3, 2), stride=(2, 3, 2),
                          clipping=False, upsampling="nearest", baseline=0.0, score="logit")  # fmt: skip
    contribution = (np.asarray(variables["params"]["head"]["kernel"])[:, 1] * np.asarray(x).reshape(-1)).reshape(
        4, 6, 2
    )
    drops = contribution.reshape(2, 2, 2, 3, 1, 2).sum(axis=(1, 3, 5))  # (2, 2, 1) windows
    expected = (drops - drops.min()) / (drops.max() - drops.min())
    expected = expected.repeat(2, 0).repeat(3, 1).repeat(2, 2)
    np.testing.assert_allclose(np.asarray(result.map[0]), expected, atol=1e-5)


def test_occlusion_auto_sizes_scale_per_axis():
    assert occlusion_grid((128,), "auto", "auto", True).mask == (26,)  # 20% of each axis, rounded
    grid = occlusion_grid((24, 24, 24), "auto", "auto", True)
    assert grid.mask == (5, 5, 5) and grid.step == (3, 3, 3) and grid.shape == (8, 8, 8)  # 10% rounded up
    assert occlusion_grid((24, 16, 8), 4, (4, 4, 2), False).shape == (6, 4, 3)
    with pytest.raises(ValueError, match="one per spatial axis"):
        occlusion_grid((24, 24, 24), (4, 4), "auto", True)


@pytest.mark.parametrize("shape", [(1, 30, 2), (1, 12, 14, 9, 1)], ids=["signal", "volume"])
def test_gaussian_blur_in_any_dimension_is_scipys(shape):
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float64)
    blurred = np.asarray(metrics.gaussian_blur(jnp.asarray(x, jnp.float32)))

    def scipy_blur(a):  # 11 taps per axis (radius 5 = 1 sigma), zero outside, renormalised inside
        g = lambda b: ndimage.gaussian_filter(b, 5.0, truncate=1.0, mode="constant", cval=0.0)  # noqa: E731
        return g(a) / g(np.ones_like(a))

    expected = np.stack([scipy_blur(x[0, ..., c]) for c in range(shape[-1])], -1)
    np.testing.assert_allclose(blurred[0], expected, rtol=1e-4, atol=1e-5)


def test_metrics_on_signals_and_volumes(tiny):
    model, variables, x = tiny
    result = gj.grad_cam(model, variables, x, np.array([0, 1]), layer="relu2")
    curve = metrics.deletion(model, variables, x, result.map, result.targets, steps=4, baseline="black")
    voxels = int(np.prod(x.shape[1:-1]))
    np.testing.assert_allclose(curve.fractions, np.minimum(np.arange(5) * -(-voxels // 4), voxels) / voxels)
    # the last step deletes everything: the score of an all-black input
    black = jax.nn.softmax(model.apply(variables, jnp.zeros_like(x)))[np.arange(2), np.array([0, 1])]
    np.testing.assert_allclose(curve.scores[:, -1], black, rtol=1e-5)
    assert metrics.insertion(model, variables, x, result.map, result.targets, steps=4).scores.shape == (2, 5)
    assert metrics.confidence_change(model, variables, x, result.map, result.targets).drop.shape == (2,)
    check = metrics.model_randomisation("grad_cam", model, variables, x, np.array([0, 1]), layer="relu2")
    assert check.layers == ("head", "conv2", "conv1") and check.correlations.shape == (3, 2)


def test_spearman_over_three_axes_is_over_all_voxels():
    a = np.random.default_rng(0).uniform(size=(2, 3, 4, 5))
    b = a + np.random.default_rng(1).uniform(size=a.shape)
    ours = np.asarray(metrics.spearman(jnp.asarray(a), jnp.asarray(b), 3))
    from scipy import stats

    np.testing.assert_allclose(ours, [stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(2)], atol=1e-5)


@pytest.mark.parametrize(
    "shape, pattern",
    [
        ((2, 16), r"must be a batch of \(B, L, C\) signals, \(B, H, W, C\) images or \(B, D, H, W, C\) volumes"),
        ((1, 2, 4, 4, 4, 1), r"volumes; got shape \(1, 2, 4, 4, 4, 1\)"),
    ],
    ids=["no channel axis", "4 spatial axes"],
)
def test_bad_ranks_are_one_clear_error(shape, pattern):
    model = TinyND(1)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 1)))
    with pytest.raises(ValueError, match=pattern):
        gj.grad_cam(model, variables, np.zeros(shape, np.float32), layer="relu2")


def test_a_map_that_does_not_match_its_images_is_refused(tiny):
    model, variables, x = tiny
    wrong = np.zeros((x.shape[0], *x.shape[1:-1], 2), np.float32)  # one axis too many
    for metric in (metrics.deletion, metrics.insertion, metrics.confidence_change):
        with pytest.raises(ValueError, match=r"maps must be \(B, \*spatial\)"):
            metric(model, variables, x, wrong, np.array([0, 1]))


def test_upsample_is_cubic_along_each_axis():
    """maps.upsample of volumes against Pillow's cubic applied axis by axis."""
    m = np.random.default_rng(0).uniform(size=(2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(maps.upsample(jnp.asarray(m), (7, 10, 9))), pillow_upsample(m, (7, 10, 9)),
                               atol=2e-6)  # fmt: skip


# -- pictures and files ---------------------------------------------------------------------------------


def blob(shape=(10, 12, 14), at=(3, 8, 5)) -> np.ndarray:
    """A (D, H, W) map peaking at `at`."""
    grid = np.indices(shape).astype(np.float32)
    return np.exp(-sum((g - c) ** 2 for g, c in zip(grid, at)) / 8.0)


def test_window_maps_percentiles_or_levels_to_grey():
    ct = np.concatenate([np.linspace(-1000, 1000, 998), [-30000, 30000]])  # two outliers in a thousand
    grey = window(ct)
    assert grey.dtype == np.uint8 and grey[:998].min() == 0 and grey[:998].max() == 255  # outliers do not win
    assert 120 <= grey[499] <= 135  # the middle of the range is mid-grey
    np.testing.assert_array_equal(window(np.array([-1000.0, 0, 40, 400]), (0, 40)), [0, 0, 255, 255])
    assert not window(np.full(5, 7.0)).any()


def test_planes_cut_through_the_peak():
    volume = np.random.default_rng(0).normal(size=(10, 12, 14, 1)) * 500  # any intensity range
    heatmap = blob()
    picture = planes(volume, heatmap, alpha=1.0, gap=2)
    assert picture.dtype == np.uint8 and picture.shape == (12, 14 + 2 + 14 + 2 + 12, 3)
    red = blend(np.zeros((1, 1, 3)), np.ones((1, 1)), alpha=1.0)[0, 0]  # the top of the colour map
    # each plane shows the peak: (h, w) = (8, 5) in the first, (d, w) = (3, 5) in the second, (d, h) = (3, 8)
    for row, col in [(8, 5), (3, 16 + 5), (3, 32 + 8)]:
        np.testing.assert_array_equal(picture[row, col], red)
    with pytest.raises(ValueError, match="a map"):
        planes(volume, heatmap[:5])


def test_montage_lays_out_every_nth_slice():
    heatmap = blob()
    picture = montage(np.zeros((10, 12, 14)), heatmap, axis=0, every=3, gap=1)  # slices 0, 3, 6, 9
    assert picture.shape == (2 * 12 + 1, 2 * 14 + 1, 3)
    np.testing.assert_array_equal(picture[:12, :14], blend(np.zeros((12, 14, 3)), heatmap[0]))
    np.testing.assert_array_equal(picture[13:, 15:], blend(np.zeros((12, 14, 3)), heatmap[9]))
    sideways = montage(np.zeros((10, 12, 14)), heatmap, axis=2, every=5, columns=2)  # slices 0, 5, 10
    assert sideways.shape == (2 * 10 + 2, 2 * 12 + 2, 3)


def test_signal_figure_draws_each_channel_over_its_map():
    trace = np.stack([np.sin(np.linspace(0, 6, 50)), np.cos(np.linspace(0, 6, 50))], -1)
    fig = signal(trace, np.linspace(0, 1, 50), names=["lead I", "lead II"], rate=100.0)
    axes = fig.axes
    assert len(axes) == 4 and [a.get_ylabel() for a in axes[::2]] == ["lead I", "lead II"]
    np.testing.assert_allclose(axes[2].lines[0].get_ydata(), trace[:, 1])
    np.testing.assert_allclose(axes[3].images[0].get_array()[0], np.linspace(0, 1, 50))
    assert axes[-1].get_xlabel() == "time (s)"
    with pytest.raises(ValueError, match="a map"):
        signal(trace, np.zeros(49))


def test_load_volume_reads_npy_and_nifti(tmp_path):
    volume = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    np.save(tmp_path / "v.npy", volume)
    np.testing.assert_array_equal(volumes.load_volume(tmp_path / "v.npy"), volume)
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    np.testing.assert_allclose(volumes.load_volume(tmp_path / "v.nii.gz"), volume)
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(volumes.VolumeError, match=r"flat\.npy: expected a volume"):
        volumes.load_volume(tmp_path / "flat.npy")
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(volumes.VolumeError, match=r"bad\.nii\.gz: not a NIfTI image"):
        volumes.load_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(volumes.VolumeError, match="unsupported volume format"):
        volumes.load_volume(tmp_path / "v.png")


def test_depth_sweep_as_gif(tmp_path):
    heatmap = blob()
    assert volumes.write_sweep(tmp_path / "sweep.gif", np.zeros((10, 12, 14)), heatmap, fps=10) == 10
    with Image.open(tmp_path / "sweep.gif") as gif:
        assert gif.n_frames == 10 and gif.size == (14, 12)


class TinyClipNet(nn.Module):
    """A clip model: conv over (T, H, W) -> ReLU "relu1" -> global average pool -> dense (2 classes)."""

    @nn.compact
    def __call__(self, x):
        x = Relu(name="relu1")(nn.Conv(4, (3, 3, 3), padding=1, name="conv1")(x))
        return nn.Dense(2, name="head")(x.mean(axis=(1, 2, 3)))


def test_a_clip_model_over_a_video_gives_each_frame_its_own_map(tmp_path):
    """7 frames in clips of 4: the second clip is filled up with its last frame; every frame's map is
    its row of Grad-CAM on its clip (the clip built by hand from the library's frame resize)."""
    from gradcam_jax import video
    from gradcam_jax._src import images as images_lib

    frames = list(np.random.default_rng(0).integers(0, 256, (7, 32, 48, 3), dtype=np.uint8))
    model = TinyClipNet()
    variables = model.init(jax.random.key(0), np.zeros((1, 4, 12, 16, 3), np.float32))
    options = dict(layer="relu1", score="logit", relu=True, input_size=(12, 16))
    got = list(video.explain_clips(frames, model, variables, clip_length=4, target=1, **options))
    assert len(got) == 7 and all(e.overlay.shape == (32, 48, 3) and e.target == 1 for e in got)
    inputs = [images_lib.resize(Image.fromarray(f), (12, 16)) for f in frames]
    by_hand = [np.stack(inputs[:4]), np.stack([*inputs[4:], inputs[-1]])]
    del options["input_size"]
    for c, clip in enumerate(by_hand):
        want = gj.grad_cam(model, variables, clip[None].astype(np.float32), np.array([1]), **options).map[0]
        for t in range(4 if c == 0 else 3):
            np.testing.assert_allclose(got[4 * c + t].map, want[t], atol=1e-6)
    assert not np.allclose(got[0].map, got[1].map)  # per frame, not one map per clip
    source = video.Source(video.VideoInfo(fps=5.0, frames=7), iter(frames))
    stats = video.explain_video(source, tmp_path / "clips.mp4", model, variables, clip_length=4, **options)
    assert stats.frames == 7 and (tmp_path / "clips.mp4").stat().st_size > 0

"""Every method, fuzzed (issue 27): random small models (linen and NNX, 1-D/2-D/3-D), shapes, dtypes,
scales, class indices, layers and options. Each call either raises one of the library's errors in
one line (a ValueError or TypeError), or returns finite maps in [0, 1] of the documented shape whose
CONSTANT_MAP flag is set exactly where the map is constant. No other outcome passes.

Derandomised, so CI runs the same examples each time; every example compiles a fresh program, so
the count is kept small (about a minute on 2 cores)."""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcam_jax as gj
from gradcam_jax._src import diagnostics
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS

# the attention methods need a transformer (tests/test_transformers.py); image_lime RGB photos
NAMES = sorted(set(gj.METHODS) - set(ATTENTION_METHODS) - {"image_lime"})
LAYERS = ("conv1", "conv2", "act2", "head")  # the paths both model kinds share (act2: a ReLU module)


class Act(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class LinenNet(nn.Module):
    """conv -> ReLU -> strided conv -> ReLU -> mean -> dense, with `rank` spatial axes."""

    rank: int
    width: int
    classes: int

    @nn.compact
    def __call__(self, x):
        kernel = (3,) * self.rank
        x = nn.relu(nn.Conv(self.width, kernel, name="conv1")(x))
        x = Act(name="act2")(nn.Conv(self.width, kernel, (2,) * self.rank, name="conv2")(x))
        return nn.Dense(self.classes, name="head")(x.mean(axis=tuple(range(1, 1 + self.rank))))


class NNXAct(nnx.Module):
    def __call__(self, x):
        return nnx.relu(x)


class NNXNet(nnx.Module):
    def __init__(self, rank: int, channels: int, width: int, classes: int, rngs: nnx.Rngs):
        kernel = (3,) * rank
        self.rank = rank
        self.conv1 = nnx.Conv(channels, width, kernel, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, kernel, strides=2, rngs=rngs)
        self.act2 = NNXAct()
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        x = self.act2(self.conv2(nnx.relu(self.conv1(x))))
        return self.head(x.mean(axis=tuple(range(1, 1 + self.rank))))


def cheap_options(name: str, draw) -> dict:
    """Few samples and steps, small patches; the rest (the baseline included) left at the defaults."""
    options: dict = {}
    if name in ("integrated_gradients",):
        options["steps"] = draw(st.integers(2, 4))
    if name in ("smoothgrad", "gradient_shap", "is_cam", "ss_cam", "smooth_grad_cam_plus_plus", "shapley_sampling"):
        options["samples"] = draw(st.integers(1, 3))
    if name in ("lime", "kernel_shap"):
        options["samples"] = draw(st.integers(4, 8))
    if name in ("feature_ablation", "shapley_sampling", "lime", "kernel_shap"):
        options["patch"] = draw(st.integers(1, 4))
    if name == "occlusion":
        options["patch"] = draw(st.integers(1, 4))
        options["stride"] = draw(st.integers(1, 3))
    return options


@st.composite
def cases(draw):
    name = draw(st.sampled_from(NAMES))
    rank = draw(st.integers(1, 3))
    size = {1: (5, 14), 2: (5, 10), 3: (4, 6)}[rank]
    spatial = tuple(draw(st.integers(*size)) for _ in range(rank))
    batch, channels = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    classes = draw(st.integers(2, 5))
    scale = draw(st.sampled_from([1.0, 255.0, 1000.0]))
    dtype = draw(st.sampled_from(["float32", "float16", "uint8"]))
    kind = draw(st.sampled_from(["linen", "nnx"]))
    layer = draw(st.sampled_from([None, *LAYERS]))
    many = draw(st.booleans())  # (B, K) targets: two classes per image
    targets = draw(st.lists(st.integers(-1, classes), min_size=batch * (1 + many), max_size=batch * (1 + many)))
    targets = np.array(targets, np.int32).reshape(batch, -1) if many else np.array(targets, np.int32)
    seed = draw(st.integers(0, 3))
    return dict(
        name=name,
        rank=rank,
        shape=(batch, *spatial, channels),
        classes=classes,
        scale=scale,
        dtype=dtype,
        kind=kind,
        layer=layer,
        targets=targets,
        seed=seed,
        options=cheap_options(name, draw),
    )


def build(case):
    shape, rank = case["shape"], case["rank"]
    rng = np.random.RandomState(case["seed"])
    images = (rng.rand(*shape) * case["scale"]).astype(case["dtype"])
    if case["kind"] == "linen":
        model = LinenNet(rank, 4, case["classes"])
        return model, model.init(jax.random.key(case["seed"]), np.zeros(shape, np.float32)), images
    graphdef, state = nnx.split(NNXNet(rank, shape[-1], 4, case["classes"], nnx.Rngs(case["seed"])))
    return graphdef, state, images


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cases())
def test_every_method_is_right_or_refused_in_one_line(case):
    model, variables, images = build(case)
    method = gj.METHODS[case["name"]]
    layer_option = {"layer": case["layer"]} if "layer" in method.__signature__.parameters else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gj.DegenerateMapWarning)
            result = method(model, variables, images, case["targets"], **layer_option, **case["options"])
    except (ValueError, TypeError) as err:
        message = str(err)
        assert message and "\n" not in message and not getattr(err, "__notes__", None), (case, message)
        return
    maps = np.asarray(result.map, np.float32)
    expected = (case["shape"][0], *case["targets"].shape[1:], *case["shape"][1:-1])
    assert maps.shape == expected, case
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, case
    spatial = tuple(range(case["targets"].ndim, maps.ndim))
    constant = maps.max(axis=spatial) == maps.min(axis=spatial)
    flags = np.asarray(result.flags)
    assert flags.shape == constant.shape, case
    np.testing.assert_array_equal((flags & diagnostics.CONSTANT_MAP) != 0, constant, err_msg=str(case))


@pytest.mark.parametrize("target", [-1, 3])
def test_out_of_range_classes_are_refused(target):
    # the fuzz draws these too; here each is certain to come up
    model = LinenNet(2, 4, 3)
    x = np.zeros((1, 6, 6, 2), np.float32)
    with pytest.raises(ValueError, match=r"target class (-1|3) is out of range 0\.\.2$"):
        gj.grad_cam(model, model.init(jax.random.key(0), x), x, np.array([target]))


@pytest.mark.parametrize("target", [-1, 3])
def test_metrics_refuse_out_of_range_classes_with_the_real_range(target):
    model = LinenNet(2, 4, 3)
    x = np.zeros((1, 6, 6, 2), np.float32)
    with pytest.raises(ValueError, match=r"out of range 0\.\.2$"):
        gj.metrics.deletion(model, model.init(jax.random.key(0), x), x, np.zeros((1, 6, 6)), np.array([target]))

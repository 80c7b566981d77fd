"""No silent wrong map (issue 27): each case here returned a map with no error or warning before."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax._src import diagnostics


class Small(nn.Module):
    """A 10-class CNN with a flat hidden layer and no `num_classes` attribute (what users bring)."""

    zero_head: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="c1")(x))
        x = nn.relu(nn.Dense(32, name="fc1")(x.mean(axis=(1, 2))))
        init = nn.initializers.zeros if self.zero_head else nn.initializers.lecun_normal()
        return nn.Dense(10, kernel_init=init, name="head")(x)


@pytest.fixture(scope="module")
def small():
    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
    model = Small()
    return model, model.init(jax.random.key(0), x), x


@pytest.mark.parametrize("method", ["grad_cam", "occlusion", "saliency"])
def test_a_class_past_the_outputs_is_refused_with_the_real_range(small, method):
    model, variables, x = small
    with pytest.raises(ValueError, match=r"target class 10 is out of range 0\.\.9$"):
        gj.METHODS[method](model, variables, x, np.array([10, 2]))


def test_a_flat_layer_is_refused_naming_layers_that_qualify(small):
    model, variables, x = small
    with pytest.raises(gj.FlatLayerError, match=r"'fc1' outputs \(2, 32\).*qualify.*: c1$"):
        gj.grad_cam(model, variables, x, np.array([1, 2]), layer="fc1")
    with pytest.raises(gj.FlatLayerError):
        gj.score_cam(model, variables, x, np.array([1, 2]), layer="fc1")


@pytest.mark.parametrize(
    ("shape", "takes", "fix"),
    [
        (
            (2, 16, 16),
            (2, 16, 16, 3),
            r"channel axis is missing \(grayscale\?\): pass np\.repeat\(images\[\.\.\., None\], 3, axis=-1\)",
        ),
        ((16, 16, 3), (1, 16, 16, 3), r"batch axis is missing: pass images\[None\]"),
        ((2, 3, 16, 16), (2, 16, 16, 3), r"channels-first: pass images\.transpose\(0, 2, 3, 1\)"),
        ((2, 16, 16, 4), (2, 16, 16, 3), r"\(alpha\?\): pass images\[\.\.\., :3\]"),
    ],
)
def test_a_batch_laid_out_wrong_is_one_line_before_the_model_runs(small, shape, takes, fix):
    model, variables, _ = small
    targets = np.zeros(shape[0], np.int32)
    with pytest.raises(
        gj.LayoutError, match=rf"do not fit the model, which takes \({', '.join(map(str, takes))}\): .*{fix}$"
    ) as err:
        gj.grad_cam(model, variables, np.zeros(shape, np.float32), targets)
    assert "\n" not in str(err.value)


def test_a_zero_initialised_head_is_flagged_and_warned(small):
    model, _, x = small
    variables = Small(zero_head=True).init(jax.random.key(0), x)
    with pytest.warns(gj.DegenerateMapWarning, match=r"grad_cam: 2 of 2 maps are not informative.*constant map"):
        result = gj.grad_cam(Small(zero_head=True), variables, x, np.array([1, 2]))
    assert set(gj.flag_names(result.flags)) >= {"constant map", "zero gradient"}
    assert np.all(np.asarray(result.flags) & diagnostics.CONSTANT_MAP)


def test_a_saturated_softmax_is_flagged(small):
    model, variables, x = small
    scaled = jax.tree.map(lambda a: a * 40.0, variables)  # logits far apart: the top softmax is 1.0
    top = np.asarray(gj.top_k(model, scaled, x, k=1)[1])[:, 0]
    with pytest.warns(gj.DegenerateMapWarning, match="saturated softmax"):
        result = gj.grad_cam(model, scaled, x, top, score="softmax")
    assert np.all(np.asarray(result.flags) & diagnostics.SATURATED_SCORE)
    logit = gj.grad_cam(model, scaled, x, top, score="logit")  # the fix the warning names
    assert not np.any(np.asarray(logit.flags) & diagnostics.SATURATED_SCORE)


def test_an_informative_map_has_no_flag_and_no_warning(small):
    model, variables, x = small
    with warnings.catch_warnings():
        warnings.simplefilter("error", gj.DegenerateMapWarning)
        result = gj.grad_cam(model, variables, x, np.array([[1, 2], [3, 4]]), score="logit")
    assert result.flags.shape == (2, 2) and not np.any(np.asarray(result.flags))


def test_flags_mark_exactly_the_constant_maps():
    # by hand: a (2, 2, 3) batch of maps, one constant (all 0.5), one zero, two not
    maps = np.array([[[0.5] * 3, [0.0, 1.0, 0.2]], [[0.0] * 3, [0.1, 0.1, 0.3]]], np.float32)
    scores = np.array([[0.3, 0.2], [np.nan, 0.9999999]], np.float32)
    flags = np.asarray(diagnostics.degenerate_flags(maps, scores, softmax=True, gradients=None))
    assert flags.tolist() == [
        [diagnostics.CONSTANT_MAP, 0],
        [diagnostics.CONSTANT_MAP | diagnostics.NONFINITE_SCORE, diagnostics.SATURATED_SCORE],
    ]


def test_overlay_is_the_module_and_calling_it_still_blends_with_a_warning():
    image = np.full((4, 5, 3), 100, np.uint8)
    heatmap = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    assert callable(gj.overlay.figure) and callable(gj.overlay.planes) and gj.overlay.blend is gj.blend
    with pytest.warns(DeprecationWarning, match="call gradcam_jax.blend"):
        old = gj.overlay(image, heatmap)
    np.testing.assert_array_equal(old, gj.blend(image, heatmap))


class Softmaxed(nn.Module):
    """A classifier that ends in a softmax (flaxmodels' `output="softmax"`)."""

    @nn.compact
    def __call__(self, x):
        return nn.softmax(Small()(x))


def test_a_model_that_already_softmaxes_is_flagged_under_a_softmax_score(small):
    _, _, x = small
    model = Softmaxed()
    variables = model.init(jax.random.key(0), x)
    with pytest.warns(gj.DegenerateMapWarning, match=r"softmax of a softmax \(2\).*score=\"logit\""):
        twice = gj.grad_cam(model, variables, x, np.array([1, 2]), score="softmax")
    assert np.all(np.asarray(twice.flags) & diagnostics.SOFTMAX_TWICE)
    once = gj.grad_cam(model, variables, x, np.array([1, 2]), score="logit")  # the probability itself
    assert not np.any(np.asarray(once.flags) & diagnostics.SOFTMAX_TWICE)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (jax.nn.softmax, True),
        (lambda z: jnp.exp(z) / jnp.exp(z).sum(-1, keepdims=True), True),
        (jax.jit(jax.nn.softmax), True),
        (jax.nn.log_softmax, False),  # softmax of log-probabilities is the softmax of the logits: harmless
        (lambda z: z / z.sum(-1, keepdims=True), False),
        (lambda z: z * 2.0, False),
    ],
)
def test_ends_in_softmax_reads_the_last_operation(fn, expected):
    jaxpr = jax.make_jaxpr(lambda z: fn(z @ jnp.ones((3, 4))))(jnp.ones((2, 3)))
    assert diagnostics.ends_in_softmax(jaxpr.jaxpr) is expected

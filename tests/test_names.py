"""One concept, one name (issue 25): every method publishes every option it takes, `targets` and
`score` included, no method or metric uses an older name of a shared concept, and each older name
still works for one release (a DeprecationWarning naming the new one, the same result)."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest
from test_methods import IMAGES, TARGETS, Tiny, tiny_variables

import gradcam_jax as gj
from gradcam_jax import metrics
from gradcam_jax._src.methods.base import RENAMED

METRICS = {
    name: getattr(metrics, name)
    for name in ("deletion", "insertion", "confidence_change", "road", "model_randomisation", "noisy_linear_imputation")
}
# Every name a shared concept has had here or in the libraries followed (captum, torchcam, MATLAB,
# RISE), besides those in RENAMED: none may come back as an option.
OLD_NAMES = {old for table in RENAMED.values() for old in table} | {
    "target",
    "classes",
    "class_idx",
    "mask_values",
    "fill_value",
    "stdevs",
    "std",
    "sigma",
    "n_samples",
    "num_samples",
    "num_features",
    "rng",
    "random_state",
}


def options_of(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


@pytest.mark.parametrize("name", sorted(gj.METHODS))
def test_every_method_publishes_targets_and_score(name):
    method = gj.METHODS[name]
    options = options_of(method)
    assert list(options)[:4] == ["model", "variables", "images", "targets"]
    assert options["targets"].default is None
    if method.default_score is None:  # cam, finer_cam: logits, no choice
        assert "score" not in options
    else:
        assert options["score"].kind is inspect.Parameter.KEYWORD_ONLY
        assert options["score"].default == method.default_score
    assert callable(method.impl) and hasattr(method.jitted, "lower")  # the cores stay reachable
    assert "score" not in options_of(method.impl)  # `register` adds it, once


def test_no_method_or_metric_takes_an_older_name():
    offenders = {
        f"{name}({option}=)"
        for name, fn in {**gj.METHODS, **METRICS}.items()
        for option in options_of(fn)
        if option in OLD_NAMES
    }
    assert not offenders, f"older names of shared concepts: {sorted(offenders)}"


def test_every_renamed_option_exists_under_its_new_name():
    for name, table in RENAMED.items():
        options = options_of(gj.METHODS.get(name) or METRICS[name])
        for old, new in table.items():
            assert new in options and old not in options, (name, old, new)


def test_one_meaning_per_name_across_methods():
    """The shared names mean one thing: their defaults are of one kind in every method."""
    seen: dict[str, set[str]] = {}
    for method in gj.METHODS.values():
        for option, parameter in options_of(method).items():
            if option in ("baseline", "patch", "noise", "key", "samples", "batch_size"):
                seen.setdefault(option, set()).add(type(parameter.default).__name__)
    assert seen["baseline"] == {"str"}  # "black" or "mean"
    assert seen["patch"] <= {"int", "str"}  # a size, "auto" for occlusion
    assert seen["noise"] == {"float"}
    assert seen["key"] == {"NoneType"}


# ---- each older name: a DeprecationWarning naming the new one, and the same result ----------------

LAYER = {"layer": "relu"}
DEPRECATED = [  # (method, old, new, value, the other options)
    ("occlusion", "mask_size", "patch", 2, {"stride": 2, "baseline": 0.0}),
    ("occlusion", "mask_value", "baseline", 0.5, {"patch": 2, "stride": 2}),
    ("score_cam", "fill", "baseline", 0.5, LAYER),
    ("is_cam", "fill", "baseline", 0.5, {**LAYER, "samples": 2}),
    ("ss_cam", "fill", "baseline", 0.5, {**LAYER, "samples": 2}),
    ("ss_cam", "stdev", "noise", 0.5, {**LAYER, "samples": 2, "key": 1, "baseline": 0.0}),
    ("gradient_shap", "stdev", "noise", 0.5, {"samples": 2, "key": 1}),
    ("smooth_grad_cam_plus_plus", "stdev", "noise", 0.5, {**LAYER, "samples": 2, "key": 1}),
    ("smoothgrad", "seed", "key", 3, {"samples": 2}),
]


@pytest.mark.parametrize("name, old, new, value, options", DEPRECATED, ids=[f"{d[0]}-{d[1]}" for d in DEPRECATED])
def test_an_older_option_name_warns_and_gives_the_same_map(name, old, new, value, options):
    method = gj.METHODS[name]
    now = method(Tiny(), tiny_variables(), IMAGES, TARGETS, **options, **{new: value})
    with pytest.warns(DeprecationWarning, match=f"{name}'s {old}= is now {new}="):
        before = method(Tiny(), tiny_variables(), IMAGES, TARGETS, **options, **{old: value})
    np.testing.assert_array_equal(np.asarray(before.map), np.asarray(now.map))
    np.testing.assert_array_equal(np.asarray(before.scores), np.asarray(now.scores))
    with pytest.raises(TypeError, match=f"give {new}= or its older name {old}=, not both"):
        method(Tiny(), tiny_variables(), IMAGES, TARGETS, **options, **{new: value, old: value})


def test_image_lime_features_is_now_segments():
    """A count of superpixels (MATLAB's NumFeatures), not a region's size: `segments`, not `patch`."""
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 8, 8, 3)))
    variables = Tiny().init(jax.random.key(1), x)
    options = dict(samples=8, segmentation="grid", key=2)
    now = gj.image_lime(Tiny(), variables, x, np.array([0, 1]), segments=4, **options)
    with pytest.warns(DeprecationWarning, match="image_lime's features= is now segments="):
        before = gj.image_lime(Tiny(), variables, x, np.array([0, 1]), features=4, **options)
    np.testing.assert_array_equal(np.asarray(before.map), np.asarray(now.map))


@pytest.mark.parametrize("name", ["deletion", "insertion"])
def test_metrics_substrate_is_now_baseline(name):
    maps = np.asarray(gj.grad_cam(Tiny(), tiny_variables(), IMAGES, TARGETS[:, 0], layer="relu").map)
    curve = METRICS[name]
    now = curve(Tiny(), tiny_variables(), IMAGES, maps, TARGETS[:, 0], steps=4, baseline="black")
    with pytest.warns(DeprecationWarning, match=f"{name}'s substrate= is now baseline="):
        before = curve(Tiny(), tiny_variables(), IMAGES, maps, TARGETS[:, 0], steps=4, substrate="black")
    np.testing.assert_array_equal(np.asarray(before.scores), np.asarray(now.scores))
    with pytest.raises(TypeError, match="not both"):
        curve(Tiny(), tiny_variables(), IMAGES, maps, TARGETS[:, 0], steps=4, substrate="black", baseline="black")


def test_model_randomisation_seed_is_now_init_key():
    args = ("cam", Tiny(), tiny_variables(), IMAGES, TARGETS[:, 0])
    now = metrics.model_randomisation(*args, init_key=3, layer="relu")
    with pytest.warns(DeprecationWarning, match="model_randomisation's seed= is now init_key="):
        before = metrics.model_randomisation(*args, seed=3, layer="relu")
    np.testing.assert_array_equal(before.correlations, now.correlations)
    typed = metrics.model_randomisation(*args, init_key=jax.random.key(3), layer="relu")  # a key or an int seed
    np.testing.assert_array_equal(typed.correlations, now.correlations)


def test_a_new_key_does_not_recompile_smoothgrad():
    def run(**options):
        return gj.smoothgrad(Tiny(), tiny_variables(), IMAGES, TARGETS, samples=2, **options).map

    run(key=11)
    run(key=jax.random.key(11))  # a typed key is another input type: one compilation of its own
    compiled = gj.smoothgrad.jitted._cache_size()
    maps = [np.asarray(run(key=12)), np.asarray(run(key=jax.random.key(13)))]
    with pytest.warns(DeprecationWarning):
        maps.append(np.asarray(run(seed=14)))  # the older name is a key too: traced, not static
    assert gj.smoothgrad.jitted._cache_size() == compiled
    assert not np.allclose(maps[0], maps[2])


@pytest.mark.parametrize(
    "method",
    ["grad_cam", "score_cam", "occlusion", "integrated_gradients", "guided_backprop", "deeplift", "smoothgrad"],
)
def test_a_second_call_on_the_same_shapes_compiles_nothing(method):
    """A long-running caller (the explorer, a video, a training loop) reuses the compiled program: each
    XLA CPU program holds memory mappings until it is dropped, so one per call would use them up."""
    compiled = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    options = {"layer": "relu"} if method in ("grad_cam", "score_cam") else {}
    first = gj.METHODS[method](Tiny(), tiny_variables(), IMAGES, TARGETS, **options).map
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        again = gj.METHODS[method](Tiny(), tiny_variables(), IMAGES.copy(), TARGETS.copy(), **options).map
        np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
        assert compiled == []
        jax.jit(lambda x: x * 3.25 + 0.5)(np.ones(7, np.float32))  # a program never seen: the counter counts
        assert len(compiled) == 1
    finally:
        jax.monitoring.unregister_event_duration_listener(count)


def test_giving_the_default_score_is_leaving_it_out():
    """The published default means what it says: with a target function (its own score) too."""
    fn = lambda out: out[:, 1]  # noqa: E731
    plain = gj.grad_cam(Tiny(), tiny_variables(), IMAGES, fn, layer="relu")
    given = gj.grad_cam(Tiny(), tiny_variables(), IMAGES, fn, layer="relu", score=gj.grad_cam.default_score)
    np.testing.assert_array_equal(np.asarray(plain.map), np.asarray(given.map))
    with pytest.raises(ValueError, match="a target function is its own score"):
        gj.grad_cam(Tiny(), tiny_variables(), IMAGES, fn, layer="relu", score="logit")
    with pytest.raises(TypeError, match="cam has no score option"):
        gj.cam(Tiny(), tiny_variables(), IMAGES, layer="relu", score="logit")

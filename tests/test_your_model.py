"""Bring your own model and your own target: callables with train flags, dict and dataclass outputs,
Equinox, and targets other than classes (`gradcam_jax.targets`).

References are computed without the library's taps: activations and gradients by hand-written
`jax.grad` through the model's own parts, or from a linen twin with the same weights; the targets'
scores by their formulas written out in numpy.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj
from gradcam_jax import metrics, targets
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS
from gradcam_jax.methods import METHODS

# --- a linen ResNet as in flax's examples/imagenet: `train` switches BatchNorm --------------------


class ResNetBlock(nn.Module):
    filters: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.relu(norm()(nn.Conv(self.filters, (3, 3), self.strides)(x)))
        y = norm()(nn.Conv(self.filters, (3, 3))(y))
        if x.shape != y.shape:
            x = norm()(nn.Conv(self.filters, (1, 1), self.strides)(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """stem -> stage1 -> stage2 -> GAP -> head; `features` and `head` are for the hand-written reference."""

    num_classes: int = 4

    def setup(self):
        self.stem = nn.Conv(8, (3, 3))
        self.stage1 = ResNetBlock(8)
        self.stage2 = ResNetBlock(16, strides=2)
        self.dense = nn.Dense(self.num_classes)

    def features(self, x, train: bool = True):
        return self.stage2(self.stage1(nn.relu(self.stem(x)), train), train)

    def head(self, h):
        return self.dense(h.mean(axis=(1, 2)))

    def __call__(self, x, train: bool = True):
        return self.head(self.features(x, train))


@pytest.fixture(scope="module")
def resnet():
    model = ResNet()
    images = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3)) * 255
    variables = model.init(jax.random.key(0), images, train=False)
    # one training step's worth of batch statistics, so that train=False really differs from train=True
    _, state = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return model, {"params": variables["params"], **state}, images


@pytest.mark.oldest
def test_callable_with_train_flag_equals_hand_written_grad(resnet):
    model, variables, images = resnet
    apply_fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
    classes = np.array([0, 2, 3])
    result = gj.grad_cam(apply_fn, variables, images, classes, layer="stage2", score="logit")

    features = model.apply(variables, images, train=False, method=ResNet.features)

    def logit_sum(h, c):  # sum over images of each image's own logit: images do not interact
        return model.apply(variables, h, method=ResNet.head)[jnp.arange(3), c].sum()

    reference = jax.grad(logit_sum)(features, classes)
    np.testing.assert_allclose(result.activations, features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.gradients, reference, rtol=1e-4, atol=1e-7)
    raw = np.einsum("bhwc,bc->bhw", np.asarray(features), np.asarray(reference).mean(axis=(1, 2)))
    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    small = jax.image.resize(result.map, (3, 8, 8), "linear")  # the map back at the layer's size, roughly
    assert np.corrcoef(small.ravel(), ((raw - low) / (high - low)).ravel())[0, 1] > 0.9


def test_train_mode_batch_stats_do_not_leak_into_eval_callable(resnet):
    model, variables, images = resnet
    eval_logits = model.apply(variables, images, train=False)
    train_logits, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    assert not np.allclose(eval_logits, train_logits, atol=1e-3)  # the flag matters for this model
    result = gj.grad_cam(lambda v, x: model.apply(v, x, train=False), variables, images, layer="stage2", score="logit")
    np.testing.assert_allclose(result.scores, eval_logits.max(axis=-1), rtol=1e-5)


# --- outputs that are not plain logits -------------------------------------------------------------


class TwoHeads(nn.Module):
    """A dict output: {"logits": (B, 3), "embedding": (B, 6)}."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), name="conv")(x))
        pooled = h.mean(axis=(1, 2))
        return {"logits": nn.Dense(3, name="head")(pooled), "embedding": pooled}


@flax.struct.dataclass
class Out:
    logits: jax.Array
    extra: jax.Array


@pytest.fixture(scope="module")
def two_heads():
    model = TwoHeads()
    images = jax.random.uniform(jax.random.key(2), (2, 10, 10, 3))
    return model, model.init(jax.random.key(0), images), images


def test_dict_and_dataclass_outputs_use_their_logits(two_heads):
    model, variables, images = two_heads
    as_dict = gj.grad_cam(model, variables, images, np.array([1, 2]), layer="conv")
    struct_fn = lambda v, x: Out(model.apply(v, x)["logits"], jnp.zeros(2))  # noqa: E731
    as_struct = gj.grad_cam(struct_fn, variables, images, np.array([1, 2]), layer="conv")
    logits = model.apply(variables, images)["logits"]
    probs = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(as_dict.scores, probs[[0, 1], [1, 2]], rtol=1e-5)
    np.testing.assert_allclose(as_struct.map, as_dict.map, atol=1e-6)


def test_similarity_target_gradient_is_the_cosine_gradient(two_heads):
    model, variables, images = two_heads
    concept = np.array([1.0, -0.5, 0.2, 0.0, 0.3, 2.0], np.float32)
    result = gj.grad_cam(model, variables, images, targets.similarity(concept), layer="conv")
    assert result.map.shape == (2, 10, 10) and result.targets is None
    conv = nn.Conv(6, (3, 3)).apply({"params": variables["params"]["conv"]}, images)  # the tapped output, by hand
    np.testing.assert_allclose(result.activations, conv, rtol=1e-5, atol=1e-6)

    def cosine(a):  # hand-written: pool of ReLU, unit vectors, dot
        e = jnp.maximum(a, 0).mean(axis=(1, 2))
        return ((e / jnp.linalg.norm(e, axis=-1, keepdims=True)) @ (concept / np.linalg.norm(concept))).sum()

    np.testing.assert_allclose(result.gradients, jax.grad(cosine)(conv), rtol=1e-4, atol=1e-7)
    e = np.maximum(np.asarray(conv), 0).mean(axis=(1, 2))
    expected = e @ concept / np.linalg.norm(e, axis=1) / np.linalg.norm(concept)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)


def test_similarity_shapes_k_and_per_image(two_heads):
    model, variables, images = two_heads
    concepts = np.eye(6, dtype=np.float32)[:4]  # (K=4, D)
    k = gj.grad_cam(model, variables, images, targets.similarity(concepts), layer="conv")
    assert k.map.shape == (2, 4, 10, 10) and k.scores.shape == (2, 4)
    per = gj.grad_cam(model, variables, images, targets.similarity(concepts[:2], per_image=True), layer="conv")
    np.testing.assert_allclose(per.scores, [k.scores[0, 0], k.scores[1, 1]], rtol=1e-5)
    np.testing.assert_allclose(per.map[1], k.map[1, 1], atol=1e-5)


def test_segmentation_target_is_masked_sum_of_class_logits():
    per_pixel = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype(np.float32)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:5] = True
    got = targets.segmentation(2, mask)(jnp.asarray(per_pixel))
    np.testing.assert_allclose(got, per_pixel[:, 1:3, 2:5, 2].sum(axis=(1, 2)), rtol=1e-6)
    both = targets.segmentation([0, 2], None, score="softmax")(jnp.asarray(per_pixel))
    soft = np.exp(per_pixel) / np.exp(per_pixel).sum(-1, keepdims=True)
    np.testing.assert_allclose(both, soft[..., [0, 2]].sum(axis=(1, 2)), rtol=1e-5)


def test_output_target_reads_a_regression_unit():
    values = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(targets.output(1)(values), [2.0, 5.0])
    np.testing.assert_allclose(targets.output([2, 0])(values), [[3.0, 1.0], [6.0, 4.0]])
    np.testing.assert_allclose(targets.output(key="age")({"age": jnp.asarray([[7.0], [8.0]])}), [7.0, 8.0])


def test_function_target_equals_class_target_and_columns_are_independent(two_heads):
    model, variables, images = two_heads
    by_class = gj.grad_cam(model, variables, images, np.array([[0, 2], [1, 0]]), layer="conv", score="logit")
    picked = jnp.asarray([[0, 2], [1, 0]])
    by_function = gj.grad_cam(
        model, variables, images, lambda out: jnp.take_along_axis(out["logits"], picked, axis=1), layer="conv"
    )
    np.testing.assert_allclose(by_function.map, by_class.map, atol=1e-6)
    np.testing.assert_allclose(by_function.gradients, by_class.gradients, rtol=1e-5, atol=1e-8)
    assert by_function.targets is None and by_class.targets.shape == (2, 2)


def test_perturbation_methods_and_metrics_take_function_targets(two_heads):
    model, variables, images = two_heads
    fn = lambda out: out["logits"][:, 1]  # noqa: E731
    occ_fn = gj.occlusion(model, variables, images, fn, patch=4, stride=3)
    occ_cls = gj.occlusion(model, variables, images, np.array([1, 1]), patch=4, stride=3, score="logit")
    np.testing.assert_allclose(occ_fn.map, occ_cls.map, atol=1e-6)
    curve_fn = metrics.deletion(model, variables, images, occ_fn.map, fn, steps=10)
    curve_cls = metrics.deletion(model, variables, images, occ_fn.map, np.array([1, 1]), steps=10, score="logit")
    np.testing.assert_allclose(curve_fn.scores, curve_cls.scores, rtol=1e-5)


# --- bad input: one clear error each, before heavy work -------------------------------------------


def test_bad_targets_and_outputs_are_clear_errors(two_heads):
    model, variables, images = two_heads
    with pytest.raises(ValueError, match=r"must return scores of shape \(2,\) or \(2, K\); got \(2, 3, 1\)"):
        gj.grad_cam(model, variables, images, lambda out: out["logits"][..., None], layer="conv")
    with pytest.raises(ValueError, match="must return float scores"):
        gj.grad_cam(model, variables, images, lambda out: jnp.argmax(out["logits"], -1), layer="conv")
    with pytest.raises(ValueError, match="a target function is its own score"):
        gj.grad_cam(model, variables, images, lambda out: out["logits"][:, 0], layer="conv", score="logit")
    no_logits = lambda v, x: {"embedding": model.apply(v, x)["embedding"]}  # noqa: E731
    with pytest.raises(TypeError, match="class targets need logits.*keys \\['embedding'\\].*target function"):
        gj.grad_cam(no_logits, variables, images, np.array([0, 1]), layer="conv")
    with pytest.raises(gj.UnknownLayerError, match="unknown layer 'stage9'.*conv, head"):
        gj.grad_cam(lambda v, x: model.apply(v, x), variables, images, layer="stage9")
    with pytest.raises(TypeError, match="cam has no score option"):
        gj.cam(model, variables, images, layer="conv", score="softmax")


def test_nnx_model_in_training_mode_says_to_call_eval():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))

    net = Net(nnx.Rngs(0))
    images = jnp.ones((2, 8, 8, 3))
    for method in (gj.grad_cam, gj.occlusion):
        with pytest.raises(ValueError, match=r"call `module.eval\(\)`"):
            method(*nnx.split(net), images, **({"layer": "conv"} if method is gj.grad_cam else {"patch": 4}))
    net.eval()
    assert gj.grad_cam(*nnx.split(net), images, layer="conv").map.shape == (2, 8, 8)


# --- Equinox ----------------------------------------------------------------------------------------

eqx = pytest.importorskip("equinox")


class EqxCNN(eqx.Module):
    """Per-image, channel-first convolutions, vmapped inside `__call__` over an NHWC batch."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(6, 8, 3, padding=1, key=k2)
        self.head = eqx.nn.Linear(8, 4, key=k3)

    def one_image(self, x):  # (C, H, W)
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        return self.head(h.mean(axis=(1, 2)))

    def __call__(self, images):  # (B, H, W, C)
        return jax.vmap(self.one_image)(images.transpose(0, 3, 1, 2))


class LinenTwin(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), padding=1, name="conv1")(x))
        h = nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv2")(h))
        return nn.Dense(4, name="head")(h.mean(axis=(1, 2)))


def linen_params(net: EqxCNN) -> dict:
    conv = lambda c: {"kernel": jnp.transpose(c.weight, (2, 3, 1, 0)), "bias": c.bias[:, 0, 0]}  # noqa: E731
    return {"params": {"conv1": conv(net.conv1), "conv2": conv(net.conv2),
                       "head": {"kernel": net.head.weight.T, "bias": net.head.bias}}}  # fmt: skip


@pytest.fixture(scope="module")
def twins():
    net = EqxCNN(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (2, 12, 12, 3)) * 255
    params, static = eqx.partition(net, eqx.is_array)
    return (static, params), (LinenTwin(), linen_params(net)), images


def test_equinox_twin_logits_agree(twins):
    (static, params), (linen, variables), images = twins
    np.testing.assert_allclose(
        eqx.combine(params, static)(images), linen.apply(variables, images), rtol=1e-5, atol=1e-4
    )


METHOD_OPTIONS = {"occlusion": {"patch": 4, "stride": 4}, "integrated_gradients": {"steps": 4},
                  "smoothgrad": {"samples": 4}, "score_cam": {"batch_size": 8}, "gradient_shap": {"samples": 2},
                  "is_cam": {"samples": 2, "batch_size": 8}, "smooth_grad_cam_plus_plus": {"samples": 2},
                  "feature_ablation": {"patch": 4}, "shapley_sampling": {"patch": 4, "samples": 2},
                  "ss_cam": {"samples": 2, "batch_size": 8},
                  "lime": {"patch": 4, "samples": 8}, "kernel_shap": {"patch": 4, "samples": 8},
                  "image_lime": {"segments": 4, "samples": 8, "segmentation": "grid"}}  # fmt: skip
LAYERLESS = {"occlusion", "integrated_gradients", "smoothgrad", "guided_backprop", "saliency", "input_x_gradient",
             "gradient_shap", "feature_ablation", "shapley_sampling", "fullgrad", "lime", "kernel_shap",
             "image_lime", "lrp"}  # fmt: skip


# The attention methods: test_transformers.py. deeplift refuses ReLUs vmapped per image, as EqxCNN's (test_deeplift.py).
PER_IMAGE_REFUSED = {"deeplift"}


@pytest.mark.oldest
@pytest.mark.parametrize("name", sorted(set(METHODS) - set(ATTENTION_METHODS) - PER_IMAGE_REFUSED))
def test_equinox_and_linen_twin_give_the_same_maps(twins, name):
    (static, params), (linen, variables), images = twins
    options = dict(METHOD_OPTIONS.get(name, {}), **({} if name in LAYERLESS else {"layer": "conv2"}))
    got = METHODS[name](static, params, images, np.array([1, 3]), **options)
    want = METHODS[name](linen, variables, images, np.array([1, 3]), **options)
    np.testing.assert_allclose(got.map, want.map, atol=1e-5, err_msg=name)
    if got.activations is not None:  # channel-first per image, seen channels-last like linen's
        np.testing.assert_allclose(got.activations, want.activations, rtol=1e-5, atol=1e-4)


def test_equinox_paths_layouts_and_errors(twins):
    (static, params), _, images = twins
    shapes = gj.layer_shapes(static, params, images)
    assert list(shapes) == ["conv1", "conv2", "head"]
    assert shapes["conv2"].shape == (2, 12, 12, 8)  # (C, h, w) per image -> (B, h, w, C)
    as_last = gj.layer_shapes(gj.channels_last(static), params, images)
    assert as_last["conv2"].shape == (2, 8, 12, 12)  # taken as given: batch, then (8, 12, 12)
    net = eqx.combine(params, static)
    with pytest.raises(TypeError, match=r"pass it partitioned: `params, static = eqx.partition"):
        gj.grad_cam(net, None, images, layer="conv2")


def test_equinox_sequential_paths():
    net = eqx.nn.Sequential([eqx.nn.Conv2d(3, 4, 3, padding=1, key=jax.random.key(0)), eqx.nn.Lambda(jax.nn.relu)])

    class Batched(eqx.Module):
        features: eqx.nn.Sequential
        head: eqx.nn.Linear

        def __call__(self, images):
            one = lambda x: self.head(self.features(x).mean(axis=(1, 2)))  # noqa: E731
            return jax.vmap(one)(images.transpose(0, 3, 1, 2))

    model = Batched(net, eqx.nn.Linear(4, 2, key=jax.random.key(1)))
    params, static = eqx.partition(model, eqx.is_array)
    images = jnp.ones((1, 6, 6, 3))
    assert {"features", "features/layers/0", "features/layers/1", "head"} <= set(
        gj.layer_shapes(static, params, images)
    )
    assert gj.grad_cam(static, params, images, layer="features/layers/0").map.shape == (1, 6, 6)


# --- the folder and stream runners take a function model too ---------------------------------------


class FlagNet(nn.Module):
    """A tiny 224x224 classifier with a `train` flag (dropout), as research code writes them."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        h = nn.relu(nn.Conv(4, (5, 5), strides=4, name="conv")(x / 255.0))
        h = nn.Dropout(0.5, deterministic=not train)(h)
        return nn.Dense(3, name="head")(h.mean(axis=(1, 2)))


def test_explain_frames_and_dataset_take_a_function_model(tmp_path):
    from PIL import Image

    model = FlagNet()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
    apply_fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
    frames = [np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8) for i in range(3)]
    explained = list(gj.explain_frames(frames, apply_fn, variables, batch_size=2, layer="conv"))
    assert [f.map.shape for f in explained] == [(224, 224)] * 3
    assert all(0 <= f.target < 3 and 0 <= f.score <= 1 for f in explained)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"img{i}.png")
    summary = gj.explain_dataset(tmp_path, tmp_path / "out", apply_fn, variables, batch_size=2, layer="conv")
    assert summary.explained == 3


@pytest.mark.parametrize("name", ["guided_backprop", "integrated_gradients", "smoothgrad", "score_cam", "eigen_cam"])
def test_input_gradient_and_forward_methods_take_function_targets(two_heads, name):
    model, variables, images = two_heads
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 4}}.get(name, {})
    options |= {"layer": "conv"} if name in ("score_cam", "eigen_cam") else {}
    fn = lambda out: out["logits"][:, 2]  # noqa: E731
    got = METHODS[name](model, variables, images, fn, **options)
    want = METHODS[name](model, variables, images, np.array([2, 2]), score="logit", **options)
    np.testing.assert_allclose(got.map, want.map, atol=1e-5)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)

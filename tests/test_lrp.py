"""LRP (`methods.lrp`) on hand-built fixtures: each rule against its formula computed here in numpy
on a two-layer net, conservation on bias-free ReLU nets, LRP-0 = input x gradient (Montavon et al.
2019, by `jax.grad`) on 1-D, 2-D and 3-D nets with folded batch norms, the same relevance from the
linen, NNX, Equinox and Keras twins of one network, K targets, jit and vmap, and the one-line errors.
zennit and captum on PyTorch twins: tests/test_lrp_zennit.py."""

from __future__ import annotations

import os
from typing import cast

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported, here or by another test

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src.adapters.taps import call_model  # noqa: E402
from gradcam_jax._src.relevance import composites as C  # noqa: E402
from gradcam_jax._src.relevance import rules as R  # noqa: E402


def grads(result) -> np.ndarray:
    """The signed relevance an LRP `Explanation` holds (its `gradients`), as numpy."""
    return np.asarray(result.gradients)


def logits_of(model, variables, x) -> jax.Array:
    return cast(jax.Array, model.apply(variables, x))


# ---- the rules' formulas in numpy (zennit 0.5.1's definitions, written from its documentation) ------


def stab(z, epsilon):
    return z + epsilon * np.where(z >= 0, 1.0, -1.0)


def pos(a):
    return np.maximum(a, 0)


def neg(a):
    return np.minimum(a, 0)


def rule_by_hand(rule, x, w, b, relevance, n_inputs=None):
    """R_x of a dense layer z = x @ w + b (x (n, i), w (i, o), b (o,)) under `rule`, given R_z (n, o)."""
    xp, xn = pos(x), neg(x)
    if isinstance(rule, R.Epsilon):
        s = relevance / stab(x @ w + b, rule.epsilon)
        return x * (s @ w.T)
    if isinstance(rule, R.ZPlus):  # alpha 1, beta 0; negative inputs through negative weights
        s = relevance / stab(xp @ pos(w) + xn @ neg(w) + pos(b), rule.epsilon)
        return xp * (s @ pos(w).T) + xn * (s @ neg(w).T)
    if isinstance(rule, R.AlphaBeta):
        up = relevance / stab(xp @ pos(w) + xn @ neg(w) + pos(b), rule.epsilon)
        down = relevance / stab(xp @ neg(w) + xn @ pos(w) + neg(b), rule.epsilon)
        return rule.alpha * (xp * (up @ pos(w).T) + xn * (up @ neg(w).T)) - rule.beta * (
            xp * (down @ neg(w).T) + xn * (down @ pos(w).T)
        )
    if isinstance(rule, R.Gamma):  # outputs above zero: positive contributions boosted; below: negative ones
        g = rule.gamma
        w_up, w_down = w + g * pos(w), w + g * neg(w)
        z = x @ w + b
        up = np.where(z > 0, relevance, 0) / stab(xp @ w_up + xn @ w_down + b + g * pos(b), rule.epsilon)
        down = np.where(z < 0, relevance, 0) / stab(xp @ w_down + xn @ w_up + b + g * neg(b), rule.epsilon)
        return xp * (up @ w_up.T) + xn * (up @ w_down.T) + xp * (down @ w_down.T) + xn * (down @ w_up.T)
    if isinstance(rule, R.ZBox):  # the biases cancel: b - b+ - b- = 0
        low, high = np.full_like(x, rule.low), np.full_like(x, rule.high)
        s = relevance / stab(x @ w - low @ pos(w) - high @ neg(w), rule.epsilon)
        return x * (s @ w.T) - low * (s @ pos(w).T) - high * (s @ neg(w).T)
    if isinstance(rule, R.Flat):  # every input of the receptive field alike; zennit's bias is zero
        return np.repeat(
            relevance.sum(-1, keepdims=True) / stab(np.float64(x.shape[-1]), rule.epsilon), x.shape[-1], -1
        )
    if isinstance(rule, R.WSquare):  # shares by w^2; zennit squares the bias too
        return (relevance / stab((w * w).sum(0) + b * b, rule.epsilon)) @ (w * w).T
    raise AssertionError(rule)


class TwoLayer(nn.Module):
    """x (B, 2, 3) -> Dense 3->4 at each of 2 positions -> ReLU -> flatten -> Dense 8->2."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(4, name="fc1")(x))
        return nn.Dense(2, name="fc2")(h.reshape(h.shape[0], -1))


def two_layer_by_hand(params, x, c, first, upper):
    """R at the input of TwoLayer for class c, the relevance at the output being the logit."""
    w1, b1 = (np.asarray(params["fc1"][k], np.float64) for k in ("kernel", "bias"))
    w2, b2 = (np.asarray(params["fc2"][k], np.float64) for k in ("kernel", "bias"))
    h = pos(x @ w1 + b1)  # (2, 4)
    z = h.reshape(1, -1) @ w2 + b2
    top = np.zeros_like(z)
    top[0, c] = z[0, c]
    r_h = rule_by_hand(upper, h.reshape(1, -1), w2, b2, top).reshape(2, 4)
    return rule_by_hand(first, x, w1, b1, r_h), z[0, c]


@pytest.fixture(scope="module")
def two_layer():
    rng = np.random.default_rng(3)
    params = {
        "fc1": {"kernel": rng.normal(0, 1, (3, 4)), "bias": rng.normal(0, 0.3, 4)},
        "fc2": {"kernel": rng.normal(0, 1, (8, 2)), "bias": rng.normal(0, 0.3, 2)},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    x = rng.normal(0, 1, (1, 2, 3)).astype(np.float32)  # inputs of both signs: the generalised rules
    return params, x


UPPER_RULES = [R.Epsilon(0.1), R.Epsilon(1e-6), R.ZPlus(), R.AlphaBeta(2.0, 1.0), R.AlphaBeta(1.0, 0.0), R.Gamma(0.25)]
FIRST_RULES = UPPER_RULES + [R.ZBox(-2.0, 2.0), R.Flat(), R.WSquare()]


# each first-layer rule with an upper rule of its own: every rule in both places, one program each
PAIRS = [(first, UPPER_RULES[(i + 2) % len(UPPER_RULES)]) for i, first in enumerate(FIRST_RULES)]


@pytest.mark.parametrize("first, upper", PAIRS, ids=[f"{f.name}-{u.name}" for f, u in PAIRS])
def test_each_rule_equals_its_formula_on_a_two_layer_net(two_layer, first, upper):
    params, x = two_layer
    composite = C.Composite(conv=upper, dense=upper, first=first)
    result = gj.METHODS["lrp"](TwoLayer(), {"params": params}, x, np.array([1]), composite=composite)
    expected, logit = two_layer_by_hand(params, x[0].astype(np.float64), 1, first, upper)
    np.testing.assert_allclose(np.asarray(result.scores)[0], logit, rtol=1e-5)
    np.testing.assert_allclose(grads(result)[0], expected, rtol=1e-4, atol=1e-5)


def test_upper_rules_by_layer_path_and_type(two_layer):
    """`layers` maps a path or a class name to a rule, winning over `dense`."""
    params, x = two_layer
    for key in ("fc2", "Dense"):
        composite = C.Composite(dense=R.Epsilon(0.1), layers=((key, R.AlphaBeta(2.0, 1.0)),))
        got = gj.METHODS["lrp"](TwoLayer(), {"params": params}, x, np.array([0]), composite=composite)
        first = R.Epsilon(0.1) if key == "fc2" else R.AlphaBeta(2.0, 1.0)
        expected, _ = two_layer_by_hand(params, x[0].astype(np.float64), 0, first, R.AlphaBeta(2.0, 1.0))
        np.testing.assert_allclose(grads(got)[0], expected, rtol=1e-4, atol=1e-5, err_msg=key)


# ---- conservation and LRP-0 = input x gradient, 1-D / 2-D / 3-D ---------------------------------------


class ConvNet(nn.Module):
    """conv -> BatchNorm (folded) -> ReLU -> max pool -> conv -> ReLU -> residual sum -> average -> dense,
    in `dims` spatial dimensions; `bias` False: a bias-free net (and batch norms without shift)."""

    dims: int = 2
    bias: bool = True

    @nn.compact
    def __call__(self, x):
        k = (3,) * self.dims
        h = nn.Conv(6, k, use_bias=self.bias, name="conv1")(x)
        h = nn.BatchNorm(use_running_average=True, use_bias=self.bias, name="bn1")(h)
        h = nn.max_pool(nn.relu(h), (2,) * self.dims, (2,) * self.dims)
        h = h + nn.relu(nn.Conv(6, k, use_bias=self.bias, name="conv2")(h))
        h = h.mean(axis=tuple(range(1, self.dims + 1)))
        return nn.Dense(3, use_bias=self.bias, name="head")(h)


def conv_net(dims, bias, size=8, seed=0):
    model = ConvNet(dims, bias)
    x = jax.random.uniform(jax.random.key(seed), (2, *(size,) * dims, 3), minval=-1.0, maxval=1.0)
    variables = model.init(jax.random.key(seed + 1), x)
    rng = np.random.default_rng(seed)  # statistics away from 0 and 1: the fold is what is tested
    variables = {
        "params": variables["params"],
        "batch_stats": {
            "bn1": {
                "mean": jnp.asarray(rng.uniform(-0.3, 0.3, 6) * bias, jnp.float32),
                "var": jnp.asarray(rng.uniform(0.5, 2, 6), jnp.float32),
            }
        },
    }
    variables["params"]["bn1"]["scale"] = jnp.asarray(rng.uniform(0.5, 1.5, 6), jnp.float32)
    return model, variables, x


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_lrp0_is_input_times_gradient_and_conserves_without_biases(dims):
    """On a ReLU net LRP-0 sends back g = d logit / d a at every layer (batch norms folded, pools and
    sums by their gradients), so the first layer's relevance is x * gradient; without biases it sums
    to the logit."""
    for bias in (True, False):
        model, variables, x = conv_net(dims, bias, size=8 if dims < 3 else 6)
        classes = jnp.array([[0, 2], [1, 1]])
        result = gj.METHODS["lrp"](model, variables, x, classes, composite=C.epsilon(0.0))
        logits = logits_of(model, variables, x)
        for k in range(2):
            column = classes[:, k : k + 1]
            grad = jax.grad(
                lambda x, m=model, v=variables, c=column: jnp.take_along_axis(logits_of(m, v, x), c, 1).sum()
            )(x)
            expected = x * grad
            np.testing.assert_allclose(grads(result)[:, k], expected, atol=1e-5 * float(jnp.abs(expected).max()))
            picked = jnp.take_along_axis(logits, classes[:, k : k + 1], 1)[:, 0]
            np.testing.assert_allclose(result.scores[:, k], picked, rtol=1e-5)
            if not bias:
                sums = grads(result)[:, k].reshape(2, -1).sum(-1)
                np.testing.assert_allclose(sums, picked, rtol=1e-4, atol=1e-6)
        assert result.map.shape == (2, 2, *x.shape[1:-1])


def test_zplus_conserves_on_a_bias_free_net_with_positive_inputs():
    model, variables, x = conv_net(2, False)
    x = jnp.abs(x)
    result = gj.METHODS["lrp"](model, variables, x, jnp.array([2, 0]), composite="EpsilonPlus")
    logits = logits_of(model, variables, x)
    picked = logits[jnp.arange(2), jnp.array([2, 0])]
    # z+ conserves layer by layer (denominators of positive terms only); the head's epsilon is 1e-6
    np.testing.assert_allclose(grads(result).reshape(2, -1).sum(-1), picked, rtol=1e-4)


def test_targets_batched_jit_and_vmap_agree():
    model, variables, x = conv_net(2, True)
    composite = C.epsilon_gamma_box(-1.0, 1.0)
    lrp = gj.METHODS["lrp"]
    both = lrp(model, variables, x, jnp.array([[0, 2], [1, 0]]), composite=composite)
    for k, column in enumerate(([0, 1], [2, 0])):
        alone = lrp(model, variables, x, jnp.array(column), composite=composite)
        np.testing.assert_allclose(grads(both)[:, k], grads(alone), rtol=1e-5, atol=1e-7)
    jitted = jax.jit(lambda v, x: lrp(model, v, x, jnp.array([0, 1]), composite=composite).gradients)(variables, x)
    np.testing.assert_allclose(jitted, grads(both)[:, 0], rtol=1e-5, atol=1e-7)
    mapped = jax.vmap(
        lambda one: cast(jax.Array, lrp(model, variables, one[None], [2], composite=composite).gradients)
    )(x)
    batched = grads(lrp(model, variables, x, jnp.array([2, 2]), composite=composite))
    np.testing.assert_allclose(np.asarray(mapped)[:, 0], batched, rtol=1e-5, atol=1e-7)


# ---- the same network in NNX, Equinox and Keras --------------------------------------------------------


def relevance(model, variables, x, classes, composite):
    return grads(gj.METHODS["lrp"](model, variables, x, classes, composite=composite))


def close(got, want):
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-3)


# the composites with the most terms per layer: alpha-beta's four, gamma's four and z^B's three
COMPOSITES = ["EpsilonAlpha2Beta1", C.epsilon_gamma_box(0.0, 1.0)]


def test_nnx_equals_its_linen_twin():
    """NNX: a doubled stem conv, convs with folded batch norms, residual sums (tests/test_nnx.py's twins)."""
    from flax import nnx

    from tests.test_nnx import linen_twin, make_nnx

    model = make_nnx(0)
    twin, variables = linen_twin(model)
    graphdef, state = nnx.split(model)
    x = jax.random.uniform(jax.random.key(7), (2, 10, 10, 3))
    for composite in COMPOSITES:
        close(relevance(graphdef, state, x, [1, 4], composite), relevance(twin, variables, x, [1, 4], composite))


def test_equinox_per_example_with_batch_norm_state_equals_its_linen_twin():
    """Equinox, channel-first, run per image under the model's own vmap, an eqx.nn.BatchNorm with
    state after a ReLU (passed, not folded) (tests/test_equinox_state.py's net)."""
    pytest.importorskip("equinox")
    import equinox as eqx

    from tests.test_equinox_state import Net, running

    net, state = eqx.nn.make_with_state(Net)(jax.random.key(0))
    rng = np.random.default_rng(0)
    mean, var = jnp.asarray(rng.uniform(0, 1, 6), jnp.float32), jnp.asarray(rng.uniform(0.5, 2, 6), jnp.float32)
    state = state.set(running(net), (mean, var))
    params, static = eqx.partition(net, eqx.is_array)

    class Twin(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Conv(6, (3, 3), name="conv1")(x))
            h = nn.BatchNorm(use_running_average=True, epsilon=net.norm.eps, name="norm")(h)
            return nn.Dense(4, name="head")(nn.relu(nn.Conv(8, (3, 3), name="conv2")(h)).mean(axis=(1, 2)))

    conv = lambda c: {"kernel": c.weight.transpose(2, 3, 1, 0), "bias": c.bias[:, 0, 0]}  # noqa: E731
    variables = {
        "params": {
            "conv1": conv(net.conv1),
            "conv2": conv(net.conv2),
            "head": {"kernel": net.head.weight.T, "bias": net.head.bias},
            "norm": {"scale": net.norm.weight, "bias": net.norm.bias},
        },
        "batch_stats": {"norm": {"mean": mean, "var": var}},
    }
    x = jax.random.uniform(jax.random.key(1), (2, 10, 10, 3))
    logits = call_model(static, (params, state), x)  # in inference mode, as every method runs it
    np.testing.assert_allclose(
        np.asarray(logits), logits_of(Twin(), variables, x), rtol=1e-4, atol=1e-5
    )  # the same network
    for composite in COMPOSITES:
        got = relevance(static, (params, state), x, [1, 3], composite)
        close(got, relevance(Twin(), variables, x, [1, 3], composite))


def test_keras_equals_its_linen_twin():
    """Keras: a Conv2D with its ReLU fused (the rules act on the convolution, the activation passes),
    a BatchNormalization after it (passed) (tests/test_keras.py's twins)."""
    pytest.importorskip("keras")
    from tests.test_keras import linen_twin, small_cnn

    model = small_cnn()
    twin, variables = linen_twin(model)
    x = np.random.default_rng(1).uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    for composite in COMPOSITES:
        close(relevance(model, None, x, [1, 3, 0], composite), relevance(twin, variables, x, [1, 3, 0], composite))


# ---- bad input: one clear error each, before any heavy work ------------------------------------------


class WithLayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm(name="ln")(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(2, name="head")(h.mean(axis=(1, 2)))


def test_errors_name_the_layer_and_the_path():
    x = jnp.ones((1, 6, 6, 3))
    variables = WithLayerNorm().init(jax.random.key(0), x)
    lrp = gj.METHODS["lrp"]
    with pytest.raises(ValueError, match=r"^lrp: no LRP rule covers LayerNorm at ln;"):
        lrp(WithLayerNorm(), variables, x)
    # mapped by the user: passes
    assert lrp(WithLayerNorm(), variables, x, composite=C.Composite(layers=(("LayerNorm", R.Pass()),))).map.shape == (
        1,
        6,
        6,
    )
    with pytest.raises(ValueError, match=r"the composite names \['convv'\], which the model does not call"):
        lrp(WithLayerNorm(), variables, x, composite=C.Composite(layers=(("convv", R.Epsilon()),)))
    model, variables, x = conv_net(2, True)
    with pytest.raises(ValueError, match=r"the zbox rule is for the first layer \(conv1\), not conv2"):
        lrp(model, variables, x, composite=C.Composite(conv=R.ZBox()))
    with pytest.raises(ValueError, match=r"unknown composite 'EpsilonPlsu'"):
        lrp(model, variables, x, composite="EpsilonPlsu")
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        R.AlphaBeta(2.0, 2.0)

"""Models as their authors wrote them (issue 26): Haiku's `hk.nets.ResNet18`, Keras layers inside
layers (and keras-hub's `ViTBackbone` where keras-hub is installed), an Equinox ResNet that takes one
example with `make_with_state`, an equimo-style Equinox ViT (softmax inline, a dropout submodule
after it) and a ViT calling `jax.nn.dot_product_attention`.

Grad-CAM is checked against hand-written references: the activation and `jax.grad` of the softmax
score with respect to a perturbation added at the layer, by the test's own means (Haiku's
`hk.intercept_methods`, the Equinox submodules called by hand). The attention methods are checked
against the probabilities recomputed from the model's own weights (`test_transformers.explicit_forward`
on the linen ToyViT whose weights the Equinox ViTs carry) and against that linen twin's maps.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported, here or by another test

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src import maps  # noqa: E402
from gradcam_jax._src.adapters import attention, taps  # noqa: E402
from gradcam_jax.toys import vit as toy_vit  # noqa: E402
from tests.test_transformers import explicit_forward  # noqa: E402

eqx = pytest.importorskip("equinox")


def hand_grad_cam(logits_with, activation, size):
    """MATLAB's Grad-CAM by hand: `logits_with(delta)` the logits with `delta` added at the layer's
    (B, h, w, C) `activation` ((B, l, C), (B, d, h, w, C) alike); the softmax score of each image's top
    class, `jax.grad` w.r.t. delta; each channel weighted by its gradients' sum over the positions."""
    zero = jnp.zeros_like(activation)
    classes = jnp.argmax(logits_with(zero), axis=-1)
    score = lambda d: jax.nn.softmax(logits_with(d))[jnp.arange(len(classes)), classes].sum()  # noqa: E731
    gradients = jax.jit(jax.grad(score))(zero)
    spatial = tuple(range(1, activation.ndim - 1))
    raw = jnp.einsum("b...c,bc->b...", activation, gradients.sum(axis=spatial))
    return np.asarray(maps.finish(raw, size)), gradients


def check(result, activation, gradients, expected):
    np.testing.assert_allclose(result.activations, activation, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.gradients, gradients, atol=1e-4 * float(jnp.abs(gradients).max()))
    np.testing.assert_allclose(result.map, expected, atol=1e-4)


# --- Haiku ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def haiku_resnet():
    hk = pytest.importorskip("haiku")
    train = hk.transform_with_state(lambda x: hk.nets.ResNet18(5)(x, is_training=True))
    net = hk.transform_with_state(lambda x: hk.nets.ResNet18(5)(x, is_training=False))
    images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))  # 64 px: block_group_3 is 2x2
    params, state = train.init(jax.random.key(0), images)
    state = jax.tree.map(
        lambda a: a + 0.1 * jax.random.uniform(jax.random.key(2), a.shape), state
    )  # statistics off 0/1
    return hk, net, (params, state), images


def test_haiku_resnet18_grad_cam_equals_hand_reference(haiku_resnet):
    hk, net, variables, images = haiku_resnet
    layer = "res_net18/~/block_group_3"

    def logits_with(delta):  # the test's own interceptor: delta added to block_group_3's output
        def add(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            is_layer = context.method_name == "__call__" and context.module.module_name == layer
            return out + delta if is_layer else out

        with hk.intercept_methods(add):
            return net.apply(*variables, None, images)[0]

    seen = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.module_name == layer:
            seen["a"] = out
        return out

    with hk.intercept_methods(record):
        net.apply(*variables, None, images)
    activation = seen["a"]
    expected, gradients = hand_grad_cam(logits_with, activation, (64, 64))
    check(gj.grad_cam(net, variables, images, layer=layer), activation, gradients, expected)
    assert taps.default_layer(net, variables, images) == layer  # the last spatial map: the last stage
    np.testing.assert_allclose(gj.grad_cam(net, variables, images).map, expected, atol=1e-4)
    assert "res_net18/~/block_group_3/~/block_1/~/conv_1" in gj.layer_shapes(net, variables, images)
    np.testing.assert_allclose(gj.grad_cam(net.apply, variables, images, layer=layer).map, expected, atol=1e-4)


def test_haiku_bad_input_is_one_clear_error(haiku_resnet):
    hk, net, variables, images = haiku_resnet
    with pytest.raises(TypeError, match=r"not transformed: pass `hk.transform\(f\)`"):
        gj.grad_cam(lambda v, x: hk.nets.ResNet18(5)(x, is_training=False), variables, images)
    with pytest.raises(TypeError, match=r"\(params, state\)"):
        gj.grad_cam(net, variables[0], images)
    with pytest.raises(gj.UnknownLayerError, match="res_net18/~/block_group_3"):
        gj.grad_cam(net, variables, images, layer="block_group_3")


# --- Equinox: one example per call, with state --------------------------------------------------------


class Block(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    down: eqx.nn.Conv2d | None

    def __init__(self, cin, cout, stride, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(cin, cout, 3, stride, padding=1, use_bias=False, key=k1)
        self.bn1 = eqx.nn.BatchNorm(cout, "batch", mode="ema")
        self.conv2 = eqx.nn.Conv2d(cout, cout, 3, padding=1, use_bias=False, key=k2)
        self.bn2 = eqx.nn.BatchNorm(cout, "batch", mode="ema")
        self.down = eqx.nn.Conv2d(cin, cout, 1, stride, use_bias=False, key=k3) if stride > 1 else None

    def __call__(self, x, state):  # (C, H, W), as in Equinox's ResNet examples: (y, state) out
        y, state = self.bn1(self.conv1(x), state)
        y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)
        return jax.nn.relu(y + (x if self.down is None else self.down(x))), state


class ResNet(eqx.Module):
    stem: eqx.nn.Conv2d
    blocks: tuple
    head: eqx.nn.Linear

    def __init__(self, key, container=tuple):
        ks = jax.random.split(key, 4)
        self.stem = eqx.nn.Conv2d(3, 8, 3, padding=1, key=ks[0])
        self.blocks = container([Block(8, 8, 1, ks[1]), Block(8, 16, 2, ks[2])])
        self.head = eqx.nn.Linear(16, 5, key=ks[3])

    def __call__(self, x, state):  # one (C, H, W) example; the caller vmaps
        x = jax.nn.relu(self.stem(x))
        for block in self.blocks:
            x, state = block(x, state)
        return self.head(x.mean(axis=(1, 2))), state


def test_equinox_per_example_resnet_with_state_equals_hand_reference():
    net, state = eqx.nn.make_with_state(ResNet)(jax.random.key(0))
    bn = net.blocks[1].bn2  # running statistics away from 0 and 1 (`ema_state_index` since Equinox 0.12)
    index = getattr(bn, "ema_state_index", None) or bn.state_index
    state = state.set(index, tuple(a + 0.3 for a in state.get(index)))
    net = eqx.nn.inference_mode(net)
    params, static = eqx.partition(net, eqx.is_array)
    images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))

    def lower(x):  # one example up to blocks/1, by hand
        x, s = net.blocks[0](jax.nn.relu(net.stem(x)), state)
        return net.blocks[1](x, s)[0]

    activation = jnp.moveaxis(jax.vmap(lower)(jnp.moveaxis(images, -1, 1)), 1, -1)
    logits_with = lambda d: jax.vmap(net.head)((activation + d).mean(axis=(1, 2)))  # noqa: E731
    expected, gradients = hand_grad_cam(logits_with, activation, (16, 16))
    shapes = gj.layer_shapes(static, (params, state), images)
    assert shapes["blocks/1"].shape == (2, 8, 8, 16) and shapes["blocks/0/bn1"].shape == (2, 16, 16, 8)
    check(gj.grad_cam(static, (params, state), images, layer="blocks/1"), activation, gradients, expected)
    # layer=None: the last block (a (y, state) output), not the 1x1 shortcut conv computed after its main path
    assert taps.default_layer(static, (params, state), images) == "blocks/1"
    np.testing.assert_allclose(gj.grad_cam(static, (params, state), images).map, expected, atol=1e-4)
    explicit = gj.grad_cam(gj.per_example(static), (params, state), images, layer="blocks/1")
    np.testing.assert_allclose(explicit.map, expected, atol=1e-4)
    with pytest.raises(ValueError):  # said to take the batch, it fails on it as it would by hand
        gj.grad_cam(gj.per_example(static, False), (params, state), images, layer="blocks/1")


class BlockND(eqx.Module):
    """conv, batch norm (with state) or none, strided conv, in `dims` spatial axes; one (C, *s) example."""

    conv1: eqx.nn.Conv
    bn: eqx.nn.BatchNorm | None
    conv2: eqx.nn.Conv

    def __init__(self, dims, stateful, key):
        k1, k2 = jax.random.split(key)
        self.conv1 = eqx.nn.Conv(dims, 4, 6, 3, padding=1, key=k1)
        self.bn = eqx.nn.BatchNorm(6, "batch", mode="ema") if stateful else None
        self.conv2 = eqx.nn.Conv(dims, 6, 8, 3, stride=2, padding=1, key=k2)

    def __call__(self, x, state=None):
        y = self.conv1(x)
        if self.bn is not None:
            y, state = self.bn(y, state)
        y = jax.nn.relu(self.conv2(jax.nn.relu(y)))
        return y if self.bn is None else (y, state)


class NetND(eqx.Module):
    """A per-example signal (dims=1, (C, L)) or volume (dims=3, (C, D, H, W)) classifier."""

    stem: eqx.nn.Conv
    block: BlockND
    head: eqx.nn.Linear

    def __init__(self, dims, stateful, key):
        ks = jax.random.split(key, 3)
        self.stem = eqx.nn.Conv(dims, 2, 4, 3, padding=1, key=ks[0])
        self.block = BlockND(dims, stateful, ks[1])
        self.head = eqx.nn.Linear(8, 5, key=ks[2])

    def __call__(self, x, state=None):
        x = jax.nn.relu(self.stem(x))
        if self.block.bn is None:
            x = self.block(x)
        else:
            x, state = self.block(x, state)
        logits = self.head(x.mean(axis=tuple(range(1, x.ndim))))
        return logits if self.block.bn is None else (logits, state)


@pytest.mark.parametrize("stateful", [False, True], ids=["plain", "state"])
@pytest.mark.parametrize("dims,size", [(1, (16,)), (3, (6, 8, 8))], ids=["1d", "3d"])
def test_equinox_per_example_signal_and_volume_equal_hand_reference(dims, size, stateful):
    if stateful:
        net, state = eqx.nn.make_with_state(NetND)(dims, True, jax.random.key(0))
        index = getattr(net.block.bn, "ema_state_index", None) or net.block.bn.state_index
        state = state.set(index, tuple(a + 0.3 for a in state.get(index)))  # running statistics off 0 and 1
        net = eqx.nn.inference_mode(net)
    else:
        net, state = NetND(dims, False, jax.random.key(0)), None
    params, static = eqx.partition(net, eqx.is_array)
    variables = params if state is None else (params, state)
    images = jax.random.uniform(jax.random.key(1), (2, *size, 2))  # channels last, as the library takes them
    first = lambda a: jnp.moveaxis(a, -1, 1)  # noqa: E731
    last = lambda a: jnp.moveaxis(a, 1, -1)  # noqa: E731

    def conv1(x):  # one example, by hand, up to block/conv1
        return net.block.conv1(jax.nn.relu(net.stem(x)))

    def after_conv1(y):  # one example, by hand, from block/conv1's output
        return head(after_block(net, state, y))

    def head(y):
        return net.head(y.mean(axis=tuple(range(1, y.ndim))))

    for layer, lower, upper in (
        ("block/conv1", conv1, after_conv1),
        ("block", lambda x: after_block(net, state, conv1(x)), head),
    ):
        activation = last(jax.vmap(lower)(first(images)))
        logits_with = lambda d, upper=upper, a=activation: jax.vmap(upper)(first(a + d))  # noqa: E731
        expected, gradients = hand_grad_cam(logits_with, activation, size)
        check(gj.grad_cam(static, variables, images, layer=layer), activation, gradients, expected)
    # layer=None: the last map, the block's (its (y, state) output read at y when it has state)
    assert taps.default_layer(static, variables, images) == "block"
    np.testing.assert_allclose(gj.grad_cam(static, variables, images).map, expected, atol=1e-4)
    assert gj.layer_shapes(static, variables, images)["block"].shape == (2, *(n // 2 for n in size), 8)


def after_block(net, state, y):
    """The rest of `BlockND` after its first convolution, one example."""
    y = y if state is None else net.block.bn(y, state)[0]
    return jax.nn.relu(net.block.conv2(jax.nn.relu(y)))


def test_equinox_list_field_is_one_line_error():
    net, state = eqx.nn.make_with_state(ResNet)(jax.random.key(0), list)
    params, static = eqx.partition(net, eqx.is_array)
    images = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(TypeError, match=r"holds a list in its field 'blocks'.*make it a tuple") as caught:
        gj.grad_cam(static, (params, state), images)
    assert "\n" not in str(caught.value)


class KeyedNet(eqx.Module):
    """equimo's calling convention: `__call__(x, key=None, inference=None)`, a key required unless
    `inference=True` (its `split_for_mode`), whatever the dropout submodules' own flags say."""

    conv: eqx.nn.Conv2d
    drop: eqx.nn.Dropout
    head: eqx.nn.Linear

    def __call__(self, x, key=None, inference=None):  # one (C, H, W) example
        if inference is not True and key is None:
            raise ValueError("a PRNG key is required unless inference=True")
        y = self.drop(jax.nn.relu(self.conv(x)), key=key, inference=inference)
        return self.head(y.mean(axis=(1, 2)))


def test_equinox_model_taking_inference_is_called_with_it():
    k1, k2 = jax.random.split(jax.random.key(0))
    net = KeyedNet(eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1), eqx.nn.Dropout(0.5), eqx.nn.Linear(8, 5, key=k2))
    params, static = eqx.partition(net, eqx.is_array)
    images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    expected = jax.vmap(lambda x: net(x, inference=True))(jnp.moveaxis(images, -1, 1))
    np.testing.assert_allclose(taps.call_model(static, params, images), expected, atol=1e-6)
    activation = jnp.moveaxis(jax.vmap(lambda x: jax.nn.relu(net.conv(x)))(jnp.moveaxis(images, -1, 1)), 1, -1)
    expected_map, gradients = hand_grad_cam(
        lambda d: jax.vmap(net.head)((activation + d).mean(axis=(1, 2))), activation, (16, 16)
    )
    # the dropout's output: relu(conv(x)) in inference mode
    result = gj.grad_cam(static, params, images, layer="drop")
    check(result, activation, gradients, expected_map)


# --- Equinox ViTs: softmax inline (equimo's layout), and jax.nn.dot_product_attention -----------------


class Attention(eqx.Module):
    """equimo's Attention, reduced: projections, softmax inline, then `attn_drop` (or the fused call)."""

    query: jax.Array
    key: jax.Array
    value: jax.Array
    bias: jax.Array  # (3, heads, depth)
    out: jax.Array
    out_bias: jax.Array
    attn_drop: eqx.nn.Dropout
    fused: bool = eqx.field(static=True)

    def __call__(self, x):  # (N, C) tokens of one example
        q, k, v = (jnp.einsum("nc,chd->nhd", x, w) + b for w, b in zip((self.query, self.key, self.value), self.bias))
        if self.fused:
            attended = jax.nn.dot_product_attention(q, k, v)
        else:
            attn = jax.nn.softmax(jnp.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
            attn = self.attn_drop(attn)
            attended = jnp.einsum("hqk,khd->qhd", attn, v)
        return jnp.einsum("qhd,hdc->qc", attended, self.out) + self.out_bias


class VitBlock(eqx.Module):
    ln1: eqx.nn.LayerNorm
    attn: Attention
    ln2: eqx.nn.LayerNorm
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear

    def __call__(self, x):
        x = x + self.attn(jax.vmap(self.ln1)(x))
        h = jax.nn.gelu(jax.vmap(self.mlp1)(jax.vmap(self.ln2)(x)), approximate=False)
        return x + jax.vmap(self.mlp2)(h)


class EquinoxViT(eqx.Module):
    embed: eqx.nn.Conv2d
    cls: jax.Array
    pos: jax.Array
    blocks: tuple
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __call__(self, x):  # one (C, H, W) example
        t = self.embed(x)
        t = t.reshape(t.shape[0], -1).T  # (N, C), row-major patches
        t = jnp.concatenate([self.cls, t]) + self.pos
        for block in self.blocks:
            t = block(t)
        return self.head(self.norm(t[0]))


def load(module, **arrays):
    return eqx.tree_at(lambda m: [getattr(m, n) for n in arrays], module, list(arrays.values()))


def equinox_twin(model: toy_vit.ToyViT, params, fused: bool) -> EquinoxViT:
    """The linen ToyViT's weights in the Equinox ViT above."""
    key = jax.random.key(0)
    dim, patch = params["pos"].shape[-1], model.patch
    kernel = params["embed"]["kernel"]  # (p, p, in, dim)
    embed = eqx.nn.Conv2d(kernel.shape[2], dim, patch, patch, key=key)
    embed = load(embed, weight=kernel.transpose(3, 2, 0, 1), bias=params["embed"]["bias"][:, None, None])

    def norm(p):
        return load(eqx.nn.LayerNorm(dim, eps=1e-6), weight=p["scale"], bias=p["bias"])

    def linear(p):
        layer = eqx.nn.Linear(*p["kernel"].shape, key=key)
        return load(layer, weight=p["kernel"].T, bias=p["bias"])

    blocks = []
    for i in range(model.depth):
        bp = params[f"blocks_{i}"]
        a = bp["attn"]
        attn = Attention(
            a["query"]["kernel"],
            a["key"]["kernel"],
            a["value"]["kernel"],
            jnp.stack([a[n]["bias"] for n in ("query", "key", "value")]),
            a["out"]["kernel"],
            a["out"]["bias"],
            eqx.nn.Dropout(0.1),
            fused,
        )
        blocks.append(VitBlock(norm(bp["ln1"]), attn, norm(bp["ln2"]), linear(bp["mlp1"]), linear(bp["mlp2"])))
    return EquinoxViT(
        embed, params["cls"][0], params["pos"][0], tuple(blocks), norm(params["norm"]), linear(params["head"])
    )


@pytest.fixture(scope="module")
def vit():
    model = toy_vit.ToyViT(image_size=(16, 24), dim=16, heads=2, depth=2, num_classes=4)
    images = jax.random.normal(jax.random.key(1), (2, 16, 24, 1))
    variables = model.init(jax.random.key(0), images)
    return model, variables, images


@pytest.mark.parametrize("fused", [False, True], ids=["inline-softmax", "dot_product_attention"])
def test_equinox_vit_attention_read_where_computed(vit, fused):
    model, variables, images = vit
    params, static = eqx.partition(equinox_twin(model, variables["params"], fused), eqx.is_array)
    static = static if fused else gj.attention_at(static, "blocks/*/attn/attn_drop")
    logits = taps.call_model(static, params, images)  # one (C, H, W) example per call: vmapped
    np.testing.assert_allclose(logits, model.apply(variables, images), atol=2e-5)

    _, tapped = attention.forward(static, params, images)
    _, expected, _ = explicit_forward(model, variables["params"], images)  # from the linen weights
    assert list(tapped.probabilities) == ["blocks/0/attn", "blocks/1/attn"]
    for got, want in zip(tapped.probabilities.values(), expected):
        np.testing.assert_allclose(got, want, atol=2e-5)
    layout = attention.attention_layout(static, params, images)
    assert [b.path for b in attention.resolve_blocks(layout)] == ["blocks/0", "blocks/1"]
    for method in (gj.attention_rollout, gj.generic_attention)[: 1 if fused else 2]:  # the same reading either way
        np.testing.assert_allclose(method(static, params, images).map, method(model, variables, images).map, atol=1e-4)
    if fused:
        return
    twin = eqx.combine(params, taps.unwrap(static))

    def head(params, tokens):  # LeGrad's head: the final norm and classifier on the mean token
        return jax.vmap(lambda t: twin.head(twin.norm(t.mean(axis=0))))(tokens)

    expected_legrad = gj.legrad(model, variables, images, head=toy_vit.legrad_head).map
    np.testing.assert_allclose(gj.legrad(static, params, images, head=head).map, expected_legrad, atol=1e-4)

    # token outputs (N, C) per example are tokens, laid out as the linen model's
    assert gj.layer_shapes(static, params, images)["blocks/1"].shape == (2, 25, 16)
    expected_cam = gj.grad_cam(model, variables, images, layer="blocks_1").map
    np.testing.assert_allclose(gj.grad_cam(static, params, images, layer="blocks/1").map, expected_cam, atol=1e-4)
    assert taps.default_layer(static, params, images) == "embed"  # not an attention matrix


def test_attention_at_a_function(vit):
    model, variables, images = vit
    params, static = eqx.partition(equinox_twin(model, variables["params"], False), eqx.is_array)
    named = gj.attention_at(static, (jax.nn, "softmax"))  # the function returning the probabilities
    _, tapped = attention.forward(named, params, images)
    _, expected, _ = explicit_forward(model, variables["params"], images)
    assert list(tapped.probabilities) == ["blocks/0/attn", "blocks/1/attn"]
    np.testing.assert_allclose(tapped.probabilities["blocks/1/attn"], expected[1], atol=2e-5)
    with pytest.raises(ValueError, match="no attention submodule.*attention_at"):
        gj.attention_rollout(static, params, images)  # inline softmax, not named: nothing to read


# --- Keras: layers inside layers, MultiHeadAttention ------------------------------------------------


def keras_model():
    keras = pytest.importorskip("keras")

    class ConvBlock(keras.layers.Layer):  # a layer holding layers, as keras-hub's blocks do
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv_a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")
            self.conv_b = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv_b")

        def call(self, x):
            return keras.ops.relu(self.conv_b(self.conv_a(x)))

    class AttentionBlock(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mha = keras.layers.MultiHeadAttention(2, 4, name="mha")
            self.norm = keras.layers.LayerNormalization()

        def call(self, tokens):
            y = self.norm(tokens)
            return tokens + self.mha(y, y)

    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((16, 16, 3))
    x = ConvBlock(name="block")(x)
    tokens = keras.layers.Reshape((64, 8))(x)
    tokens = AttentionBlock(name="encoder")(tokens)
    outputs = keras.layers.Dense(5, name="head")(keras.layers.GlobalAveragePooling1D()(tokens))
    return keras, keras.Model(inputs, outputs)


def test_keras_layers_inside_layers_and_multi_head_attention():
    keras, model = keras_model()
    images = np.asarray(jax.random.uniform(jax.random.key(1), (2, 16, 16, 3)))
    block, encoder, head = model.get_layer("block"), model.get_layer("encoder"), model.get_layer("head")
    activation = jax.jit(lambda x: block.conv_b(block.conv_a(x)))(images)

    def logits_with(delta):  # the layers called by hand, delta added at block/conv_b
        tokens = jnp.reshape(jax.nn.relu(activation + delta), (2, 64, 8))
        return head(encoder(tokens).mean(axis=1))

    expected, gradients = hand_grad_cam(logits_with, activation, (16, 16))
    check(gj.grad_cam(model, None, images, layer="block/conv_b"), activation, gradients, expected)
    assert "encoder/mha/query" in gj.layer_shapes(model, None, images)

    # the attention, recomputed from the layer's own projections
    _, tapped = attention.forward(model, None, images, layers=["encoder/mha/query", "encoder/mha/key"])
    q, k = tapped.outputs["encoder/mha/query"], tapped.outputs["encoder/mha/key"]
    want = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0, axis=-1)
    np.testing.assert_allclose(tapped.probabilities["encoder/mha"], want, atol=1e-5)
    assert tapped.self_attention["encoder/mha"]
    rollout = gj.attention_rollout(model, None, images, prefix_tokens=0)
    fused = 0.5 * np.asarray(want).mean(axis=1) + 0.5 * np.eye(64)
    joint = fused / fused.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        rollout.map, maps.finish(jnp.asarray(joint.mean(axis=1).reshape(2, 8, 8)), (16, 16)), atol=1e-4
    )


def test_keras_hub_vit_backbone_nested_by_stable_name():
    keras = pytest.importorskip("keras")
    keras_hub = pytest.importorskip("keras_hub")
    config = dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    keras_hub.models.ViTBackbone(**config)  # a first one: the next one is named vi_t_backbone_<n>
    backbone = keras_hub.models.ViTBackbone(**config)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(5, name="head")(backbone(inputs)[:, 0]))
    images = np.asarray(jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)))
    block = f"{backbone.name}/vit_encoder/transformer_block_1"
    assert backbone.name != "vi_t_backbone"
    path, _ = taps.resolve_layer(model, None, images, "vi_t_backbone/vit_encoder/transformer_block_1")
    assert path == block
    with pytest.raises(gj.AmbiguousLayerError, match="mlp/dense_1, .*mlp/dense_2"):
        gj.grad_cam(model, None, images, layer="vi_t_backbone/vit_encoder/transformer_block_1/mlp/dense")
    assert gj.grad_cam(model, None, images, layer="vi_t_backbone/vit_encoder/transformer_block_1").map.shape == (
        2,
        32,
        32,
    )
    layers = [f"{block}/mha/query", f"{block}/mha/key"]
    _, tapped = attention.forward(model, None, images, layers=layers)
    q, k = (tapped.outputs[name] for name in layers)
    want = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    np.testing.assert_allclose(tapped.probabilities[f"{block}/mha"], want, atol=1e-5)
    assert gj.attention_rollout(model, None, images).map.shape == (2, 32, 32)


def test_keras_hub_resnet_backbone_stage_by_stable_name_and_layer_none():
    keras = pytest.importorskip("keras")
    keras_hub = pytest.importorskip("keras_hub")
    config = dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=(32, 32, 3),
    )  # fmt: skip
    keras_hub.models.ResNetBackbone(**config)  # a first one: the next one is named res_net_backbone_<n>
    backbone = keras_hub.models.ResNetBackbone(**config)
    for i, variable in enumerate(backbone.non_trainable_variables):  # running statistics off 0 and 1
        variable.assign(variable + 0.2 * jax.random.uniform(jax.random.key(10 + i), variable.shape))
    inputs = keras.Input((32, 32, 3))
    pool, head = keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(5, name="head")
    model = keras.Model(inputs, head(pool(backbone(inputs))))
    images = np.asarray(jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)))
    assert backbone.name != "res_net_backbone"

    # the model split by hand at the first stage's output: the backbone's own graph cut there
    cut = backbone.get_layer("stack0_block0_out").output
    lower, upper = keras.Model(backbone.input, cut), keras.Model(cut, backbone.output)
    activation = jax.jit(lambda x: lower(x, training=False))(images)
    expected, gradients = hand_grad_cam(
        lambda d: head(pool(upper(activation + d, training=False))), activation, (32, 32)
    )
    result = gj.grad_cam(model, None, images, layer="res_net_backbone/stack0_block0_out")  # no _<n>
    check(result, activation, gradients, expected)

    # layer=None: the backbone's output, the last stage's (B, 4, 4, 16) map
    assert taps.default_layer(model, None, images) == backbone.name
    last = jax.jit(lambda x: backbone(x, training=False))(images)
    expected, gradients = hand_grad_cam(lambda d: head(pool(last + d)), last, (32, 32))
    check(gj.grad_cam(model, None, images), last, gradients, expected)


def test_unsupported_model_is_one_clear_error():
    with pytest.raises(TypeError, match="linen Module.*Haiku"):
        gj.grad_cam(object(), {}, np.zeros((1, 8, 8, 3), np.float32))

"""`_src.patching`: the one owner of every temporary replacement (submodule class calls, attention
probability functions, ReLU functions), per thread, counted, and restored exactly once.

Threads tracing different models at once (guided backpropagation and DeepLIFT swapping ReLUs,
Grad-CAM hooking NNX class calls, attention rollout wrapping Flax's attention) give the maps they
give one at a time; code in another thread meanwhile runs unpatched; and once every context is
closed, exception or not, every patched attribute is the original object again.
"""

from __future__ import annotations

import threading
import types

import equinox as eqx
import flax.linen
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradcam_jax as gj
from gradcam_jax._src import patching
from gradcam_jax._src.adapters import attention, hooks
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import vit as toy_vit

WAIT = 60  # seconds any thread waits for another before the test gives up


def attributes() -> dict[str, object]:
    """Every attribute the library may replace, as it is now."""
    import flax.nnx.nn.attention as nnx_attention

    found = {
        "jax.nn.relu": jax.nn.relu,
        "flax.linen.relu": flax.linen.relu,
        "flax.linen.activation.relu": vars(flax.linen.activation)["relu"],
        "flax.nnx.relu": nnx.relu,
        "linen weights": flax.linen.attention.dot_product_attention_weights,
        "nnx weights": nnx_attention.dot_product_attention_weights,
        "equinox weights": eqx.nn._attention.dot_product_attention_weights,  # pyright: ignore[reportAttributeAccessIssue]
    }
    for cls in (nnx.MultiHeadAttention, eqx.nn.MultiheadAttention, nnx.Conv, nnx.Linear, NNXNet, eqx.nn.Conv2d):
        found[f"{cls.__name__}.__call__"] = cls.__dict__.get("__call__")  # None: inherited, none of its own
    return found


class NNXNet(nnx.Module):
    """conv -> nnx.relu -> mean -> linear: Grad-CAM hooks the conv's class call."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 6, (3, 3), rngs=rngs)
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.conv(x)).mean(axis=(1, 2)))


ORIGINAL = attributes()  # before any test here opens a patch


def assert_restored():
    now = attributes()
    changed = [name for name, value in ORIGINAL.items() if now[name] is not value]
    assert not changed, f"not restored: {changed}"
    assert patching.open_patches() == []


@pytest.fixture(scope="module")
def models():
    images = jax.random.uniform(jax.random.key(0), (2, 12, 12, 1))
    cnn = toy.ToyCNN(widths=(4, 6), strides=(1, 2), num_classes=3)
    cnn_variables = cnn.init(jax.random.key(1), images)
    net = NNXNet(nnx.Rngs(2))
    vit = toy_vit.ToyViT(image_size=(12, 12), patch=4, dim=8, heads=2, depth=2, num_classes=3)
    vit_variables = vit.init(jax.random.key(3), images)
    graphdef, state = nnx.split(net)
    return {
        # name: (the method, how it is called); each call traces again (its jit cache is cleared)
        "guided_backprop": (gj.guided_backprop, lambda: gj.guided_backprop(cnn, cnn_variables, images)),
        "deeplift": (gj.deeplift, lambda: gj.deeplift(cnn, cnn_variables, images, targets=jnp.array([1, 2]))),
        "grad_cam": (gj.grad_cam, lambda: gj.grad_cam(graphdef, state, images, layer="conv")),
        "attention_rollout": (gj.attention_rollout, lambda: gj.attention_rollout(vit, vit_variables, images)),
    }


def traced(method, call) -> np.ndarray:
    method.jitted.clear_cache()  # traced again: the patches are open while it runs
    return np.asarray(call().map)


def in_threads(jobs: dict, rounds: int) -> dict[str, list]:
    """Run each of `jobs` (name: function) `rounds` times in its own thread, all starting each round
    together; their results by name. An exception in any thread is raised here."""
    barrier = threading.Barrier(len(jobs), timeout=WAIT)
    results: dict[str, list] = {name: [] for name in jobs}
    errors: list[BaseException] = []

    def work(name, job):
        try:
            for _ in range(rounds):
                barrier.wait()
                results[name].append(job())
        except BaseException as error:  # noqa: BLE001  # raised again in the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * WAIT)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_threads_tracing_different_models_at_once_give_the_sequential_maps(models):
    expected = {name: traced(method, call) for name, (method, call) in models.items()}
    assert_restored()
    jobs = {name: (lambda method=method, call=call: traced(method, call)) for name, (method, call) in models.items()}
    results = in_threads(jobs, rounds=3)
    for name, maps in results.items():
        assert len(maps) == 3
        for got in maps:
            np.testing.assert_allclose(got, expected[name], atol=1e-6, err_msg=name)
    assert_restored()


def run_paused(target, inside: threading.Event, leave: threading.Event):
    """Start `target` in a thread; wait until it is `inside` its patched trace. Returns (thread, errors)."""
    errors: list[BaseException] = []

    def work():
        try:
            target()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            inside.set()

    thread = threading.Thread(target=work)
    thread.start()
    assert inside.wait(WAIT)
    assert not errors, errors
    return thread, errors


def test_plain_gradient_in_another_thread_is_not_guided(models):
    """The ReLUs guided backpropagation swaps are its own thread's: jax.grad elsewhere meanwhile is plain."""
    cnn = toy.ToyCNN(widths=(4, 6), strides=(1, 2), num_classes=3)
    images = jax.random.uniform(jax.random.key(0), (2, 12, 12, 1))
    variables = cnn.init(jax.random.key(1), images)
    inside, leave = threading.Event(), threading.Event()

    def paused_model(variables, images):  # a fresh function: traced now, ReLUs swapped in its thread
        outputs = cnn.apply(variables, images)
        inside.set()
        assert leave.wait(WAIT)
        return outputs

    w = jnp.array([1.0, -2.0, 3.0, -4.0])
    x = jnp.array([0.5, 1.0, -1.0, 2.0])
    plain = np.asarray(w * (x > 0))  # guided: the negative w would be cut to 0
    thread, errors = run_paused(lambda: gj.guided_backprop(paused_model, variables, images), inside, leave)
    try:
        got = {
            "jax.nn.relu": jax.grad(lambda x: jnp.sum(w * jax.nn.relu(x)))(x),
            "flax.linen.relu": jax.grad(lambda x: jnp.sum(w * nn.relu(x)))(x),
            "nnx.relu": jax.grad(lambda x: jnp.sum(w * nnx.relu(x)))(x),
        }
        still_inside = not leave.is_set() and thread.is_alive()
    finally:
        leave.set()
        thread.join(WAIT)
    assert not errors, errors
    assert still_inside
    for name, gradient in got.items():
        np.testing.assert_array_equal(gradient, plain, err_msg=name)
    assert_restored()


def test_class_call_hooks_are_the_hooking_threads_only(models):
    """While one thread has NNX submodule calls hooked, another calls the same submodules unhooked,
    and explains the same model, without waiting for the first."""
    net = NNXNet(nnx.Rngs(5))
    x = jax.random.uniform(jax.random.key(6), (1, 8, 8, 1))
    graphdef, state = nnx.split(net)
    expected = np.asarray(gj.grad_cam(graphdef, state, x, layer="conv").map)
    seen: list[tuple[str, threading.Thread]] = []
    inside, leave = threading.Event(), threading.Event()

    def hook(path, out):
        seen.append((path, threading.current_thread()))
        return out

    def hooked():
        with hooks.hooked_calls([("conv", net.conv), ("head", net.head)], [hook]):
            net(x)
            inside.set()
            assert leave.wait(WAIT)

    thread, errors = run_paused(hooked, inside, leave)
    try:
        plain = net(x)
        gj.grad_cam.jitted.clear_cache()
        explained = np.asarray(gj.grad_cam(graphdef, state, x, layer="conv").map)
        still_inside = not leave.is_set() and thread.is_alive()
    finally:
        leave.set()
        thread.join(WAIT)
    assert not errors, errors
    assert still_inside  # the main thread did not wait for the hooking one
    assert [path for path, _ in seen] == ["conv", "head"]
    assert all(who is thread for _, who in seen)  # the main thread's calls were not hooked
    np.testing.assert_array_equal(plain, net(x))
    np.testing.assert_allclose(explained, expected, atol=1e-6)
    assert_restored()


def test_restored_after_an_exception_inside_each_context(models):
    cnn = toy.ToyCNN(widths=(4,), strides=(1,), num_classes=3)
    images = jnp.ones((1, 6, 6, 1))
    variables = cnn.init(jax.random.key(0), images)

    def broken(variables, images):
        cnn.apply(variables, images)  # the ReLUs are swapped, then
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        gj.guided_backprop(broken, variables, images)
    assert_restored()
    with pytest.raises(RuntimeError, match="boom"):
        gj.deeplift(broken, variables, images)
    assert_restored()

    net = NNXNet(nnx.Rngs(0))

    def raising(path, out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), hooks.hooked_calls([("conv", net.conv)], [raising]):
        net(jnp.ones((1, 6, 6, 1)))
    assert_restored()
    with pytest.raises(RuntimeError, match="boom"), attention.attention_tap(), attention.attention_tap():
        raise RuntimeError("boom")
    assert_restored()


# --- the mechanism itself ------------------------------------------------------------------------


def test_counted_per_attribute_across_threads_and_restored_once():
    home = types.ModuleType("home")
    home.f = lambda: "original"  # pyright: ignore[reportAttributeAccessIssue]
    original = home.f  # pyright: ignore[reportAttributeAccessIssue]
    opened = [threading.Event() for _ in range(2)]
    close = [threading.Event() for _ in range(2)]
    saw: dict[int, list[str]] = {0: [], 1: []}

    def worker(i):
        with patching.patched(home, "f", patching.replaced(lambda: f"thread {i}")):
            saw[i].append(home.f())  # pyright: ignore[reportAttributeAccessIssue]
            opened[i].set()
            assert close[i].wait(WAIT)
            saw[i].append(home.f())  # pyright: ignore[reportAttributeAccessIssue]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    assert all(event.wait(WAIT) for event in opened)
    assert home.f is not original and home.f() == "original"  # pyright: ignore[reportAttributeAccessIssue]
    assert patching.original(home, "f") is original
    close[0].set()
    threads[0].join(WAIT)
    assert home.f is not original  # pyright: ignore[reportAttributeAccessIssue]  # thread 1 still has it open
    close[1].set()
    threads[1].join(WAIT)
    assert saw == {0: ["thread 0", "thread 0"], 1: ["thread 1", "thread 1"]}
    assert home.f is original  # pyright: ignore[reportAttributeAccessIssue]
    assert patching.open_patches() == []


def test_nested_contexts_compose_and_an_open_wrap_is_not_applied_twice():
    class Base:
        def __call__(self, x):
            return x + 1

    class Child(Base):
        pass

    def doubled(previous):
        return lambda self, x: 2 * previous(self, x)

    child = Child()
    with patching.patched(Child, "__call__", doubled):
        assert child(1) == 4
        with patching.patched(Child, "__call__", doubled):  # the same wrap, already open: nothing added
            assert child(1) == 4
        with patching.patched(Child, "__call__", lambda previous: lambda self, x: previous(self, x) - 10):
            assert child(1) == -6
        assert child(1) == 4
        assert Base()(1) == 2
    assert "__call__" not in Child.__dict__  # inherited again, as before
    assert child(1) == 2

    def failing(previous):
        raise RuntimeError("no replacement")

    with pytest.raises(RuntimeError, match="no replacement"), patching.patched(Child, "__call__", failing):
        pass
    assert "__call__" not in Child.__dict__
    assert patching.open_patches() == []

"""`load_googlenet(variant="torchvision")` against torchvision's own GoogLeNet, through
`scripts/convert_torchvision.py`, with a seeded random network (no download) whose BatchNorm
statistics are made non-trivial so that using them, or not, shows in the logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from conftest import sample_photo  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src import maps  # noqa: E402
from gradcam_jax.models.weights import WeightsError, check_structure  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "convert_torchvision.py"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_script():
    spec = importlib.util.spec_from_file_location("convert_torchvision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_torchvision = load_script()


def relative_error(actual, expected) -> float:
    return float(np.abs(np.asarray(actual) - np.asarray(expected)).max() / np.abs(np.asarray(expected)).max())


def torchvision_input(images: np.ndarray) -> torch.Tensor:
    """What a torchvision user feeds the model: NCHW, ImageNet-normalised (transform_input undoes it)."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))) / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def photos(cat_dog, cat) -> np.ndarray:
    """float32 (3, 224, 224, 3): cat_dog.jpg, cat.png, grace_hopper.jpg."""
    hopper = gj.load_image(sample_photo("grace_hopper.jpg"))[None].astype(np.float32)
    return np.concatenate([cat_dog, cat, hopper])


@pytest.fixture(scope="module")
def tv_model(photos):
    """torchvision's GoogLeNet, seeded; BatchNorm running stats set from the photos and random
    affine parameters, so every BN layer changes its input (at init it is nearly the identity)."""
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=True)
    for bn in filter(lambda m: isinstance(m, torch.nn.BatchNorm2d), model.modules()):
        bn.momentum = None  # running stats = plain average of the batches seen
    noise = np.random.default_rng(0).uniform(0, 255, photos.shape).astype(np.float32)
    model.train()
    with torch.no_grad():
        model(torchvision_input(np.concatenate([photos, noise])))
        for bn in filter(lambda m: isinstance(m, torch.nn.BatchNorm2d), model.modules()):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tv_logits(tv_model, photos) -> np.ndarray:
    with torch.no_grad():
        return tv_model(torchvision_input(photos)).numpy()


@pytest.fixture(scope="module")
def converted(tv_model, tmp_path_factory):
    """(model, variables) loaded by `load_googlenet` from the file the converter script wrote."""
    folder = tmp_path_factory.mktemp("torchvision")
    torch.save(tv_model.state_dict(), folder / "googlenet.pth")
    convert_torchvision.main(["--src", str(folder / "googlenet.pth"), "--out", str(folder / "googlenet.msgpack")])
    return gj.load_googlenet(variant="torchvision", path=folder / "googlenet.msgpack")


@pytest.fixture(scope="module")
def forward():
    return jax.jit(lambda model, variables, images: model.apply(variables, images)[0], static_argnums=0)


def test_logits_match_torchvision(converted, photos, tv_logits, forward):
    model, variables = converted
    logits = forward(model, variables, photos)
    assert relative_error(logits, tv_logits) <= 1e-4
    np.testing.assert_array_equal(np.argmax(logits, -1), tv_logits.argmax(-1))


def test_batch_norm_running_stats_are_used(converted, tv_model, photos, tv_logits, forward):
    model, variables = converted
    bn = tv_model.inception5b.branch3[1].bn
    np.testing.assert_array_equal(
        variables["batch_stats"]["inception_5b"]["5x5"]["bn"]["mean"], bn.running_mean.numpy()
    )
    np.testing.assert_array_equal(variables["batch_stats"]["inception_5b"]["5x5"]["bn"]["var"], bn.running_var.numpy())
    # with the init-time statistics (mean 0, var 1) instead, the logits are far off: parity needs them
    fresh = {**variables, "batch_stats": jax.tree.map(lambda a: jnp.zeros_like(a), variables["batch_stats"])}
    fresh["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, a: a + 1.0 if path[-1].key == "var" else a, fresh["batch_stats"]
    )
    assert relative_error(forward(model, fresh, photos), tv_logits) > 0.05


def test_converter_ignores_aux_classifiers_and_rejects_strangers(tv_model):
    state = tv_model.state_dict()
    with_aux = {**state, "aux1.fc2.weight": torch.zeros(1000, 1024), "aux2.conv.bn.running_mean": torch.zeros(128)}
    reference = convert_torchvision.convert(state)
    jax.tree.map(np.testing.assert_array_equal, convert_torchvision.convert(with_aux), reference)
    with pytest.raises(ValueError, match="unexpected"):
        convert_torchvision.convert({**state, "classifier.weight": torch.zeros(3)})
    incomplete = convert_torchvision.convert(
        {k: v for k, v in state.items() if not k.startswith("inception5b.branch4")}
    )
    with pytest.raises(WeightsError, match="missing"):
        check_structure(gj.TorchvisionGoogLeNet(), incomplete)


def test_layer_names(converted, photos):
    """Same Caffe paths as the BVLC model, except: no LRN layers, pool4 is 2x2, the '5x5' branch is 3x3."""
    model, variables = converted
    shapes = gj.layer_shapes(model, variables, photos[:1])
    assert shapes["pool4/2x2_s2"].shape == (1, 7, 7, 832)
    assert shapes["inception_5b/output"].shape == (1, 7, 7, 1024)
    assert not {"pool1/norm1", "conv2/norm2", "pool4/3x3_s2"} & set(shapes)
    assert variables["params"]["inception_3a"]["5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)


def test_grad_cam_matches_torchvision_autograd(converted, tv_model, photos, tv_logits):
    """Grad-CAM on the variant equals one computed on torchvision's model with torch.autograd.grad."""
    model, variables = converted
    targets = tv_logits.argmax(-1)
    result = gj.grad_cam(model, variables, photos, targets)
    assert result.map.shape == (3, 224, 224) and bool(jnp.isfinite(result.map).all())
    ours = np.asarray(maps.rescale(jnp.einsum("bhwc,bc->bhw", result.activations, result.gradients.mean(axis=(1, 2)))))

    captured = []
    hook = tv_model.inception5b.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        probs = tv_model(torchvision_input(photos)).softmax(-1)
    finally:
        hook.remove()
    (grads,) = torch.autograd.grad(probs[torch.arange(3), torch.from_numpy(targets)].sum(), captured[0])
    raw = torch.einsum("bchw,bc->bhw", captured[0], grads.sum(dim=(2, 3))).detach().numpy()
    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    theirs = (raw - low) / (high - low)
    for b in range(len(photos)):
        assert np.corrcoef(ours[b].ravel(), theirs[b].ravel())[0, 1] >= 0.999
        assert np.abs(ours[b] - theirs[b]).max() <= 1e-3

"""The Flax BVLC GoogLeNet against an independent PyTorch port holding the same weights
(`benchmarks/torch_googlenet.py`): logits, inception_5b-output and Grad-CAM maps, on real photos."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src import maps  # noqa: E402
from gradcam_jax.models import googlenet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ lives in the source tree
from conftest import sample_photo  # noqa: E402

from benchmarks import torch_googlenet as tg  # noqa: E402

LAYER = "inception_5b-output"


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|: relative to the tensor's scale, fair to near-zero entries."""
    return float(np.abs(np.asarray(actual) - np.asarray(expected)).max() / np.abs(np.asarray(expected)).max())


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def photos(cat_dog, cat) -> np.ndarray:
    """float32 (3, 224, 224, 3): cat_dog.jpg, cat.png, grace_hopper.jpg."""
    hopper = gj.load_image(sample_photo("grace_hopper.jpg"))[None].astype(np.float32)
    return np.concatenate([cat_dog, cat, hopper])


@pytest.fixture(scope="module")
def torch_model():
    return tg.load_bvlc()


@pytest.fixture(scope="module")
def flax_outputs(googlenet, photos):
    model, variables = googlenet
    logits, acts = jax.jit(lambda v, x: model.apply(v, x, layers=(LAYER,)))(variables, photos)
    return np.asarray(logits), np.asarray(acts[LAYER])


@pytest.fixture(scope="module")
def torch_outputs(torch_model, photos):
    with torch.no_grad():
        features = torch_model.features(nchw(photos))
        logits = torch_model.head(features)
    return logits.numpy(), features.numpy().transpose(0, 2, 3, 1)


def test_logits_match(flax_outputs, torch_outputs):
    assert relative_error(torch_outputs[0], flax_outputs[0]) <= 1e-4
    np.testing.assert_array_equal(torch_outputs[0].argmax(-1), flax_outputs[0].argmax(-1))
    # the photos are what they are: a real, confident classification, not a degenerate input
    assert flax_outputs[0].argmax(-1)[1] in range(281, 286)  # cat.png: one of the domestic cats


def test_inception_5b_output_matches(flax_outputs, torch_outputs):
    assert torch_outputs[1].shape == flax_outputs[1].shape == (3, 7, 7, 1024)
    assert relative_error(torch_outputs[1], flax_outputs[1]) <= 1e-4


def test_lrn_matches_torch():
    """torch's local_response_norm averages the squares, so it is Caffe's alpha/n * sum: check on large values."""
    x = np.random.default_rng(0).normal(0, 60, (2, 5, 5, 16)).astype(np.float32)
    ours = googlenet.LRN().apply({}, x)
    theirs = tg.lrn(nchw(x)).numpy().transpose(0, 2, 3, 1)
    assert relative_error(theirs, ours) <= 1e-6
    assert relative_error(x, ours) > 0.1  # the normalisation is not a no-op at this scale


@pytest.mark.parametrize(
    "size, window, stride, pad",
    [(112, 3, 2, 0), (28, 3, 2, 0), (14, 2, 2, 0), (8, 3, 2, 1), (7, 3, 1, 1), (13, 3, 2, 1)],
)
def test_ceil_mode_max_pool_matches_torch(size, window, stride, pad):
    x = np.random.default_rng(size).normal(size=(1, size, size, 3)).astype(np.float32)
    ours = googlenet.MaxPool(window, stride, pad).apply({}, x)
    theirs = tg.max_pool(nchw(x), window, stride, pad).numpy().transpose(0, 2, 3, 1)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def layer_resolution_maps(result) -> np.ndarray:
    """Our Grad-CAM at layer resolution from the returned activations and gradients: (B, K, 7, 7)."""
    weights = result.gradients.mean(axis=(2, 3))  # (B, K, C)
    return np.asarray(maps.rescale(jax.numpy.einsum("bhwc,bkc->bkhw", result.activations, weights)))


@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_grad_cam_matches_torch_autograd(googlenet, torch_model, photos, flax_outputs, score):
    """Top-1 and top-2 classes of each photo (cat_dog: the bulldog and the tabby)."""
    model, variables = googlenet
    targets = np.argsort(-flax_outputs[0], axis=-1)[:, :2].astype(np.int32)
    result = gj.grad_cam(model, variables, photos, targets, score=score)
    ours = layer_resolution_maps(result)
    for k in range(targets.shape[1]):
        theirs, _ = tg.grad_cam(torch_model, nchw(photos), torch.from_numpy(targets[:, k]).long(), score=score)
        for b in range(len(photos)):
            a, t = ours[b, k].ravel(), theirs[b].numpy().ravel()
            assert np.corrcoef(a, t)[0, 1] >= 0.999, (b, k)
            assert np.abs(a - t).max() <= 1e-3, (b, k)
            assert a.std() > 0.1  # a real map, not two constant ones agreeing
    # the upsampled map the user sees starts from the same layer-resolution map
    assert result.map.shape == (3, 2, 224, 224)

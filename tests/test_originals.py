"""Each method that another library has, against that library's own code (captum 0.9,
pytorch-grad-cam 1.5.7, torchcam 0.5) on the same BVLC weights through the PyTorch port, on
cat_dog.jpg for both animals (bull mastiff 243, tiger cat 282); the originals' runs are in
`benchmarks/originals.py` (pytorch-grad-cam on the port's head, given the port's inception_5b
activations, which test_torch_parity checks against ours: maps at layer resolution, no cv2 resize).

Deterministic methods must correlate >= 0.999 with the original (the figures are in
docs/methods.md). Sampled methods are compared by their averages over many draws (each side with its
own random numbers) and by the animal under the peak of the map.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("torchcam")

import gradcam_jax as gj  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ lives in the source tree
from conftest import CAT_BOX, DOG_BOX  # noqa: E402

from benchmarks import originals  # noqa: E402
from benchmarks.originals import blocks, correlation  # noqa: E402

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"
BOTH = np.array([[DOG, CAT]], np.int32)
BOXES = (DOG_BOX, CAT_BOX)


def peak_in(m: np.ndarray, box, size: int = 16) -> bool:
    """Whether the block of `m` with the most mass lies in `box` (y0, y1, x0, x1) of the image."""
    b = blocks(m, size)
    y, x = np.unravel_index(np.argmax(b), b.shape)
    cy, cx = (y + 0.5) * size, (x + 0.5) * size
    return box[0] <= cy < box[1] and box[2] <= cx < box[3]


@pytest.fixture(scope="module")
def ctx(cat_dog):
    return originals.context(cat_dog)


DETERMINISTIC = [label for label, original in originals.ORIGINALS.items() if not original.sampled]


@pytest.mark.parametrize("label", DETERMINISTIC)
def test_equals_the_original(googlenet, cat_dog, ctx, label):
    original = originals.ORIGINALS[label]
    theirs = original.theirs()(ctx)
    ours = np.asarray(gj.METHODS[original.method](*googlenet, cat_dog, BOTH, **original.options).map[0])
    print(label, " / ".join(f"{correlation(ours[k], theirs[k]):.5f}" for k in range(2)))  # the docs' figures
    for k in range(2):
        assert correlation(ours[k], theirs[k]) >= 0.999, (k, correlation(ours[k], theirs[k]))
        assert np.abs(ours[k] - theirs[k]).max() <= original.max_difference, k
        assert theirs[k].std() > 0.02  # a real map (pixel maps are sparse), not two constant ones agreeing
        if original.peaks_on_the_animal:  # patch maps: few values, so the ranking is checked too
            assert peak_in(ours[k], BOXES[k]), k


def test_gradient_shap_averages_agree_with_captums(googlenet, cat_dog, ctx):
    original = originals.ORIGINALS["gradient_shap"]
    theirs = original.theirs()(ctx)
    ours = np.asarray(gj.gradient_shap(*googlenet, cat_dog, BOTH, **original.options).map[0])
    print("gradient_shap", " / ".join(f"{correlation(blocks(ours[k]), blocks(theirs[k])):.4f}" for k in range(2)))
    for k in range(2):
        assert correlation(blocks(ours[k]), blocks(theirs[k])) >= 0.9, k
        assert peak_in(ours[k], BOXES[k]) and peak_in(theirs[k], BOXES[k]), k

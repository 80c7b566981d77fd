"""Shared fixtures: the pretrained GoogLeNet (loaded once per session) and real photos."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

# jaxlib 0.10's XLA CPU backend compiles some fusions to YNNPACK, and one of them faults (issue 30,
# benchmarks/xla_crash_repro.py). In the suite's long-lived workers XLA's compiler then segfaulted
# later, in unrelated tests; so this suite runs with YNN fusions off (XLA_FLAGS, read when the
# backend starts). tests/test_no_crash.py's subprocesses run with them on, as users do.
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
if int(importlib.metadata.version("jaxlib").split(".")[1]) >= 8 or importlib.metadata.version("jaxlib")[0] != "0":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {YNN_OFF}".strip()

import jax  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")

import gradcam_jax as gj  # noqa: E402

# No persistent compilation cache: with one shared by the xdist workers, four full runs here each lost a
# worker to a segmentation fault inside XLA's compile-and-write-to-cache path (jaxlib 0.10.2; once in
# the cache write itself). Each process compiles for itself. A JAX_COMPILATION_CACHE_DIR you set is used.
MADE_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


def pytest_unconfigure(config):
    if MADE_CACHE:
        shutil.rmtree(MADE_CACHE, ignore_errors=True)


ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "docs" / "images"  # cat.png and cat_dog.jpg, committed with their licence notes


def sample_photo(name: str) -> Path:
    """A real photo shipped inside matplotlib or scikit-image (no download)."""
    if name == "grace_hopper.jpg":
        return Path(matplotlib.get_data_path()) / "sample_data" / name
    skimage = pytest.importorskip("skimage")
    return Path(skimage.__file__).parent / "data" / name


@pytest.fixture(scope="session")
def googlenet():
    """(model, variables) of the bundled BVLC GoogLeNet."""
    return gj.load_googlenet()


@pytest.fixture(scope="session")
def cat_dog() -> np.ndarray:
    """float32 (1, 224, 224, 3): the Grad-CAM paper's Figure 1 photo, resized as MATLAB does."""
    return gj.load_image(PHOTOS / "cat_dog.jpg")[None].astype(np.float32)


@pytest.fixture(scope="session")
def cat() -> np.ndarray:
    """float32 (1, 224, 224, 3): ../shared/images/cat.png (already 224x224)."""
    return gj.load_image(PHOTOS / "cat.png")[None].astype(np.float32)


# Boxes (y0, y1, x0, x1) in the 224x224 resized cat_dog.jpg, read off the photo by eye:
# the bulldog's head and chest stand in the upper middle; the tabby lies across the bottom.
DOG_BOX = (0, 140, 55, 170)
CAT_BOX = (140, 224, 20, 200)


@pytest.fixture(scope="session")
def toy_classifier():
    """(model, variables, losses): `gradcam_jax.toys.classifier`'s CNN trained once per session (seed 0, 400 steps of 32)."""
    from gradcam_jax.toys import classifier as toy

    return toy.train(seed=0, steps=400, batch=32)  # ~26 s on the 2-core dev box (batch 64: ~56 s)

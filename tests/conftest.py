"""Shared fixtures: the pretrained GoogLeNet (loaded once per session) and real photos."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

# jaxlib 0.10's XLA CPU backend compiles some fusions to YNNPACK, and one of them faults on CPUs without AVX-512
# (issue 30, benchmarks/xla_crash_repro.py; the library routes around it). This suite runs with YNN
# fusions off (XLA_FLAGS, read when the backend starts) so that an unknown fault of that kind on the
# machine CI happens to get fails one test, not a worker; tests/test_no_crash.py runs every method on
# every rank in subprocesses with them on, as users have them.
YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
if int(importlib.metadata.version("jaxlib").split(".")[1]) >= 8 or importlib.metadata.version("jaxlib")[0] != "0":
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {YNN_OFF}".strip()

import jax  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")

import gradcam_jax as gj  # noqa: E402

# A JAX_COMPILATION_CACHE_DIR you set is used; the suite sets none (each worker compiles for itself).
if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])

# Every program XLA compiles for the CPU holds memory mappings (its JIT-compiled code) for as long as
# jax's caches keep it. An xdist worker that ran half the suite held ~51,000 of them, near Linux's
# default limit of 65,530 (vm.max_map_count); past it, XLA's compiler segfaulted or aborted in
# whichever test compiled next (the "random" worker crashes of issue 30's session). After any test
# file that leaves the worker above this many, the compiled programs are dropped.
MAPPINGS_BEFORE_CLEARING = 30_000


def memory_mappings() -> int:
    """How many memory mappings this process holds (Linux; 0 where /proc is not there)."""
    try:
        with open(f"/proc/{os.getpid()}/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 0


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    yield
    if memory_mappings() > MAPPINGS_BEFORE_CLEARING:
        jax.clear_caches()


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

"""The transformer methods on the toy ViT trained by scripts/toy_vit_proof.py (weights in tests/data):
asked for one of a scene's two shapes, their maps peak on it far more often than random maps do."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from gradcam_jax._src import maps
from gradcam_jax.toys import classifier as toy
from gradcam_jax.toys import vit as toy_vit

WEIGHTS = Path(__file__).resolve().parent / "data" / "toy_vit.msgpack"
# Pointing share above random maps' that each method keeps with room to spare (docs/transformers.md has
# the figures on 128 scenes: generic attention 0.73, rollout 0.47, LeGrad 0.43, Grad-CAM on block 0's
# tokens 0.32, random 0.03; on these 128 scenes AttnLRP 0.69, CP-LRP 0.66, random 0.01). The
# deletion/insertion AUCs are left to the script: their order is not robust.
MARGINS = {
    "generic_attention": 0.4,
    "attention_rollout": 0.2,
    "legrad": 0.2,
    "grad_cam": 0.15,
    "attn_lrp": 0.4,
    "cp_lrp": 0.4,
}


@pytest.fixture(scope="module")
def trained():
    return toy_vit.TRAINED, toy_vit.load(WEIGHTS)


def pointing(found, scenes) -> float:
    return float(np.mean([toy.pointing_hits(found[:, k], scenes.masks[:, k]) for k in range(2)]))


def test_the_toy_vit_learnt_and_its_explanations_point_at_the_shape_asked_for(trained):
    model, variables = trained
    scenes = toy_vit.make_pair_scenes(jax.random.key(7), 128)  # unseen: training draws from its own key
    logits = model.apply(variables, scenes.images)
    assert float(((logits > 0) == (scenes.labels > 0)).mean()) > 0.75  # "all three present" scores 0.667
    random_maps = maps.finish(jax.random.uniform(jax.random.key(0), (128, 2, 8, 8)), (32, 32))
    chance = pointing(random_maps, scenes)
    for name in MARGINS:
        share = pointing(toy_vit.explain(name, model, variables, scenes.images, scenes.shapes), scenes)
        assert share > chance + MARGINS[name], (name, share, chance)

"""Seg-Grad-CAM targets on signals and volumes (issue 26): per-sample (B, L, N) and per-voxel
(B, D, H, W, N) outputs, masks of the same rank; checked against the score and gradient written by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcam_jax as gj


class PerPosition(nn.Module):
    """A fully convolutional net: conv -> ReLU -> conv to N classes, per position, any rank."""

    rank: int
    classes: int = 3

    @nn.compact
    def __call__(self, x):
        kernel = (3,) * self.rank
        x = nn.relu(nn.Conv(4, kernel, name="conv1")(x))
        return nn.Conv(self.classes, kernel, name="logits")(x)


@pytest.mark.parametrize("shape", [(2, 11, 2), (2, 4, 5, 6, 1)], ids=["signal", "volume"])
def test_segmentation_target_scores_a_masked_class_sum_in_any_rank(shape):
    rank = len(shape) - 2
    model = PerPosition(rank)
    x = np.random.RandomState(0).rand(*shape).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    mask = (np.random.RandomState(1).rand(*shape[1:-1]) > 0.5).astype(np.float32)  # one mask for every image
    target = gj.targets.segmentation(1, mask)
    logits = model.apply(variables, x)
    by_hand = (np.asarray(logits)[..., 1] * mask).reshape(shape[0], -1).sum(-1)
    np.testing.assert_allclose(np.asarray(target(logits)), by_hand, rtol=1e-5)
    per_image = np.stack([mask, 1 - mask])  # (B, *spatial)
    two = gj.targets.segmentation([0, 2], per_image)(logits)
    expected = (np.asarray(logits)[..., [0, 2]] * per_image[..., None]).reshape(shape[0], -1, 2).sum(1)
    np.testing.assert_allclose(np.asarray(two), expected, rtol=1e-5)

    # Grad-CAM of that score at conv1 equals the map written out from jax.grad at the layer
    result = gj.grad_cam(model, variables, x, target, layer="conv1", relu=True)
    assert result.map.shape == shape[:-1] and np.isfinite(np.asarray(result.map)).all()

    def score_from(acts):  # the second conv applied to the layer by hand
        head = variables["params"]["logits"]
        out = (
            jax.lax.conv_general_dilated(
                jax.nn.relu(acts),
                head["kernel"],
                (1,) * rank,
                "SAME",
                dimension_numbers=nn.linear._conv_dimension_numbers(acts.shape),
            )
            + head["bias"]
        )
        return (out[..., 1] * mask).sum()

    acts = np.asarray(result.activations)
    grads = jax.grad(score_from)(jnp.asarray(acts))
    weights = grads.mean(axis=tuple(range(1, 1 + rank)))  # (B, C)
    raw = np.maximum(np.einsum("b...c,bc->b...", acts, weights), 0)
    np.testing.assert_allclose(np.asarray(result.gradients), grads, rtol=1e-4, atol=1e-6)
    low = raw.reshape(shape[0], -1)
    assert np.corrcoef(low.ravel(), jax.image.resize(result.map, raw.shape, "linear").ravel())[
        0, 1
    ] > 0.9 or np.allclose(low, 0)


def test_a_mask_of_another_rank_is_refused():
    model = PerPosition(1)
    x = np.zeros((1, 9, 2), np.float32)
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"mask must be \(9,\) or \(1, 9\)"):
        gj.grad_cam(model, variables, x, gj.targets.segmentation(0, np.ones((9, 9))), layer="conv1")

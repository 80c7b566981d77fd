"""What a method explains: class scores (`classes`) or any differentiable score of the model's outputs
(`segmentation`, `similarity`, `output`, `finer`, or your own function of the outputs)."""

from gradcam_jax._src.targets import (
    Classes,
    Finer,
    Output,
    Segmentation,
    Similarity,
    as_target,
    classes,
    describe,
    finer,
    is_function,
    logits_of,
    output,
    segmentation,
    similarity,
)

__all__ = [
    "Classes",
    "Finer",
    "Output",
    "Segmentation",
    "Similarity",
    "as_target",
    "classes",
    "describe",
    "finer",
    "is_function",
    "logits_of",
    "output",
    "segmentation",
    "similarity",
]

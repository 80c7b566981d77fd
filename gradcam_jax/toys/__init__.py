"""Small models trained here with optax, for the tests, the docs' figures and the pointing games: apart
from the core, and the only modules besides `gradcam_jax.training` that import optax.

- `classifier`: toy shape scenes and the CNN that learns them (a shortcut patch for the training page);
- `nd`: the same for signals and volumes;
- `scenes`: multi-object scenes for Seg-Grad-CAM and similarity targets;
- `vit`: a toy ViT and its LeGrad head.
"""

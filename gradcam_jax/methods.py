"""Every explanation method, each with `grad_cam`'s calling convention; `METHODS` by name, and
`register` to add your own. The implementations are one file each in `gradcam_jax/_src/methods/`."""

import warnings

from gradcam_jax._src.methods import *  # noqa: F403
from gradcam_jax._src.methods import __all__  # noqa: F401


def __getattr__(name: str):
    # DEFAULT_LAYER was GoogLeNet's layer; `layer=None` now takes the model's own (its `default_layer`)
    if name == "DEFAULT_LAYER":
        warnings.warn(
            "gradcam_jax.methods.DEFAULT_LAYER is deprecated: leave `layer` out (None) for the model's own layer",
            DeprecationWarning,
            stacklevel=2,
        )
        return "inception_5b-output"
    raise AttributeError(f"module 'gradcam_jax.methods' has no attribute {name!r}")

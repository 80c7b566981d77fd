"""Pictures of explanations: `blend` (a map over its photo), MATLAB's Grad-CAM `figure`, and for
volumes and signals `planes`, `montage`, `window` and `signal`.

`gradcam_jax.overlay` is this module. Calling it as a function (`overlay(image, heatmap)`, the blending
function's name before 0.2) still blends, with a DeprecationWarning, for one release: call `blend`.
"""

import sys
import types
import warnings

from gradcam_jax._src.overlay import blend, draw, figure, grey_volume, montage, planes, side_by_side, signal, window

__all__ = ["blend", "draw", "figure", "grey_volume", "montage", "planes", "side_by_side", "signal", "window"]


class _CallableModule(types.ModuleType):
    """This module, callable as the blending function it was once exported as."""

    def __call__(self, *args, **kwargs):
        warnings.warn(
            "calling gradcam_jax.overlay is deprecated; call gradcam_jax.blend (the same function)",
            DeprecationWarning,
            stacklevel=2,
        )
        return blend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

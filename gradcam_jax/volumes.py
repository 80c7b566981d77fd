"""Volumes at the I/O edges: reading them (`load_volume`) and a sweep through depth as an animation
(`write_sweep`, GIF by Pillow or MP4 through the video writer).

`.npy` needs nothing more; NIfTI (`.nii`, `.nii.gz`, CT and MRI) needs nibabel
(`pip install 'gradcam-jax[medical]'`), imported only when such a file is read. A volume comes back
as float32 (D, H, W) (a NIfTI image's first three axes as stored, no reorientation), or
(D, H, W, C) where the file holds channels; add the batch and channel axes for a model:
`volume[None, ..., None]`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gradcam_jax._src.overlay import montage

VOLUME_SUFFIXES = (".npy", ".nii", ".nii.gz")


class VolumeError(ValueError):
    """A file that cannot be read as a volume; str() is `<file>: <reason>`."""


def load_volume(path: str | Path) -> np.ndarray:
    """float32 (D, H, W) or (D, H, W, C) from a `.npy` file or a NIfTI `.nii` / `.nii.gz` (with
    nibabel: the `[medical]` extra; the scaled data, `get_fdata`). VolumeError for another suffix,
    an unreadable file or an array that is not 3-D or 4-D."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            volume = np.load(path, allow_pickle=False)
        elif name.endswith((".nii", ".nii.gz")):
            try:
                import nibabel
                from nibabel.filebasedimages import ImageFileError
            except ImportError:
                raise VolumeError(f"{path}: reading NIfTI needs nibabel: pip install 'gradcam-jax[medical]'") from None
            try:
                volume = np.asarray(nibabel.load(path).get_fdata(dtype=np.float32))  # pyright: ignore[reportAttributeAccessIssue]
            except ImageFileError as err:
                raise VolumeError(f"{path}: not a NIfTI image ({err})") from None
        else:
            raise VolumeError(f"{path}: unsupported volume format; use {', '.join(VOLUME_SUFFIXES)}")
    except (OSError, ValueError, EOFError) as err:
        if isinstance(err, VolumeError):
            raise
        raise VolumeError(
            f"{path}: cannot read ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    if volume.ndim not in (3, 4):
        raise VolumeError(f"{path}: expected a volume (D, H, W) or (D, H, W, C); got shape {volume.shape}")
    return volume.astype(np.float32, copy=False)


def sweep_frames(volume: np.ndarray, heatmap: np.ndarray, axis: int = 0, **options) -> list[np.ndarray]:
    """uint8 RGB frames, one per slice of `volume` along `axis`, each with its slice of `heatmap`
    drawn over it (`overlay.montage` of one column, slice by slice; `options` as montage's)."""
    return [
        montage(np.take(volume, [i], axis=axis), np.take(heatmap, [i], axis=axis), axis, **options)
        for i in range(np.shape(heatmap)[axis])
    ]


def write_sweep(
    path: str | Path, volume: np.ndarray, heatmap: np.ndarray, axis: int = 0, fps: float = 8.0, **options
) -> int:
    """Write the sweep through `volume` along `axis` (`sweep_frames`) as an animated GIF (`.gif`,
    Pillow, looping) or a video (`.mp4` and the other suffixes of `video.write_video`, which needs
    the `[video]` extra). Returns the number of frames."""
    frames = sweep_frames(volume, heatmap, axis, **options)
    path = Path(path)
    if path.suffix.lower() == ".gif":
        first, *rest = (Image.fromarray(f) for f in frames)
        first.save(path, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
        return len(frames)
    from gradcam_jax import video

    return video.write_video(path, frames, fps)

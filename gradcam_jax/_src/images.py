"""Reading photos into model inputs (I/O edge): any format Pillow reads, resized as MATLAB does.

`load_image` returns uint8 RGB (H, W, 3). Conversions, so that every valid oddity succeeds:
EXIF orientation is applied; animated GIFs and multi-page TIFFs give their first frame; grayscale,
palette and CMYK become RGB; 16-bit images are scaled to 8 bits (/257); images with transparency
(RGBA, LA, palette with a transparent colour) are composited on white. A file that is not a
readable image raises `ImageError("<file>: <reason>")`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow warns above ~89 Mpixel and refuses above twice that; we refuse above this, before decoding.
MAX_PIXELS = 64_000_000
BACKGROUND = (255, 255, 255)
# ImageNet classifiers' usual input (GoogLeNet's, MATLAB's example); every loader takes `size=`.
INPUT_SIZE = (224, 224)
CROPS = ("none", "center")


class ImageError(ValueError):
    """An input file that cannot be read as an image; str() is `<file>: <reason>`."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (16-bit scaled by 1/257, transparency composited on white)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        image = Image.fromarray(np.clip(np.asarray(image, np.float64) / 257.0, 0, 255).round().astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """The first frame of the image at `path`, upright (EXIF) and RGB; `ImageError` if unreadable."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageError(
                        f"{path}: too large to decode safely "
                        f"({image.width}x{image.height} pixels; limit {MAX_PIXELS:,})"
                    )
                image.seek(0)
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        reason = "empty file" if path.stat().st_size == 0 else "not an image Pillow can read"
        raise ImageError(f"{path}: {reason}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{path}: too large to decode safely ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # truncated or damaged data
        raise ImageError(f"{path}: damaged image ({err})") from None


def resize(image: Image.Image, size: tuple[int, int] = INPUT_SIZE, crop: str = "none") -> np.ndarray:
    """uint8 (H, W, 3) at `size` = (H, W), as MATLAB's `imresize(img, size)`: bicubic with
    antialiasing, aspect not kept. `crop="center"` first cuts the largest centred box of the
    target aspect, so the aspect is kept."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    height, width = size
    if crop == "center":  # crop first, so no pixel outside the box bleeds in through the filter
        scale = min(image.width / width, image.height / height)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (image.width - w) // 2, (image.height - h) // 2
        image = image.crop((left, top, left + w, top + h))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8)


def load_image(path: str | Path, size: tuple[int, int] = INPUT_SIZE, crop: str = "none") -> np.ndarray:
    """The image at `path` as model input: uint8 (H, W, 3) RGB. Feed `x.astype(np.float32)`."""
    return resize(read_image(path), size, crop)


IMAGE_SUFFIXES = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def expand_paths(inputs: list[str | Path]) -> list[Path]:
    """Files as given, plus the image files (by suffix, sorted) inside any directory given."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths

"""Image readers for fundus photographs (always RGB) and lesion masks (always binary {0, 1})."""

from __future__ import annotations

import numpy as np
from monai.data import PILReader
from PIL import Image, ImageOps

# Values strictly between these fractions of the full scale are "ambiguous" for a binary mask; JPEG-compressed
# masks have a thin band of them along lesion edges, a grey-level image has them everywhere.
AMBIGUOUS_BAND = (0.25, 0.75)
# More ambiguous pixels than this fraction of the image means the file is not a binary mask.
MAX_AMBIGUOUS_FRACTION = 0.01
EXIF_ORIENTATION = 0x0112


def apply_orientation(image: Image.Image) -> Image.Image:
    """Turn ``image`` as its EXIF orientation tag says, so its pixels are the photograph as a viewer shows it."""
    if image.getexif().get(EXIF_ORIENTATION, 1) in (None, 1):
        return image  # no tag, or upright: skip the copy ``exif_transpose`` would make
    return ImageOps.exif_transpose(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image (grey, palette, RGBA, 16-bit) to 8-bit RGB; alpha is dropped, not blended."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        image = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def mask_intensity(image: Image.Image) -> tuple[np.ndarray, float]:
    """Return the mask's single-channel intensities and their full-scale value, whatever the encoding.

    Palette masks are expanded through their palette (IDRiD's 1-bit TIFs index a red entry), colour masks use the
    brightest channel so red-on-black and white-on-black both work.
    """
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8), 1.0
    if image.mode == "P":
        # look the indices up in the palette's brightest channel instead of expanding to RGB (3x the memory)
        palette = np.asarray(image.getpalette() or [0, 0, 0, 255, 255, 255], dtype=np.uint8).reshape(-1, 3)
        lut = np.zeros(256, dtype=np.uint8)
        lut[: len(palette)] = palette.max(axis=1)
        return lut[np.asarray(image)], 255.0
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    if np.issubdtype(arr.dtype, np.integer):
        full = float(np.iinfo(arr.dtype).max)
        if image.mode in ("I", "I;32"):
            full = max(float(arr.max()), 1.0)
    else:
        full = max(float(arr.max()), 1.0)
    return arr, full


def binarise_mask(image: Image.Image) -> np.ndarray:
    """Binarise a lesion mask in any circulating encoding to a uint8 array of {0, 1} (height, width)."""
    arr, full = mask_intensity(image)
    if arr.size and arr.max() <= 1:  # stored as 0/1 indices or levels
        return (arr > 0).astype(np.uint8)
    return (arr > full / 2.0).astype(np.uint8)


def ambiguous_fraction(image: Image.Image) -> float:
    """Fraction of pixels whose intensity is neither clearly background nor clearly lesion."""
    arr, full = mask_intensity(image)
    if arr.size == 0 or arr.max() <= 1:
        return 0.0
    low, high = AMBIGUOUS_BAND[0] * full, AMBIGUOUS_BAND[1] * full
    return float(np.count_nonzero((arr > low) & (arr < high))) / arr.size


def _upright_rgb(image: Image.Image) -> Image.Image:
    return to_rgb(apply_orientation(image))


def _binary_image(image: Image.Image) -> Image.Image:
    return Image.fromarray(binarise_mask(apply_orientation(image)))


class FundusImageReader(PILReader):
    """MONAI ``PILReader`` that always yields 3-channel 8-bit RGB (grey, palette, RGBA and 16-bit converted),
    turned upright by the EXIF orientation tag."""

    def __init__(self, reverse_indexing: bool = True, **kwargs) -> None:
        super().__init__(converter=_upright_rgb, reverse_indexing=reverse_indexing, **kwargs)


class LesionMaskReader(PILReader):
    """MONAI ``PILReader`` that binarises lesion masks (palette, 0/255, 0/1, red-on-black RGB, JPEG) to {0, 1},
    turned upright by the EXIF orientation tag like the photographs."""

    def __init__(self, reverse_indexing: bool = True, **kwargs) -> None:
        super().__init__(converter=_binary_image, reverse_indexing=reverse_indexing, **kwargs)

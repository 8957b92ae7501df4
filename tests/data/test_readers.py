"""Readers: images forced to RGB, masks of every circulating encoding binarised to {0, 1}."""

from __future__ import annotations

import io

import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image

from monai_exudate.data.readers import FundusImageReader, LesionMaskReader, ambiguous_fraction, binarise_mask


def _truth(h: int = 40, w: int = 60) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[5:15, 10:30] = True
    m[25:35, 40:55] = True
    return m


def _encodings(truth: np.ndarray) -> dict[str, Image.Image]:
    u8 = truth.astype(np.uint8)
    palette = Image.fromarray(u8, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0])  # IDRiD: index 1 is red
    red = np.zeros((*truth.shape, 3), dtype=np.uint8)
    red[truth, 0] = 255
    buf = io.BytesIO()
    Image.fromarray(red).save(buf, format="JPEG", quality=75)
    buf.seek(0)
    return {
        "palette_1bit": palette,
        "bilevel": Image.fromarray(truth),
        "gray_0_255": Image.fromarray(u8 * 255),
        "gray_0_1": Image.fromarray(u8),
        "red_on_black": Image.fromarray(red),
        "red_jpeg": Image.open(buf),
        "gray_16bit": Image.fromarray(u8.astype(np.uint16) * 65535),
    }


@pytest.mark.parametrize("encoding", list(_encodings(_truth())))
def test_binarise_every_encoding(encoding):
    truth = _truth()
    out = binarise_mask(_encodings(truth)[encoding])
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    assert out.shape == truth.shape
    # JPEG blurs edges by a pixel at most; every other encoding is exact
    mismatch = np.count_nonzero(out.astype(bool) != truth)
    assert mismatch == 0 if encoding != "red_jpeg" else mismatch <= 0.02 * truth.size


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_mask_reader_through_loadimage(tmp_path, suffix):
    truth = _truth()
    path = tmp_path / f"m{suffix}"
    _encodings(truth)["palette_1bit"].save(path)
    mask = LoadImage(reader=LesionMaskReader(), image_only=True, ensure_channel_first=True)(str(path))
    # MONAI's PIL reader puts width first: (C, W, H)
    assert tuple(mask.shape) == (1, truth.shape[1], truth.shape[0])
    np.testing.assert_array_equal(mask[0].numpy().T.astype(bool), truth)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "RGB"])
def test_image_reader_forces_rgb(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    img = rgb.convert(mode)
    path = tmp_path / "img.png"
    img.save(path)
    out = LoadImage(reader=FundusImageReader(), image_only=True, ensure_channel_first=True)(str(path))
    assert tuple(out.shape) == (3, 30, 20)
    if mode == "L":  # grey replicated over the three channels
        np.testing.assert_array_equal(out[0], out[1])


def test_ambiguous_fraction_flags_grey_images():
    truth = _truth()
    assert ambiguous_fraction(_encodings(truth)["gray_0_255"]) == 0.0
    ramp = np.tile(np.linspace(0, 255, 60, dtype=np.uint8), (40, 1))
    assert ambiguous_fraction(Image.fromarray(ramp)) > 0.4


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_readers_apply_the_exif_orientation_as_a_viewer_does(tmp_path, orientation):
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    stored[:, :20] = 250  # coarse blocks survive JPEG compression
    stored[:, 20:] = 10
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(photo, quality=95, exif=exif)
    with Image.open(photo) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # the photograph as a viewer shows it
    loaded = LoadImage(reader=FundusImageReader(), image_only=True, ensure_channel_first=True)(str(photo))
    np.testing.assert_array_equal(np.asarray(loaded).transpose(2, 1, 0), shown)

    mask = tmp_path / "mask.png"
    Image.fromarray(np.where(stored[..., 0] > 128, 255, 0).astype(np.uint8)).save(mask, exif=exif)
    loaded_mask = LoadImage(reader=LesionMaskReader(), image_only=True)(str(mask))
    assert tuple(np.asarray(loaded_mask).shape[::-1]) == shown.shape[:2]
    np.testing.assert_array_equal(np.asarray(loaded_mask).T, (shown[..., 0] > 128).astype(np.uint8))

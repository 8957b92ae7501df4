"""Write a synthetic fundus set to disk in the IDRiD or DDR folder layout."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from monai_exudate.data.layouts import (
    DDR_LESIONS,
    IDRID_MASKS,
    IDRID_TEST_IDS,
    IDRID_TRAIN_IDS,
    ddr_image_path,
    ddr_mask_path,
    idrid_image_path,
    idrid_mask_path,
)
from monai_exudate.data.synthetic.geometry import _check_size
from monai_exudate.data.synthetic.render import generate_fundus
from monai_exudate.utils.atomic import atomic_write_bytes

__all__ = ["write_synthetic_dataset"]


def _encode(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, **kwargs)
    return buf.getvalue()


def _palette_mask(mask: np.ndarray) -> Image.Image:
    """1-bit-valued palette image (index 0 black, 1 red) as in the IDRiD release."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P", (m.shape[1], m.shape[0]), m.tobytes())
    im.putpalette([0, 0, 0, 255, 0, 0])
    return im


def _splits(layout: str, num: int) -> list[tuple[str, str | int]]:
    """(split, IDRiD number or DDR stem) for each image, in generation order."""
    if layout == "idrid":
        n_train = -(-2 * num // 3)
        if not 1 <= num <= len(IDRID_TRAIN_IDS) + len(IDRID_TEST_IDS) or n_train > len(IDRID_TRAIN_IDS):
            raise ValueError(f"num must be in 1..81 for the idrid layout (at most 54 training images), got {num}")
        train = [("training", IDRID_TRAIN_IDS[i]) for i in range(n_train)]
        return train + [("testing", IDRID_TEST_IDS[i]) for i in range(num - n_train)]
    if layout == "ddr":
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        n_val = max(1, round(0.2 * num)) if num >= 3 else 0
        n_test = max(1, round(0.2 * num)) if num >= 3 else num - 1
        counts = (("training", num - n_val - n_test), ("validation", n_val), ("testing", n_test))
        names = [split for split, n in counts for _ in range(n)]
        return [(split, f"synth_{i + 1:04d}") for i, split in enumerate(names)]
    raise ValueError(f"unknown layout {layout!r}; expected 'idrid' or 'ddr'")


def write_synthetic_dataset(
    out_dir: str | Path,
    layout: str = "idrid",
    num: int = 12,
    size: tuple[int, int] = (1440, 960),
    seed: int = 0,
    background_to_exudate: float = 200.0,
    jpeg_quality: int = 90,
) -> Path:
    """Write ``num`` synthetic photographs with masks in the IDRiD or DDR folder layout under ``out_dir``.

    IDRiD: JPEG images, palette TIF masks with values 0/1 (MA, HE, EX, OD always; SE only where present),
    first ceil(2/3 num) images in training numbered from 1, the rest in testing numbered from 55.
    DDR: JPEG images, 8-bit 0/255 TIF masks for EX, HE, MA, SE, stems ``synth_0001``..., split about 60/20/20.
    Image ``i`` is generated from the seed sequence (seed, i), so equal arguments give byte-identical files.
    """
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool):
        raise ValueError(f"num must be an int, got {num!r}")
    if not isinstance(jpeg_quality, (int, np.integer)) or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be an int in 1..100, got {jpeg_quality!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    size = _check_size(size)
    items = _splits(layout, int(num))
    root = Path(out_dir)
    for i, (split, key) in enumerate(items):
        rng = np.random.default_rng([int(seed), i])
        image, masks = generate_fundus(size, rng, background_to_exudate)
        jpeg = _encode(Image.fromarray(image), format="JPEG", quality=int(jpeg_quality))
        if layout == "idrid":
            atomic_write_bytes(root / idrid_image_path(split, key), jpeg)
            for lesion in IDRID_MASKS:
                if lesion == "SE" and not masks["SE"].any():
                    continue  # as in IDRiD: no file means no soft exudate in this image
                data = _encode(_palette_mask(masks[lesion]), format="TIFF", compression="tiff_lzw")
                atomic_write_bytes(root / idrid_mask_path(split, key, lesion), data)
        else:
            atomic_write_bytes(root / ddr_image_path(split, key), jpeg)
            for lesion in DDR_LESIONS:
                im = Image.fromarray(masks[lesion].astype(np.uint8) * np.uint8(255))
                data = _encode(im, format="TIFF", compression="tiff_lzw")
                atomic_write_bytes(root / ddr_mask_path(split, key, lesion), data)
    return root

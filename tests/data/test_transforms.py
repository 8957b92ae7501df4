"""Transforms: loading with missing masks, FOV crop against reference masks, padding, augmentation, inversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Resized
from PIL import Image

from monai_exudate.data.indexers import index_idrid, load_datalist
from monai_exudate.data.transforms import (
    FieldOfViewCropd,
    FieldOfViewSelector,
    LoadFundusd,
    PadToSquared,
    RandFlipRotate90d,
    _quantile,
)


def _fundus(width: int = 120, height: int = 80) -> np.ndarray:
    """A disc of fundus colour on black, with a bright spot to track orientation."""
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (0.45 * height) ** 2
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[inside] = (180, 90, 40)
    return img


def test_load_fundus_missing_mask_gets_zeros_and_flag(tmp_path):
    Image.fromarray(_fundus()).save(tmp_path / "img.png")
    mask = np.zeros((80, 120), dtype=np.uint8)
    mask[10:20, 30:40] = 255
    Image.fromarray(mask).save(tmp_path / "ex.png")
    d = LoadFundusd(lesions=("EX", "SE"))(
        {"image": str(tmp_path / "img.png"), "EX": str(tmp_path / "ex.png"), "SE": None}
    )
    assert tuple(d["image"].shape) == (3, 120, 80)
    assert tuple(d["label"].shape) == (2, 120, 80)
    assert d["label"][0].sum() == 100 and d["label"][1].sum() == 0
    assert d["label_present"].tolist() == [True, False]


def test_load_fundus_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(_fundus()).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((40, 60), dtype=np.uint8)).save(tmp_path / "ex.png")
    with pytest.raises(ValueError, match=r"ex\.png has size .* its image .*img\.png"):
        LoadFundusd(lesions=("EX",))({"image": str(tmp_path / "img.png"), "EX": str(tmp_path / "ex.png")})


def test_fov_crop_matches_reference_masks(idrid_sample):
    """The FOV box agrees within a few pixels with the reference field-of-view masks of the sample."""
    crop = FieldOfViewCropd(keys=["image"], fov_pixels_key="fov_pixels")
    load = LoadFundusd(lesions=())
    items = load_datalist(index_idrid(idrid_sample), "training", idrid_sample) + load_datalist(
        index_idrid(idrid_sample), "testing", idrid_sample
    )
    for item in items[::3]:  # three of the eight keep the test quick
        split = "train" if int(item["id"][-2:]) < 55 else "test"
        ref = np.asarray(Image.open(idrid_sample / "extra_fov_masks" / split / f"{item['id']}_MASK.tif"))
        fov = ref == 0  # these reference masks mark the area OUTSIDE the field of view
        rows, cols = np.where(fov)
        loaded = load(item)
        out = crop(loaded)
        before_0, after_0, before_1, after_1 = out["image"].applied_operations[-1]["extra_info"]["cropped"]
        width, height = loaded["image"].shape[1:]
        start, end = (before_0, before_1), (width - after_0, height - after_1)
        assert out["fov_pixels"] == int(FieldOfViewSelector()(loaded["image"]).sum())
        assert abs(out["fov_pixels"] - int(fov.sum())) < 0.01 * fov.sum()
        # MONAI's PIL reader is (width, height) ordered
        assert np.all(np.abs(np.asarray(start) - [cols.min(), rows.min()]) <= 5), (item["id"], start)
        assert np.all(np.abs(np.asarray(end) - [cols.max() + 1, rows.max() + 1]) <= 5), (item["id"], end)


def test_preprocessing_inverts_to_original_geometry():
    img = torch.as_tensor(_fundus(150, 90)).permute(2, 1, 0).float()  # (C, W, H)
    label = torch.zeros((1, 150, 90))
    label[0, 70:80, 40:50] = 1
    data = {"image": MetaTensor(img), "label": MetaTensor(label)}
    pipeline = Compose(
        [
            FieldOfViewCropd(keys=["image", "label"]),
            PadToSquared(keys=["image", "label"]),
            Resized(keys=["image", "label"], spatial_size=(64, 64), mode=("bilinear", "nearest")),
        ]
    )
    out = pipeline(data)
    assert tuple(out["image"].shape) == (3, 64, 64)
    restored = pipeline.inverse(out)
    assert tuple(restored["image"].shape) == (3, 150, 90)
    assert tuple(restored["label"].shape) == (1, 150, 90)
    # nearest resampling there and back keeps the lesion within a pixel or two
    assert abs(float(restored["label"].sum()) - 100) <= 30
    assert float(restored["label"][0, 70:80, 40:50].mean()) > 0.7


def test_pad_to_square_threshold_and_inverse():
    x = MetaTensor(torch.rand(3, 40, 30))
    padded = PadToSquared(keys=["image"])({"image": x})["image"]
    assert tuple(padded.shape) == (3, 40, 40)
    torch.testing.assert_close(
        PadToSquared(keys=["image"]).inverse({"image": padded})["image"].as_tensor(), x.as_tensor()
    )
    kept = PadToSquared(keys=["image"], below=20)({"image": MetaTensor(torch.rand(3, 40, 30))})["image"]
    assert tuple(kept.shape) == (3, 40, 30)  # short side 30 is not below 20: DDR rule leaves it


@pytest.mark.parametrize("shape", [(32, 32), (40, 24)])
def test_augmentation_keeps_image_and_masks_aligned(shape):
    aug = RandFlipRotate90d(keys=["image", "label"], prob=1.0)
    seen = set()
    for seed in range(24):
        aug.set_random_state(seed)
        label = (torch.rand(2, *shape) > 0.8).float()
        image = torch.cat([label * 200, torch.rand(1, *shape)], 0)  # image channels 0-1 encode the masks
        out = aug({"image": MetaTensor(image), "label": MetaTensor(label)})
        torch.testing.assert_close(out["image"][:2].as_tensor(), out["label"].as_tensor() * 200)
        assert tuple(out["image"].shape[1:]) == shape  # non-square images never change shape
        seen.add((aug._quarter_turns, aug._flip_axis))
    assert len(seen) == (8 if shape[0] == shape[1] else 4)


def _variant(image: torch.Tensor) -> tuple[int, ...]:
    """Where the top-left 2x2 quadrant marker went, and the shape: identifies one of the eight symmetries."""
    return (*image.shape[1:], *[int(v) for v in (image[0] == 1).nonzero()[0]])


@pytest.mark.parametrize("shape", [(12, 12), (12, 8)])
def test_authors_variants_are_their_six_copies_each_as_often(shape):
    """The authors' data preparation writes the original, 90/180/270 rotations and horizontal/vertical flips
    (`scripts/prepare_dataset.py` `augment()`), landscape images turning portrait; one image per batch allows it."""
    image = torch.zeros(1, *shape)
    image[0, 0, 1] = 1  # off the diagonal, so that no two symmetries put it at the same place
    aug = RandFlipRotate90d(keys="image", prob=1.0, variants="authors", rotate_non_square=True)
    aug.set_random_state(0)
    counts: dict = {}
    for _ in range(1200):
        key = _variant(aug({"image": MetaTensor(image)})["image"])
        counts[key] = counts.get(key, 0) + 1
    expected = {
        _variant(MetaTensor(torch.rot90(image, k, (1, 2)) if flip is None else torch.flip(image, (flip + 1,))))
        for k, flip in ((0, None), (1, None), (2, None), (3, None), (0, 0), (0, 1))
    }
    assert set(counts) == expected and len(expected) == 6
    assert all(150 < n < 250 for n in counts.values())  # 200 each expected
    if shape[0] != shape[1]:
        assert any(key[:2] == shape[::-1] for key in counts)  # portrait copies of a landscape image
    # without rotate_non_square a non-square image keeps its shape: four of the six copies
    keep = RandFlipRotate90d(keys="image", prob=1.0, variants="authors")
    keep.set_random_state(0)
    kept = {_variant(keep({"image": MetaTensor(image)})["image"]) for _ in range(200)}
    assert len(kept) == (6 if shape[0] == shape[1] else 4) and all(k[:2] == shape for k in kept)


def test_augmentation_variants_are_checked():
    with pytest.raises(ValueError, match="variants must be one of"):
        RandFlipRotate90d(keys="image", variants="all")


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 4321])
def test_counting_quantile_equals_torch_quantile(size):
    values = torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(size), dtype=torch.uint8)
    for q in (0.0, 0.3, 0.99, 1.0):
        assert _quantile(values, q) == pytest.approx(float(torch.quantile(values.float(), q)), abs=1e-4)


def test_a_black_frame_has_no_field_of_view_and_the_crop_names_the_file():
    dark = torch.full((3, 40, 30), 6, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no field of view"):
        FieldOfViewSelector()(dark)
    image = MetaTensor(dark, meta={"filename_or_obj": "/data/black_frame.jpg"})
    with pytest.raises(ValueError, match=r"black_frame\.jpg: no field of view"):
        FieldOfViewCropd(keys="image", fov_pixels_key="fov")({"image": image})

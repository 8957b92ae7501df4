"""Resizing: area shrinking with a bilinear inverse, antialiased resizing and its inverse."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Resized

from monai_exudate.data.resize import AntialiasedResized, RandRescaled, SmoothInverseResized
from monai_exudate.data.transforms import FieldOfViewCropd


def test_smooth_inverse_resize_maps_predictions_back_without_blocks():
    """Area shrinking is inverted by bilinear interpolation: a ramp comes back as a ramp, not as 8x8 blocks."""
    data = {"image": MetaTensor(torch.rand(3, 64, 48)), "label": MetaTensor(torch.zeros(1, 64, 48))}
    data["label"][0, 16:32, 8:24] = 1
    resize = SmoothInverseResized(keys=["image", "label"], spatial_size=(8, 6), inverse_mode=("bilinear", "nearest"))
    out = resize(data)
    ramp = torch.arange(8.0).reshape(1, 8, 1).expand(1, 8, 6)
    pred = MetaTensor(ramp.clone(), meta=out["image"].meta, applied_operations=out["image"].applied_operations)
    back = resize.inverse({"image": pred, "label": out["label"]})
    assert tuple(back["image"].shape) == (1, 64, 48)
    column = back["image"][0, :, 20]
    steps = torch.diff(column[4:-4])  # away from the clamped borders every step rises
    assert bool((steps > 0).all()), column
    label = back["label"][0]
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0}  # nearest for the label
    assert float(label[16:32, 8:24].mean()) == 1.0 and float(label.sum()) == 256
    # MONAI's own inverse repeats the area mode: the same prediction comes back in constant blocks
    plain = Resized(keys="image", spatial_size=(8, 6), mode="area")
    out = plain({"image": MetaTensor(torch.rand(3, 64, 48))})
    pred = MetaTensor(ramp.clone(), meta=out["image"].meta, applied_operations=out["image"].applied_operations)
    assert int((torch.diff(plain.inverse({"image": pred})["image"][0, :, 20]) > 0).sum()) == 7


def test_smooth_inverse_resize_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="smooth"):
        SmoothInverseResized(keys="image", spatial_size=(8, 8), inverse_mode="smooth")


def _stripes(width: int = 64, height: int = 48) -> MetaTensor:
    """One-pixel bright columns every other pixel: the worst case for aliasing."""
    image = torch.zeros(1, width, height)
    image[:, ::2] = 1.0
    return MetaTensor(image)


def test_antialiased_shrink_keeps_the_mean_of_fine_detail():
    out = AntialiasedResized(keys="image", spatial_size=(16, 12))({"image": _stripes()})["image"]
    assert tuple(out.shape) == (1, 16, 12)
    assert float(out.min()) > 0.45 and float(out.max()) < 0.55  # every column contributes


def test_antialiased_shrink_keeps_a_one_pixel_lesion_that_bilinear_misses():
    image = torch.zeros(1, 64, 48)
    image[:, 11] = 1.0  # a column that no bilinear sample point (4i + 1.5) touches at scale 1/4
    kept = AntialiasedResized(keys="image", spatial_size=(16, 12))({"image": MetaTensor(image)})["image"]
    lost = Resized(keys="image", spatial_size=(16, 12), mode="bilinear")({"image": MetaTensor(image)})["image"]
    assert float(lost.max()) == 0.0
    assert float(kept.max()) > 0.1 and float(kept.sum()) == pytest.approx(12 / 4, rel=0.01)


def test_antialiased_resize_sizes_labels_affine_and_inverse():
    image = MetaTensor(torch.rand(3, 80, 60))
    label = MetaTensor(torch.zeros(2, 80, 60, dtype=torch.uint8))
    label[0, 20:40, 10:30] = 1
    resize = AntialiasedResized(
        keys=["image", "label"], spatial_size=40, size_mode="longest", mode=["bilinear", "nearest"]
    )
    out = resize({"image": image, "label": label})
    assert tuple(out["image"].shape) == (3, 40, 30) and tuple(out["label"].shape) == (2, 40, 30)
    assert out["label"].dtype == torch.uint8 and set(torch.unique(out["label"]).tolist()) == {0, 1}
    assert float(out["image"].affine[0, 0]) == pytest.approx(2.0)  # one output pixel spans two input pixels
    back = resize.inverse(out)
    assert tuple(back["image"].shape) == (3, 80, 60) and tuple(back["label"].shape) == (2, 80, 60)
    assert int(back["label"][0].sum()) == 400 and not back["image"].applied_operations
    same = AntialiasedResized(keys="image", spatial_size=(80, -1))({"image": MetaTensor(torch.rand(1, 80, 60))})
    assert tuple(same["image"].shape) == (1, 80, 60)


def test_antialiased_resize_inverts_inside_a_pipeline():
    """A prediction on the resized crop goes back to the photograph's grid through Compose.inverse."""
    photo = torch.zeros(3, 90, 60)
    photo[:, 10:80, 5:55] = 150.0
    pipeline = Compose([FieldOfViewCropd(keys="image"), AntialiasedResized(keys="image", spatial_size=(35, 25))])
    out = pipeline({"image": MetaTensor(photo)})
    assert tuple(out["image"].shape) == (3, 35, 25)
    pred = MetaTensor(
        torch.ones(1, 35, 25), meta=out["image"].meta, applied_operations=list(out["image"].applied_operations)
    )
    back = pipeline.inverse({"image": pred})["image"]
    assert tuple(back.shape) == (1, 90, 60)
    assert float(back[0, 10:80, 5:55].min()) == pytest.approx(1.0) and float(back.sum()) == pytest.approx(70 * 50)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_size": (8, 8), "size_mode": "shortest"}, "size_mode"),
        ({"spatial_size": (8, 8), "size_mode": "longest"}, "one int"),
        ({"spatial_size": 8}, "both sides"),
        ({"spatial_size": (8, 8), "mode": "area"}, "mode"),
    ],
)
def test_antialiased_resize_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AntialiasedResized(keys="image", **kwargs)


def test_random_rescale_draws_one_ratio_for_every_key_from_the_full_resolution_image():
    image = torch.arange(3 * 200 * 120, dtype=torch.uint8).reshape(3, 200, 120)  # cached as uint8
    label = torch.zeros(2, 200, 120, dtype=torch.uint8)
    label[0, 50:90, 40:60] = 1
    rescale = RandRescaled(["image", "label"], (100, 60), ratio_range=(0.5, 2.0), mode=["bilinear", "nearest"])
    sizes = set()
    for seed in range(20):
        rescale.set_random_state(seed)
        out = rescale({"image": image, "label": label})
        size = tuple(out["image"].shape[1:])
        assert tuple(out["label"].shape[1:]) == size and out["image"].dtype == torch.float32
        assert 50 <= size[0] <= 200 and abs(size[1] - size[0] * 0.6) <= 1  # the ratio scales the ratio-1 target
        assert set(out["label"].unique().tolist()) <= {0, 1} and out["label"].dtype == torch.uint8
        sizes.add(size)
    assert len(sizes) > 10
    with pytest.raises(ValueError, match="scale_range"):
        RandRescaled("image", (100, 60), ratio_range=(2.0, 0.5))

"""The loading chain's steps per label mode, and its refusals of bad settings."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.data.preprocessing import fundus_load_transforms


def _names(chain) -> list[str]:
    return [type(t).__name__ for t in chain]


def test_each_label_mode_moves_the_label_as_it_should():
    train = fundus_load_transforms(["EX"], [96, 64], labels="resize", pad_below=1024)
    assert _names(train) == ["LoadFundusd", "FieldOfViewCropd", "PadToSquared", "SmoothInverseResized", "CastToTyped"]
    assert list(train[1].keys) == ["image", "label"] and list(train[3].keys) == ["image", "label"]
    evaluate = fundus_load_transforms(["EX"], [96, 64], labels="original", fov_crop=False)
    assert _names(evaluate) == ["LoadFundusd", "SmoothInverseResized", "EnsureTyped"]
    assert list(evaluate[1].keys) == ["image"] and evaluate[0].lesions == ("EX",)
    infer = fundus_load_transforms(["EX"], 960, labels="none", resize_filter="antialiased", size_mode="longest")
    assert _names(infer) == ["LoadFundusd", "FieldOfViewCropd", "AntialiasedResized", "EnsureTyped"]
    assert infer[0].lesions == () and list(infer[-1].keys) == ["image"]


def test_the_training_label_keeps_its_dtype():
    chain = fundus_load_transforms(["EX"], [96, 64], resize_filter="antialiased", label_dtype=torch.uint8)
    cast = chain[-1]({"image": torch.zeros(3, 4, 4, dtype=torch.uint8), "label": torch.ones(1, 4, 4)})
    assert cast["image"].dtype == torch.float32 and cast["label"].dtype == torch.uint8


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"labels": "both"}, "labels"),
        ({"resize_filter": "cubic"}, "resize_filter"),
        ({"size_mode": "longest"}, "size_mode"),
        ({"pad_below": -1}, "pad_below"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, named):
    with pytest.raises(ValueError, match=named):
        fundus_load_transforms(["EX"], [96, 64], **settings)

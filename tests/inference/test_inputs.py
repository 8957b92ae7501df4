"""Inference inputs: folder / datalist / single-file listing, bad-file detection, the error-tolerant dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureTyped, Resized
from PIL import Image

from monai_exudate.data.transforms import FieldOfViewCropd, FieldOfViewSelector, LoadFundusd, PadToSquared
from monai_exudate.inference import (
    InferenceDataset,
    check_image_file,
    collate_inference,
    list_inference_inputs,
)


def _photo(height: int, width: int) -> np.ndarray:
    """Dark frame with a bright field of view (a rectangle inset by 4 pixels)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[4:-4, 4:-4] = (160, 90, 40)
    return image


def _write(path: Path, height: int = 64, width: int = 96) -> Path:
    Image.fromarray(_photo(height, width)).save(path)
    return path


def _bad_files(folder: Path) -> dict[str, str]:
    """Bad inputs by file name, with a word their reason must contain."""
    good_jpeg = folder / "source.jpg"
    _write(good_jpeg, 96, 128)
    data = good_jpeg.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    good_jpeg.unlink()
    (folder / "text.jpg").write_text("this is not a photograph\n")
    _write(folder / "tiny.png", 10, 10)
    _write(folder / "strip.png", 64, 256)
    Image.fromarray(_photo(64, 96)).save(folder / "anim.gif")
    (folder / "notes.txt").write_text("hello")
    return {
        "truncated.jpg": "truncated",
        "text.jpg": "not an image",
        "tiny.png": "too small",
        "strip.png": "aspect ratio",
        "anim.gif": "unsupported",
        "notes.txt": "unsupported",
    }


def test_folder_lists_images_recursively_sorted(tmp_path) -> None:
    _write(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "a.jpg")
    (tmp_path / "readme.txt").write_text("x")
    items = list_inference_inputs(tmp_path)
    # every entry is listed, so the run reports the text file as unsupported instead of ignoring it
    assert items == [{"image": str(tmp_path / n)} for n in ("b.png", "readme.txt", "sub/a.jpg")]
    assert list_inference_inputs(tmp_path, recursive=False) == [
        {"image": str(tmp_path / n)} for n in ("b.png", "readme.txt", "sub")
    ]


def test_datalist_and_single_file_inputs(tmp_path) -> None:
    _write(tmp_path / "a.png")
    _write(tmp_path / "b.png")
    datalist = {"testing": [{"image": "a.png", "EX": None}, {"image": "b.png"}], "training": []}
    (tmp_path / "list.json").write_text(json.dumps(datalist))
    assert list_inference_inputs(tmp_path / "list.json") == [
        {"image": str(tmp_path / "a.png")},
        {"image": str(tmp_path / "b.png")},
    ]
    assert list_inference_inputs(tmp_path / "a.png") == [{"image": str(tmp_path / "a.png")}]


def test_listing_errors_name_the_input(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        list_inference_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        list_inference_inputs(tmp_path / "empty")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="unsupported"):
        list_inference_inputs(tmp_path / "x.gif")
    (tmp_path / "list.json").write_text(json.dumps({"testing": []}))
    with pytest.raises(ValueError, match="section"):
        list_inference_inputs(tmp_path / "list.json", section="test")


def test_check_image_file_reasons(tmp_path) -> None:
    expected = _bad_files(tmp_path)
    for name, word in expected.items():
        reason = check_image_file(tmp_path / name)
        assert reason is not None and word in reason, (name, reason)
    assert "not found" in check_image_file(tmp_path / "gone.png")
    assert check_image_file(_write(tmp_path / "good.jpg")) is None
    assert check_image_file(_write(tmp_path / "square.png", 64, 64)) is None


def _preprocessing(resize: bool, fov_pixels_key: str | None = None) -> Compose:
    crop = FieldOfViewCropd(keys=["image"], fov_pixels_key=fov_pixels_key)
    transforms = [LoadFundusd(lesions=[]), crop, PadToSquared(keys=["image"])]
    if resize:
        transforms.append(Resized(keys=["image"], spatial_size=(32, 32), mode="area"))
    return Compose([*transforms, EnsureTyped(keys="image", dtype=torch.float32)])


def test_dataset_yields_error_records_and_collate_separates_them(tmp_path) -> None:
    _bad_files(tmp_path)
    paths = [_write(tmp_path / "a.png", 64, 96), tmp_path / "text.jpg", _write(tmp_path / "b.jpg", 100, 70)]
    dataset = InferenceDataset([{"image": str(p)} for p in paths], _preprocessing(resize=True))
    samples = [dataset[i] for i in range(len(dataset))]
    assert "error" in samples[1] and samples[1]["path"] == str(paths[1])
    good = samples[0]
    assert good["image"].shape == (3, 32, 32) and good["original"].shape == (3, 96, 64)
    assert good["original"].dtype == torch.uint8 and good["fov_pixels"] == 88 * 56
    batch = collate_inference(samples)
    assert batch["errors"] == [(str(paths[1]), samples[1]["error"])]
    assert len(batch["batches"]) == 1 and batch["batches"][0]["image"].shape == (2, 3, 32, 32)
    assert [i["path"] for i in batch["batches"][0]["info"]] == [str(paths[0]), str(paths[2])]


class _NoSecondScan(FieldOfViewSelector):
    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the field of view was scanned a second time")


def test_dataset_takes_the_field_of_view_count_from_the_crop(tmp_path) -> None:
    """With the crop's count stored under fov_pixels_key, the photograph is not scanned a second time."""
    items = [{"image": str(_write(tmp_path / "a.png", 64, 96))}]
    preprocessing = _preprocessing(resize=True, fov_pixels_key="fov_pixels")
    assert InferenceDataset(items, preprocessing, fov_selector=_NoSecondScan())[0]["fov_pixels"] == 88 * 56
    assert (
        "AssertionError"
        in InferenceDataset(items, _preprocessing(resize=True), fov_selector=_NoSecondScan())[0]["error"]
    )


def test_collate_groups_images_of_different_shapes(tmp_path) -> None:
    paths = [_write(tmp_path / "a.png", 64, 96), _write(tmp_path / "b.png", 72, 72)]
    dataset = InferenceDataset([{"image": str(p)} for p in paths], _preprocessing(resize=False), keep_original=False)
    batch = collate_inference([dataset[0], dataset[1]])
    assert sorted(tuple(b["image"].shape) for b in batch["batches"]) == [(1, 3, 64, 64), (1, 3, 88, 88)]
    assert all("original" not in i for b in batch["batches"] for i in b["info"])


def test_dataset_requires_a_compose(tmp_path) -> None:
    with pytest.raises(ValueError, match="Compose"):
        InferenceDataset([], LoadFundusd(lesions=[]))
